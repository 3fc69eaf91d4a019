"""Peak memory and CPU time of ``predict --window`` on long videos (``memory.py``)."""
