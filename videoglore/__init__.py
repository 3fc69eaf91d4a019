"""videoglore: video action recognition with Graph-based Global Reasoning Networks (GloRe)."""

__version__ = "0.1.0"
