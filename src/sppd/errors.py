"""The common base of every error that means "your input or run folder is wrong", not "sppd has a bug".

The command line shows an ``SppdError`` as one line on stderr (the message names the file, line
and field, or the config key) and exits with code 2; anything else is a bug and keeps its
traceback. Base layer: stdlib only, so every module can subclass it.
"""

from __future__ import annotations


class SppdError(Exception):
    """An expected failure whose message alone tells the user what to fix."""
