"""What several test files share: the command line run as a user runs it, in a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys


def env_without_defaults(**extra) -> dict[str, str]:
    """This environment without ``SEPROBE_*`` defaults (a developer's own must not leak into the tests)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEPROBE_")}
    env.update(extra)
    return env


def run_seprobe(*args, cwd, env=None, **kwargs) -> subprocess.CompletedProcess:
    """``python -m seprobe ARGS`` in ``cwd``, its output captured."""
    return subprocess.run([sys.executable, "-m", "seprobe", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env or env_without_defaults(), **kwargs)
