#!/usr/bin/env python
"""Entry point: ``python run.py COMMAND --help``. Same CLI as the ``videoglore`` console script."""

import sys

from videoglore.cli import main

if __name__ == "__main__":
    sys.exit(main())
