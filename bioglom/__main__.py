"""``python -m bioglom ...`` is the ``bioglom`` command (and ``torchrun -m bioglom run ...``)."""

import sys

from .cli import main

sys.exit(main())
