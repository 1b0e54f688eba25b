"""``python -m sppd`` is the ``sppd`` command."""

import sys

from sppd.cli import main

sys.exit(main())
