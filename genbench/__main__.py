"""`python -m genbench ...`: the same command line as the `genbench` script (useful where the package is on the
path but not installed, e.g. PYTHONPATH=. on a device machine)."""

import sys

from genbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
