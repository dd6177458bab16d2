"""Every registered model and every knob value builds, runs forward and backward; bad input is refused clearly."""

import subprocess
import sys

import pytest
import torch

from seprobe import SeprobeError, build_model, list_models, plain_counterpart, se_blocks


def fwd_bwd(model, size=64):
    x = torch.randn(2, 3, size, size, requires_grad=True)
    out = model(x)
    out.square().mean().backward()
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", list_models())
def test_every_model_forward_backward(name):
    from seprobe.models.registry import get_spec

    fwd_bwd(build_model(name, num_classes=10), size=max(64, get_spec(name).min_input_size))


KNOB_VALUES = [
    {"reduction": 1}, {"reduction": 4}, {"reduction": 32},
    {"squeeze": "avg"}, {"squeeze": "max"}, {"squeeze": "none"},
    {"gate": "sigmoid"}, {"gate": "tanh"}, {"gate": "relu"}, {"gate": "hardsigmoid"},
    {"bias": False}, {"stages": (2,)}, {"stages": "3,5"}, {"drop_stage5": True},
    {"integration": "standard"}, {"integration": "pre"}, {"integration": "post"},
    {"integration": "identity"}, {"integration": "3x3"},
    {"stride_at": "1x1"}, {"stride_at": "3x3"}, {"stem_pool": "ceil"}, {"stem_pool": "pad"},
]


@pytest.mark.parametrize("knobs", KNOB_VALUES, ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()))
@pytest.mark.parametrize("name", ["se_resnet18", "se_resnet50"])
def test_every_knob_value_forward_backward(name, knobs):
    model = build_model(name, num_classes=10, **knobs)
    fwd_bwd(model)
    assert se_blocks(model)


@pytest.mark.parametrize("name,knobs,match", [
    ("se_resnet51", {}, "unknown model 'se_resnet51'; valid: bn_inception"),
    ("se_resnet50", {"reduction": 0}, "reduction ratio 0; valid: an integer r >= 1"),
    ("se_resnet50", {"reduction": -3}, "reduction ratio -3"),
    ("se_resnet50", {"reduction": 512}, "larger than an SE block's 256 channels; valid: 1 <= r <= 256"),
    ("se_resnet18", {"reduction": 128}, "larger than an SE block's 64 channels"),
    ("se_resnet50", {"stages": (1, 2)}, "invalid stage 1; valid: a subset of 2, 3, 4, 5"),
    ("se_resnet50", {"stages": "2,x"}, "invalid stages '2,x'"),
    ("se_resnet50", {"stages": (5,), "drop_stage5": True}, "no stage carries SE"),
    ("se_resnet50", {"squeeze": "mean"}, "unknown squeeze 'mean'; valid: 'avg', 'max', 'none'"),
    ("se_resnet50", {"gate": "swish"}, "unknown excitation gate 'swish'"),
    ("se_resnet50", {"integration": "middle"}, "unknown integration 'middle'; valid: 'standard'"),
    ("se_resnet50", {"stride_at": "7x7"}, "unknown stride placement '7x7'; valid: '1x1', '3x3'"),
    ("resnet50", {"reduction": 8}, "knob 'reduction' applies only to models with SE; resnet50 has none"),
    ("se_resnet50", {"depth": 8}, "unknown knob 'depth' for se_resnet50; valid: num_classes"),
])
def test_invalid_input_is_refused_clearly(name, knobs, match):
    with pytest.raises(SeprobeError, match=match):
        build_model(name, device="meta", **knobs)


def test_plain_counterpart_keeps_architecture_knobs():
    assert plain_counterpart("se_resnext50_32x4d", {"reduction": 8, "stride_at": "3x3"}) == (
        "resnext50_32x4d", {"stride_at": "3x3"})


def test_cli_error_is_one_line_exit_2():
    proc = subprocess.run([sys.executable, "-m", "seprobe.cli", "models", "--output", "x.unknown"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "valid: .csv" in proc.stderr


def test_foreign_gates_are_found_and_named():
    import torchvision

    from seprobe.probe.gates import find_gates

    names = [g.name for g in find_gates(torchvision.models.mobilenet_v3_small())]
    assert names == ["SE_2_1"] + [f"SE_4_{i}" for i in range(1, 6)] + [f"SE_5_{i}" for i in range(1, 4)]
    timm = pytest.importorskip("timm")
    ours = [(g.name, g.channels) for g in find_gates(build_model("se_resnet50"))]
    assert [(g.name, g.channels) for g in find_gates(timm.create_model("seresnet50"))] == ours
    assert find_gates(timm.create_model("legacy_seresnet50"))[0].gate_path == "layer1.0.se_module.sigmoid"
