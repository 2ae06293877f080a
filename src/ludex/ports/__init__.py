"""Ports: the small protocols services depend on. Backends live in ``ludex.adapters``.

Pure: this package only declares interfaces and the records they exchange.
"""
