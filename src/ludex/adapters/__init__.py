"""Adapters: one module per backend, each implementing a port from ``ludex.ports``."""
