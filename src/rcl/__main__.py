"""`python -m rcl …` runs the command line (the same as the `rcl` script)."""

from .cli import main

if __name__ == "__main__":
    main()
