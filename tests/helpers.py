"""What several test files share: the command line run as a user runs it, in a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from torch import nn

from seprobe import SqueezeExcite

#: the checkout's root: its pyproject.toml holds the defaults of the mission's example
ROOT = Path(__file__).resolve().parents[1]


def env_without_defaults(**extra) -> dict[str, str]:
    """This environment without ``SEPROBE_*`` defaults (a developer's own must not leak into the tests)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEPROBE_")}
    env.update(extra)
    return env


def run_seprobe(*args, cwd, env=None, **kwargs) -> subprocess.CompletedProcess:
    """``python -m seprobe ARGS`` in ``cwd``, its output captured."""
    return subprocess.run([sys.executable, "-m", "seprobe", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env or env_without_defaults(), **kwargs)


_MANY = r"""
import contextlib, io, json, os, sys, traceback, warnings
from seprobe.cli import main

results = []
for argv, cwd in json.load(sys.stdin):
    os.chdir(cwd)
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        try:
            main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
        except BaseException:
            traceback.print_exc()
            code = 1
    results.append([code, out.getvalue(), err.getvalue()])
json.dump(results, sys.__stdout__)
"""


def run_seprobe_many(cases, env=None) -> list[subprocess.CompletedProcess]:
    """``seprobe ARGV`` in ``cwd`` for each ``(argv, cwd)`` of ``cases``, one after another in one Python process
    (the command line's ``main``, as ``python -m seprobe`` calls it), each result as :func:`run_seprobe`'s: for the
    many command lines that must fail at once, without a torch import each (about 4 s a command here)."""
    import json

    cases = [([str(a) for a in argv], str(cwd)) for argv, cwd in cases]
    proc = subprocess.run([sys.executable, "-c", _MANY], input=json.dumps(cases), capture_output=True, text=True,
                          env=env or env_without_defaults(), check=False)
    assert proc.returncode == 0, proc.stderr
    return [subprocess.CompletedProcess(argv, code, out, err)
            for (argv, _), (code, out, err) in zip(cases, json.loads(proc.stdout), strict=True)]


GOLDFISH, PUG = "n01443537", "n02110958"   # ImageNet classes 1 and 254


def one_line(excinfo) -> str:
    """The message of a raised SeprobeError, which must be one line that says what is valid."""
    message = str(excinfo.value)
    assert "\n" not in message and "valid" in message, message
    return message


def write_flat_images(folder, names, colour=(0, 0, 0)):
    """8 x 8 images of one colour named ``names`` in ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.new("RGB", (8, 8), colour).save(folder / n)
    return folder


class TwoSE(nn.Module):
    """conv -> SE_2_1 -> conv -> SE_3_1 -> linear; every gate depends on the conv before it."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1)
        self.se1, self.se2 = SqueezeExcite(4, hidden_channels=2), SqueezeExcite(4, hidden_channels=2)
        self.se1.name, self.se2.name = "SE_2_1", "SE_3_1"
        self.head = nn.Linear(4, 1000)

    def forward(self, x):
        return self.head(self.se2(self.conv2(self.se1(self.conv1(x)))).mean((2, 3)))


def identity_model(model=None):
    """:class:`TwoSE` (or ``model``) as a network read on 8 x 8 images, the pixels as they are."""
    from seprobe.data.images import Preprocessing
    from seprobe.models.factory import Network

    return Network((model or TwoSE()).eval(), "two-se", Preprocessing(resize=8, crop=8, mean=(0, 0, 0), std=(1, 1, 1)))


def write_class_folders(root, counts: dict[str, int], side: int, seed: int = 0):
    """``root/<class>/<i>.png``: ``counts[class]`` random ``side`` x ``side`` images of each class, drawn in order
    from a generator seeded with ``seed``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, per_class in counts.items():
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def bn(m, x):
    """An eval-mode BatchNorm by hand (functional, its running statistics)."""
    import torch.nn.functional as F

    return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)


def se_ref(se, x):
    """Eq. 2-4 by hand for an seprobe SE block with sigmoid gate and average squeeze: x * sigmoid(W2 relu(W1 z))."""
    import torch
    import torch.nn.functional as F

    z = x.mean((2, 3), keepdim=True)
    h = F.relu(F.conv2d(z, se.fc1.weight, se.fc1.bias))
    return x * torch.sigmoid(F.conv2d(h, se.fc2.weight, se.fc2.bias))
