"""`python -m rcl.cli …` runs the command line (the same as `rcl` and `python -m rcl`)."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
