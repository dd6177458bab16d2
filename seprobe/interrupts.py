"""Ctrl-C, SIGTERM and SIGKILL: what each does at each phase of a command, and the mechanisms behind it.

The contract of ``seprobe CMD`` (``python -m seprobe``, each rank under ``torchrun``). SIGINT and SIGTERM act
alike from the moment :func:`run_command` is in place (``SEPROBE_TEST_READY=1`` prints ``seprobe: ready``
then; before it the interpreter itself handles them); "one line" is ``seprobe: interrupted`` on stderr, with
exit code 130 and no traceback.

* **Work that writes nothing** (the imports, building and counting a network, a pass over images, the timing):
  the process exits at once with the one line (:func:`_exit_at_once`). No ``KeyboardInterrupt`` is raised there,
  so no library's import or tracer can swallow or misread one (a Ctrl-C raised inside ``importlib`` left numpy
  half-imported, and the command went on to a ``RecursionError``; one raised under fvcore's tracer was lost).
  Nothing of the pass is written: a command writes its results after its passes, a study keeps what its
  finished runs wrote.
* **Work with something to clean up** (:func:`clean_up_on_interrupt`: a write of outputs, a held run folder, a
  temporary folder): the signal raises ``KeyboardInterrupt`` at the next Python step, the clean-up runs, then
  one line (:func:`exit_interrupted`). Through :func:`seprobe.io.atomic_write` and :func:`seprobe.io.output_set`
  every target is its old self or complete, an output set lands all together or not at all, and an interrupted
  set leaves no temporary file and removes the folders it created. The renames that land a set run with both
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

A forked DataLoader worker inherits the handlers; in it a signal raises ``KeyboardInterrupt``, which torch's
worker loop ends quietly, so the line is the main process's alone.

SIGKILL cannot be caught: the process ends where it stands (status -9). Every file written atomically is still
its old self or complete, so ``checkpoint.pth`` is whole and ``--resume`` continues from it; SIGKILL leaves the
hidden ``.NAME.*.tmp`` files beside the targets (and, if it lands in the instant an output folder is checked,
an empty ``.seprobe-probe-*`` folder), the folders an output set created, and, if it lands among a
set's final renames, part of the set in place.

Through the Python API only :func:`stop_requests` (training, main thread) and :func:`signals_held` apply: an
interrupt reaches the caller as ``KeyboardInterrupt``, after the same checkpoint, with outputs as above.

Two places where CPython loses or misreads a ``KeyboardInterrupt`` (in the phases that raise one) are mended by
:func:`run_command`:

- One raised inside a weakref callback or a ``__del__`` cannot propagate: CPython prints it as "Exception
  ignored" and drops it, and the command would run on. :func:`_redeliver_lost_interrupt` sends the signal again
  a moment later, and Python acts on it at the next ordinary point of the main thread.
- One that leaves a string ``exec`` (``dataclasses`` builds its methods that way) sets CPython's "unhandled
  KeyboardInterrupt" flag even when it is caught later; under ``python -m``, ``Py_RunMain`` then kills the
  process with SIGINT (exit status -2) instead of exiting with the code chosen here.
  :func:`_forget_unhandled_interrupt` clears the flag: every string ``exec`` resets it as it starts.
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


_OWNER = {"pid": None}  # the process whose handlers run_command installed (not a forked worker)


def _exit_at_once(signum, frame):
    """The command line's handler where there is nothing to clean up: the line, then exit without unwinding."""
    if os.getpid() != _OWNER["pid"]:  # a forked DataLoader worker: as Python would (torch's loop ends it quietly)
        raise KeyboardInterrupt
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a print the signal cut short cannot be flushed now ("reentrant")
            stream.flush()
    os.write(2, (MESSAGE + "\n").encode())
    os._exit(EXIT_CODE)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def clean_up_on_interrupt() -> Iterator[None]:
    """Within the block a signal raises ``KeyboardInterrupt`` where the command line would exit at once, so that
    the block's clean-up (a temporary file removed, a folder given back) runs before the line. Elsewhere (the
    Python API, training's stop requests, a thread) the handlers stay as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    swapped = [s for s in _SIGNALS if signal.getsignal(s) is _exit_at_once]
    for s in swapped:
        signal.signal(s, _raise_interrupt)
    try:
        yield
    finally:
        for s in swapped:
            signal.signal(s, _exit_at_once)


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
    130 (at once, or after :func:`clean_up_on_interrupt`'s clean-up); once it has ended, signals are ignored and
    CPython's interrupt flag is cleared."""
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: _redeliver_lost_interrupt(unraisable, previous_hook)
    _OWNER["pid"] = os.getpid()
    for sig in _SIGNALS:  # a SIGINT a background shell ignores stays ignored
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _exit_at_once)
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
