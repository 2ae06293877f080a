"""Benchmarks run by ``ludex bench``: each prints JSON with our figures and a peer's,
measured in the same run on the same input."""
