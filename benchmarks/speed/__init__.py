"""GPU speed: training (``train.py``) and multi-view testing (``test.py``) throughput and MFU."""
