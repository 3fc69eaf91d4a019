"""Does GloRe help? Relational videos (``relational.py``), runs (``bench.py``), ``report.py``."""
