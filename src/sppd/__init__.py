"""sppd: Self-training with Process Preference learning using Dynamic value margin.

Importing the package pulls in nothing heavy; stages and backends import torch and
transformers where they are used.
"""

__version__ = "0.1.0"
