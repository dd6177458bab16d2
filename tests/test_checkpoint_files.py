"""Checkpoint files that are not what they claim, and downloads without a network: one clear line each."""


import os
import urllib.error
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from seprobe import SeprobeError
from seprobe.models import checkpoints
from seprobe.models.checkpoints import pretrained_download, read_state_dict, timm_equivalent, unwrap_state_dict
from seprobe.models.registry import build_model

from .helpers import one_line


def test_checkpoints_that_are_not_state_dicts(tmp_path):
    cases = {
        "int_keys.pth": ({1: torch.zeros(2)}, r"key 1 is an int; valid: a state dict, whose keys are"),
        "sparse.pth": ({"w": torch.eye(3).to_sparse()}, r"'w' is a torch.sparse_coo tensor; valid: dense"),
        "list.pth": ([torch.zeros(1)], r"holds a list, not a state dict"),
        "tensor.pth": (torch.zeros(1), r"holds a Tensor, not a state dict"),
        "none.pth": (None, r"holds None, not a state dict"),
        "nested.pth": ({"w": {"x": 1}}, r"'w' holds a dict; valid: a state dict, whose values are tensors"),
    }
    for name, (payload, message) in cases.items():
        torch.save(payload, tmp_path / name)
        with pytest.raises(SeprobeError, match=message) as e:
            read_state_dict(tmp_path / name)
        one_line(e)
    scripted = tmp_path / "scripted.pt"
    torch.jit.script(nn.Linear(2, 2)).save(str(scripted))
    with pytest.raises(SeprobeError, match=r"is a TorchScript archive .*torch.jit.load\(.*\).state_dict\(\)") as e:
        read_state_dict(scripted)
    one_line(e)
    assert zipfile.is_zipfile(tmp_path / "int_keys.pth")  # a torch.save zip is not taken for TorchScript
    with pytest.raises(SeprobeError, match="key 1"):
        unwrap_state_dict({"state_dict": {1: torch.zeros(1)}})


class _Payload:
    """Unpickled without ``weights_only``, it would call ``os.getcwd`` (harmless here), as a hostile file would
    call anything; ``weights_only`` refuses it."""

    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize("payload", [{"fc.weight": _Payload()}, np.zeros(3)])
def test_a_refused_checkpoint_is_one_line_without_torchs_advice_to_load_it_unsafely(tmp_path, payload):
    """torch's refusal advises loading the file with ``weights_only=False`` (which runs its code) or allowing its
    classes: the line names what was refused and gives no such advice, for weights (every command) and for
    exported ablated networks."""
    from seprobe.models.ablated import load_ablated

    path = tmp_path / "hostile.pth"
    torch.save(payload, path)
    for load in (read_state_dict, load_ablated):
        with pytest.raises(SeprobeError) as e:
            load(path)
        message = str(e.value)
        assert "\n" not in message and message.startswith(f"cannot read checkpoint {str(path)!r}")
        assert ("getcwd" if isinstance(payload, dict) else "_reconstruct") in message, message
        assert not any(word in message for word in ("weights_only=False", "False", "trust", "safe_globals")), message


def test_timm_weights_for_a_model_timm_does_not_have():
    with pytest.raises(SeprobeError, match=r"timm publishes no weights for se_vgg16_bn; valid: .*se_resnet50"):
        timm_equivalent("se_vgg16_bn", build_model("se_vgg16_bn", device="meta"))
    assert timm_equivalent("se_resnet50", build_model("se_resnet50", device="meta")) == "legacy_seresnet50"
    with pytest.raises(SeprobeError, match=r"stem_pool=pad; valid: legacy_seresnet50: stride_at=1x1, stem_pool=ceil"):
        timm_equivalent("se_resnet50", build_model("se_resnet50", stem_pool="pad", device="meta"))


def test_pretrained_download_fails_in_one_line(monkeypatch):
    def refused():
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(checkpoints, "_reachable", lambda host, timeout: True)
    with pytest.raises(SeprobeError,
                       match=r"cannot download timm's se: <urlopen error \[Errno -3\].*local checkpoint path as the"):
        pretrained_download(refused, "timm's se")
    with pytest.raises(KeyError):  # not a network error: not hidden
        pretrained_download(lambda: {}["x"], "x")
    # offline: the hub's cache-only mode, and a one-line error when the file is not cached
    monkeypatch.setattr(checkpoints, "_reachable", lambda host, timeout: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    seen = {}

    def cached():
        seen["offline"] = os.environ.get("HF_HUB_OFFLINE")
        return "weights"

    assert pretrained_download(cached, "x") == "weights" and seen["offline"] == "1"
    assert "HF_HUB_OFFLINE" not in os.environ

    def not_cached():
        raise OSError("cannot find the requested files in the local cache")

    with pytest.raises(SeprobeError, match=r"cannot download x: huggingface.co cannot be reached \(offline\?\)"):
        pretrained_download(not_cached, "x")
