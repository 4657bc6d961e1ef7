"""``python -m probkit``: the probkit command line (see :mod:`probkit.cli`)."""

import sys

from probkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
