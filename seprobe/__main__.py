"""``python -m seprobe`` (and ``torchrun -m seprobe``): the command line."""

from .cli import main

if __name__ == "__main__":
    main()
