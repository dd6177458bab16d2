"""timm / Cadene checkpoints load into seprobe's models by key mapping and give identical logits."""

import pickle

import pytest
import torch

from seprobe import SeprobeError, build_model
from seprobe.models.checkpoints import TIMM_EQUIVALENTS, build_from_timm, detect_layout, load_weights

from .conftest import randomize_batchnorm

timm = pytest.importorskip("timm", reason="timm is the reference here: pip install -e '.[dev]'")


@pytest.mark.parametrize("timm_name", ["legacy_seresnet50"] + [
    pytest.param(n, marks=pytest.mark.slow)
    for n in ("seresnet50", "legacy_seresnext50_32x4d", "seresnext50_32x4d", "resnet50", "resnet18")])
def test_timm_weights_give_identical_logits(timm_name):
    reference = randomize_batchnorm(timm.create_model(timm_name)).eval()
    name, arch = TIMM_EQUIVALENTS[timm_name]
    model = load_weights(build_model(name, **arch), reference.state_dict()).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        diff = (model(x) - reference(x)).abs().max().item()
    assert diff < 1e-5


@pytest.mark.slow
def test_legacy_seresnext_needs_the_3x3_stride():
    """Cadene's SE-ResNeXt strides in the 3x3 conv: the keys fit the 1x1 model too, the logits do not."""
    reference = randomize_batchnorm(timm.create_model("legacy_seresnext50_32x4d")).eval()
    wrong = load_weights(build_model("se_resnext50_32x4d", stride_at="1x1"), reference.state_dict()).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (wrong(x) - reference(x)).abs().max() > 1e-3


def test_checkpoint_files_load_with_weights_only(tmp_path):
    state = timm.create_model("legacy_seresnet50").state_dict()
    assert detect_layout(state) == "legacy"
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = load_weights(build_model("se_resnet50"), path)
    torch.testing.assert_close(model.fc.weight, state["last_linear.weight"])
    torch.testing.assert_close(model.layer4[2].se.fc1.weight, state["layer4.2.se_module.fc1.weight"])


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_checkpoint_never_runs_code(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Evil()}, f)
    with pytest.raises(SeprobeError, match="cannot read checkpoint"):
        load_weights(build_model("resnet18"), path)


def test_mismatch_names_the_first_offending_keys():
    state = build_model("se_resnet50", device="cpu").state_dict()
    with pytest.raises(SeprobeError, match=r"unexpected keys layer1\.0\.se\.fc1\.weight"):
        load_weights(build_model("resnet50"), state)
    state = build_model("se_resnet50", reduction=8).state_dict()
    with pytest.raises(SeprobeError, match=r"shape mismatch layer1\.0\.se\.fc1\.weight \(32, 256, 1, 1\) vs model"):
        load_weights(build_model("se_resnet50"), state)
    with pytest.raises(SeprobeError, match="does not exist"):
        load_weights(build_model("resnet18"), "no/such/file.pth")


def test_build_from_timm_offline_path():
    """The pretrained path for online users, exercised with random weights (no hub here)."""
    model = build_from_timm("seresnet50", pretrained=False)
    assert model.stride_at == "3x3" and model.layer1[0].se.name == "SE_2_1"
    with pytest.raises(SeprobeError, match="no seprobe equivalent of timm model 'vit_base'"):
        build_from_timm("vit_base", pretrained=False)
