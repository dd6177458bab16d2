"""Ctrl-C, SIGTERM and SIGKILL: what each does at each phase of a command, and the mechanisms behind it.

The contract of ``seprobe CMD`` (``python -m seprobe``, each rank under ``torchrun``). SIGINT and SIGTERM act
alike from the command line's first step on (:func:`sigterm_as_interrupt`); "one line" is ``seprobe:
interrupted`` on stderr, with exit code 130 (:func:`exit_interrupted`) and no traceback.

* **Start-up** (the imports): one line, from the moment :func:`run_command` is in place
  (``SEPROBE_TEST_READY=1`` prints ``seprobe: ready`` then). Before it the interpreter itself handles SIGINT
  (it dies of it, or prints a traceback), and until the command line's first step SIGTERM kills the process
  (status -15). Nothing is written.
* **A pass over images** (probes, timing): ``KeyboardInterrupt`` at the next Python step; one line. Nothing of
  the pass is written (a command writes its results after its passes; a study keeps what its finished runs
  wrote).
* **A write of outputs** (:func:`seprobe.io.atomic_write`, :func:`seprobe.io.output_set`): one line; every
  target is its old self or complete, an output set lands all together or not at all, and an interrupted set
  leaves no temporary file and removes the folders it created. The renames that land a set run with both
  signals held (:func:`signals_held`): a signal then comes after them, so the files are in place although the
  command exits 130 without its ``wrote`` lines.
* **Training** (:func:`stop_requests`): the first signal is a request; the step ends, ``checkpoint.pth`` of that
  step is written (under torchrun every rank stops at the same step), then ``KeyboardInterrupt``: one line. A
  second signal raises at once; ``checkpoint.pth`` is then the last one written, whole. ``history.csv`` holds the
  finished epochs, there is no ``final.pth``, and ``--resume DIR`` continues the run (on the CPU bitwise as if
  never stopped). A signal while the images are listed or decoded stops before any checkpoint: ``out`` is as
  it was.
* **Interpreter exit** (after the result is printed and the exit code chosen): both signals are ignored
  (:func:`ignore_signals`); the exit code stays the command's, the outputs are whole.

SIGKILL cannot be caught: the process ends where it stands (status -9). Every file written atomically is still
its old self or complete, so ``checkpoint.pth`` is whole and ``--resume`` continues from it; SIGKILL leaves the
hidden ``.NAME.*.tmp`` files beside the targets, the folders an output set created, and, if it lands among a
set's final renames, part of the set in place.

Through the Python API only :func:`stop_requests` (training, main thread) and :func:`signals_held` apply: an
interrupt reaches the caller as ``KeyboardInterrupt``, after the same checkpoint, with outputs as above.

Two places where CPython loses or misreads a Ctrl-C are mended by :func:`run_command`:

- A KeyboardInterrupt raised inside a weakref callback or a ``__del__`` (importlib's module locks during the
  imports, torch's caches) cannot propagate: CPython prints it as "Exception ignored" and drops it, and the
  command would run on. :func:`_redeliver_lost_interrupt` sends the signal again a moment later, and Python
  raises it at the next ordinary point of the main thread.
- A KeyboardInterrupt that leaves a string ``exec`` (``dataclasses`` builds its methods that way, hundreds of
  times while torch imports) sets CPython's "unhandled KeyboardInterrupt" flag even when it is caught later;
  under ``python -m``, ``Py_RunMain`` then kills the process with SIGINT (exit status -2) instead of exiting
  with the code chosen here. :func:`_forget_unhandled_interrupt` clears the flag: every string ``exec`` resets it
  as it starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

EXIT_CODE = 130  # 128 + SIGINT, as a shell reports a Ctrl-C
MESSAGE = "seprobe: interrupted"
READY_ENV = "SEPROBE_TEST_READY"
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_interrupted() -> None:
    """The one line and exit code of an interrupted command."""
    sys.stderr.write(MESSAGE + "\n")  # one write: a second Ctrl-C cannot split the line
    sys.stderr.flush()
    sys.exit(EXIT_CODE)


def _terminate(signum, frame):
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> None:
    """SIGTERM raises ``KeyboardInterrupt``, as SIGINT does: the same clean-up path."""
    signal.signal(signal.SIGTERM, _terminate)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends (a no-op where signals cannot be masked)."""
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, set(_SIGNALS))
    except (AttributeError, ValueError, OSError):  # not the main thread's business, or no pthreads
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@dataclass
class StopRequest:
    requested: bool = False


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """SIGINT / SIGTERM set ``requested`` (the caller stops at a safe point, then raises KeyboardInterrupt); a
    second one raises at once. Outside the main thread no handler is installed."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True

    old = {s: signal.signal(s, handler) for s in _SIGNALS}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_command(command: Callable[[], None]) -> None:
    """The entry point around ``command``: an interrupt anywhere (its imports included) is one line and exit
    130; once it has ended, signals are ignored and CPython's interrupt flag is cleared."""
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: _redeliver_lost_interrupt(unraisable, previous_hook)
    try:
        if os.environ.get(READY_ENV) == "1":
            sys.stderr.write("seprobe: ready\n")  # one write: a Ctrl-C cannot split the line
            sys.stderr.flush()
        command()
    except KeyboardInterrupt:
        exit_interrupted()
    finally:  # the work is over: nothing left for a signal to stop but the interpreter's own clean-up
        ignore_signals()
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
            sig = next((s for s in _SIGNALS if signal.getsignal(s) not in (signal.SIG_IGN, signal.SIG_DFL, None)),
                       None)
            if sig is None:
                return
            timer = threading.Timer(0.01, os.kill, (os.getpid(), sig))
            timer.daemon = True
            timer.start()
        except KeyboardInterrupt:  # another one meanwhile, lost too: one delivery stands for both
            continue


def _forget_unhandled_interrupt() -> None:
    exec("pass", {})  # noqa: S102 - a string exec resets CPython's flag (see the module's docstring)


def ignore_signals() -> None:
    """SIGINT and SIGTERM ignored from now on; one still pending is dropped."""
    for sig in _SIGNALS:
        while True:
            try:
                signal.signal(sig, signal.SIG_IGN)  # raises a signal still pending, before ignoring
                break
            except KeyboardInterrupt:  # one that came as the work ended: the exit code stays the work's
                continue
