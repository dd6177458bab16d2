"""Every point of the attention design space trains: a run stopped mid-epoch resumes to the weights of the run
that was not stopped (bitwise), and the command line trains one under torchrun."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seprobe import build_model
from seprobe.training import Recipe, TrainData, train

from .helpers import write_class_folders

#: each preset, and a point nobody published (the max squeeze through ECA's 1-D convolution)
POINTS = {"se": {}, "eca": {"attention": "eca"}, "cbam": {"attention": "cbam"}, "srm": {"attention": "srm"},
          "se_var1": {"attention": "se_var1"}, "se_var2": {"attention": "se_var2"},
          "se_var3": {"attention": "se_var3"}, "max+conv1d": {"squeeze": "max", "excitation": "conv1d"}}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("attention-data")
    write_class_folders(root / "train", {"cat": 8, "dog": 8}, 16)
    write_class_folders(root / "test", {"cat": 3, "dog": 3}, 16, seed=1)
    return root


def _net(knobs: dict):
    torch.manual_seed(0)
    return build_model("se_resnet20_cifar", num_classes=2, **knobs)


def _stop_at(model, forward: int):
    """Ctrl-C at the ``forward``-th training pass of ``model``."""
    calls = []

    def hook(module, inputs, output):
        if module.training:
            calls.append(1)
            if len(calls) == forward:
                signal.raise_signal(signal.SIGINT)

    model.register_forward_hook(hook)
    return model


@pytest.mark.parametrize("point", list(POINTS))
def test_every_point_trains_and_a_stopped_run_resumes_bitwise(point, images, tmp_path):
    recipe = Recipe(epochs=1, batch_size=4, lr=0.05)  # 4 steps
    train(_net(POINTS[point]), TrainData(images), recipe, tmp_path / "whole", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(_stop_at(_net(POINTS[point]), 3), TrainData(images), recipe, tmp_path / "cut", progress=False)
    train(_net(POINTS[point]), TrainData(images), recipe, tmp_path / "cut", resume=True, progress=False)
    whole, cut = (torch.load(p / "final.pth", weights_only=True) for p in (tmp_path / "whole", tmp_path / "cut"))
    assert whole.keys() == cut.keys()
    for k in whole:
        assert torch.equal(whole[k], cut[k]), (point, k)
    trained = _net(POINTS[point])
    trained.load_state_dict(whole)  # the weights are the point's own network's
    assert any(not torch.equal(v, trained.state_dict()[k]) for k, v in _net(POINTS[point]).state_dict().items())


@pytest.mark.slow
def test_the_command_line_trains_cbam_and_srm_under_torchrun(images, tmp_path):
    """Two ranks of ``seprobe train`` (gloo, the CPU): each module's BatchNorms see their rank's half of the
    batch, as DDP without SyncBatchNorm gives; the run finishes, and its final weights load into the module."""
    from .test_distributed import _env

    for attention in ("cbam", "srm"):
        out = tmp_path / attention
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
             "seprobe", "train", "--model", "se_resnet20_cifar", "--attention", attention, "--data", str(images),
             "--epochs", "1", "--batch-size", "8", "--lr", "0.05", "--out", str(out)],
            capture_output=True, text=True, env=_env(), timeout=240)
        assert proc.returncode == 0, proc.stderr
        net = build_model("se_resnet20_cifar", num_classes=2, attention=attention)
        net.load_state_dict(torch.load(out / "final.pth", weights_only=True))
