"""ludex: backend for real-time on-chain games."""

__version__ = "0.1.0"
