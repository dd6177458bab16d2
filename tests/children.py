"""``python -m seprobe`` as a child process that a test sends signals to.

Two things make such tests wrong without it. A shell that runs the suite in the background (``pytest ... &`` in a
non-interactive shell, ``nohup``) starts it with SIGINT ignored, and SIG_IGN is inherited across ``exec``: the
child would rightly ignore the test's Ctrl-C (``restore_signals`` restores SIGPIPE and SIGXFSZ, not SIGINT), so
each child starts with SIGINT at its default. And a failing test must not leave a ``--time --repeats 50`` child
running for minutes: the child is killed and waited for when the ``with`` block ends, however it ends.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

READY = "seprobe: ready"  # what the child prints on stderr once its interrupt handling is in place (READY_ENV)
READY_ENV = "SEPROBE_TEST_READY"


def sigint_at_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # in the child, before exec: SIG_DFL survives exec, SIG_IGN too


class Child:
    """A running ``python -m seprobe``; its stderr read as it comes (``wait_for``) and at the end (``finish``)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self._err = b""

    def wait_for(self, needle: str, timeout: float = 120) -> bool:
        """Read stderr until a line holds ``needle``; False if the child ended first or ``timeout`` passed."""
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while needle.encode() not in self._err:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return False
                chunk = os.read(fd, 65536)
                if not chunk:
                    return False
                self._err += chunk
        return True

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def signal_group(self, sig: int) -> None:
        """``sig`` to the child and every process it forked, as a terminal's Ctrl-C (needs ``group=True``)."""
        os.killpg(self.proc.pid, sig)

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        """Wait for the end: (exit code, stdout, all of stderr)."""
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out.decode(), (self._err + err).decode()


@contextlib.contextmanager
def seprobe_child(*args, cwd, env: dict[str, str], ready: bool = False, group: bool = False) -> Iterator[Child]:
    """Start ``python -m seprobe *args`` with SIGINT at its default (with ``ready``, the ready line on; with
    ``group``, in a process group of its own, as a terminal's foreground job)."""
    env = {**env, READY_ENV: "1"} if ready else dict(env)
    proc = subprocess.Popen([sys.executable, "-m", "seprobe", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                            preexec_fn=sigint_at_default, process_group=0 if group else None)
    try:
        yield Child(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
