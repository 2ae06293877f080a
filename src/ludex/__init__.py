"""ludex: backend for real-time on-chain games."""
