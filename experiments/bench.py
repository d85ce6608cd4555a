"""Benchmark of a settling step, shared against unshared columns (issue 7); the code and its
presets live in :mod:`bioglom.bench` so that ``bioglom bench`` runs the same thing.

    python experiments/bench.py --preset quick|full [--device cpu|cuda] [--out FILE.json]
"""

import sys

from bioglom.bench import main

if __name__ == "__main__":
    sys.exit(main())
