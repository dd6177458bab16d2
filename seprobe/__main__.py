"""``python -m seprobe``, ``torchrun -m seprobe`` and the ``seprobe`` script: the command line.

The import of the command line sits inside the interrupt handler, so a Ctrl-C at start-up is also one line.
A Ctrl-C before that point reaches the interpreter itself (which dies of it until it has installed its own
handler); ``SEPROBE_TEST_READY=1`` prints ``seprobe: ready`` on stderr once seprobe's handling is in place, so
that a test can interrupt from there on without guessing at timing.

Two places where CPython loses or misreads a Ctrl-C are mended here:

- A KeyboardInterrupt raised inside a weakref callback or a ``__del__`` (importlib's module locks during the
  imports, torch's caches) cannot propagate: CPython prints it as "Exception ignored" and drops it, and the
  command would run on. :func:`_redeliver_lost_interrupt` sends the signal again a moment later, and Python
  raises it at the next ordinary point of the main thread.
- A KeyboardInterrupt that leaves a string ``exec`` (``dataclasses`` builds its methods that way, hundreds of
  times while torch imports) sets CPython's "unhandled KeyboardInterrupt" flag even when it is caught later;
  under ``python -m``, ``Py_RunMain`` then kills the process with SIGINT (exit status -2) instead of exiting
  with the code chosen here. :func:`_forget_unhandled_interrupt` clears the flag: every string ``exec`` resets it
  as it starts.

Once the command has ended (outputs written, result printed, exit code chosen), SIGINT and SIGTERM are ignored:
the interpreter's shutdown (torch's atexit handlers among others) would otherwise turn a late Ctrl-C into a
traceback after the work is done. The exit code stays the command's own: 0 when it finished its work.
"""

import os
import signal
import sys
import threading


def run() -> None:
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: _redeliver_lost_interrupt(unraisable, previous_hook)
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
        sys.unraisablehook = previous_hook
        _forget_unhandled_interrupt()


def _redeliver_lost_interrupt(unraisable, previous_hook) -> None:
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        previous_hook(unraisable)
        return
    timer = None
    while timer is None:
        try:
            # the signal again, from a moment later: raised now, it would raise inside this hook and be lost
            # again. SIGINT where Python's handler has it; else SIGTERM, whose handler (the command line's)
            # raises the same: a shell that starts seprobe in the background leaves SIGINT ignored
            sig = next((s for s in (signal.SIGINT, signal.SIGTERM)
                        if signal.getsignal(s) not in (signal.SIG_IGN, signal.SIG_DFL, None)), None)
            if sig is None:
                return
            timer = threading.Timer(0.01, os.kill, (os.getpid(), sig))
            timer.daemon = True
            timer.start()
        except KeyboardInterrupt:  # another one meanwhile, lost too: one delivery stands for both
            continue


def _forget_unhandled_interrupt() -> None:
    exec("pass", {})  # noqa: S102 - a string exec resets CPython's flag (see the module's docstring)


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
