"""Clip-loading speed: our readers against the reference loaders' decoding (``bench.py``)."""
