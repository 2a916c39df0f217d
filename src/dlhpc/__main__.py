"""``python -m dlhpc`` (and ``torchrun -m dlhpc``) runs the CLI."""

import sys

from dlhpc.cli import main

sys.exit(main())
