"""``python -m seprobe``, ``torchrun -m seprobe`` and the ``seprobe`` script: the command line.

The import of the command line sits inside the interrupt handler, so a Ctrl-C at start-up is also one line.
A Ctrl-C before that point reaches the interpreter itself (which dies of it until it has installed its own
handler); ``SEPROBE_TEST_READY=1`` prints ``seprobe: ready`` on stderr once seprobe's handling is in place, so
that a test can interrupt from there on without guessing at timing.

Once the command has ended (outputs written, result printed, exit code chosen), SIGINT and SIGTERM are ignored:
the interpreter's shutdown (torch's atexit handlers among others) would otherwise turn a late Ctrl-C into a
traceback after the work is done. The exit code stays the command's own: 0 when it finished its work.
"""

import os
import signal
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
    finally:  # the work is over: nothing left for a signal to stop but the interpreter's own clean-up
        _ignore_signals()


def _ignore_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        while True:
            try:
                signal.signal(sig, signal.SIG_IGN)  # raises a signal still pending, before ignoring
                break
            except KeyboardInterrupt:  # one that came as the work ended: the exit code stays the work's
                continue


if __name__ == "__main__":
    run()
