"""Benchmark of a settling step, shared against unshared columns (issue 7); the code and its
presets live in :mod:`bioglom.bench` so that ``bioglom bench`` runs the same thing.

    python experiments/bench.py --preset quick|full [--device cpu|cuda] [--out FILE.json]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bioglom.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
