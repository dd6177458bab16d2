"""``python -m seprobe``, ``torchrun -m seprobe`` and the ``seprobe`` script: the command line.

The import of the command line sits inside the interrupt handler, so a Ctrl-C at start-up is also one line.
A Ctrl-C before that point reaches the interpreter itself (which dies of it until it has installed its own
handler); ``SEPROBE_TEST_READY=1`` prints ``seprobe: ready`` on stderr once seprobe's handling is in place, so
that a test can interrupt from there on without guessing at timing.
"""

import os
import sys


def run() -> None:
    try:
        if os.environ.get("SEPROBE_TEST_READY") == "1":
            sys.stderr.write("seprobe: ready\n")  # one write: a Ctrl-C cannot split the line
            sys.stderr.flush()
        from .cli import main

        main()
    except KeyboardInterrupt:
        print("seprobe: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run()
