"""``python -m seprobe``, ``torchrun -m seprobe`` and the ``seprobe`` script: the command line.

The import of the command line sits inside the interrupt handler, so a Ctrl-C at start-up is also one line.
"""

import sys


def run() -> None:
    try:
        from .cli import main
    except KeyboardInterrupt:
        print("seprobe: interrupted", file=sys.stderr)
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
