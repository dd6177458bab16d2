"""Every registered model and every knob value builds, runs forward and backward; bad input is refused clearly."""


import pytest
import torch

from seprobe import SeprobeError, build_model, list_models, plain_counterpart, se_blocks
from seprobe.models.se_config import parse_stages

from .helpers import ROOT, run_seprobe


def fwd_bwd(model, size=64):
    x = torch.randn(2, 3, size, size, requires_grad=True)
    out = model(x)
    out.square().mean().backward()
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert x.grad is not None and torch.isfinite(x.grad).all()


QUICK_MODELS = ("resnet18", "se_resnet18", "mobilenet_v1", "se_mobilenet_v1", "shufflenet_v1_g3", "se_shufflenet_v1_g3",
                "resnet20_cifar", "se_resnet20_cifar")


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n in QUICK_MODELS else [pytest.mark.slow])
                                  for n in list_models()])
def test_every_model_forward_backward(name):
    from seprobe.models.registry import get_spec

    fwd_bwd(build_model(name, num_classes=10), size=max(64, get_spec(name).min_input_size))


KNOB_VALUES = [
    {"reduction": 1}, {"reduction": 4}, {"reduction": 32},
    {"squeeze": "avg"}, {"squeeze": "max"}, {"squeeze": "none"},
    {"gate": "sigmoid"}, {"gate": "tanh"}, {"gate": "relu"}, {"gate": "hardsigmoid"},
    {"bias": False}, {"stages": (2,)}, {"stages": [3, 5]}, {"drop_stage5": True},
    {"integration": "standard"}, {"integration": "pre"}, {"integration": "post"},
    {"integration": "identity"}, {"integration": "3x3"},
    {"stride_at": "1x1"}, {"stride_at": "3x3"}, {"stem_pool": "ceil"}, {"stem_pool": "pad"},
]


@pytest.mark.parametrize("knobs", KNOB_VALUES, ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()))
@pytest.mark.parametrize("name", ["se_resnet18", pytest.param("se_resnet50", marks=pytest.mark.slow)])
def test_every_knob_value_forward_backward(name, knobs):
    model = build_model(name, num_classes=10, **knobs)
    fwd_bwd(model)
    assert_knobs_reached(model, name, knobs)


GATE_FUNCTIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
                  "hardsigmoid": torch.nn.functional.hardsigmoid}
SQUEEZE_FUNCTIONS = {"avg": lambda x: x.mean((2, 3), keepdim=True), "max": lambda x: x.amax((2, 3), keepdim=True),
                     "none": lambda x: x}
#: (channels of the unit's input, 3x3 width, output) of each stage's units in ResNet-18 / ResNet-50
UNIT_WIDTHS = {"se_resnet18": {2: (64, 64, 64), 3: (64, 128, 128), 4: (128, 256, 256), 5: (256, 512, 512)},
               "se_resnet50": {2: (64, 64, 256), 3: (256, 128, 512), 4: (512, 256, 1024), 5: (1024, 512, 2048)}}


def assert_knobs_reached(model, name, knobs):
    """The knobs changed the network: every SE block computes Eq. 2-4 with the chosen squeeze, gate, width and
    biases (checked against functional ops), on the chosen stages and channels; strides and stem pool as asked."""
    blocks = se_blocks(model)
    r, squeeze, gate = knobs.get("reduction", 16), knobs.get("squeeze", "avg"), knobs.get("gate", "sigmoid")
    stages = set(parse_stages(knobs.get("stages", (2, 3, 4, 5)))) - ({5} if knobs.get("drop_stage5") else set())
    assert {b.stage for b in blocks} == stages
    where = knobs.get("integration", "standard")
    for b in blocks:
        inp, width, out = UNIT_WIDTHS[name][b.stage]
        first = b.block == 1
        expected = {"pre": inp if first else out, "3x3": width}.get(where, out)
        assert b.channels == expected, (b.name, where)
        se = model.get_submodule(b.path)
        assert se.fc1.out_channels == b.channels // r
        assert (se.fc1.bias is None) == (knobs.get("bias") is False)
        x = torch.randn(1, b.channels, 3, 3)
        fc1_b, fc2_b = (se.fc1.bias, se.fc2.bias) if se.fc1.bias is not None else (None, None)
        h = torch.relu(torch.nn.functional.conv2d(SQUEEZE_FUNCTIONS[squeeze](x), se.fc1.weight, fc1_b))
        s = GATE_FUNCTIONS[gate](torch.nn.functional.conv2d(h, se.fc2.weight, fc2_b))
        with torch.no_grad():
            torch.testing.assert_close(se(x), x * s)
    stride_at = knobs.get("stride_at", "1x1")
    stem_pool = knobs.get("stem_pool", "ceil" if stride_at == "1x1" else "pad")
    assert (model.maxpool.padding, model.maxpool.ceil_mode) == ((0, True) if stem_pool == "ceil" else (1, False))
    if name == "se_resnet50":
        unit = model.layer2[0]
        assert (unit.conv1.stride, unit.conv2.stride) == (((2, 2), (1, 1)) if stride_at == "1x1" else ((1, 1), (2, 2)))


@pytest.mark.parametrize("name,knobs,match", [
    ("se_resnet51", {}, "unknown model 'se_resnet51'; valid: bn_inception"),
    ("se_resnet50", {"reduction": 0}, "reduction ratio 0; valid: an integer r >= 1"),
    ("se_resnet50", {"reduction": -3}, "reduction ratio -3"),
    ("se_resnet50", {"reduction": 512}, "larger than an SE block's 256 channels; valid: 1 <= r <= 256"),
    ("se_resnet18", {"reduction": 128}, "larger than an SE block's 64 channels"),
    ("se_resnet50", {"stages": (1, 2)}, "invalid stage 1 in stages; valid: a subset of 2, 3, 4, 5"),
    ("se_resnet50", {"stages": "2,3"}, "invalid stages '2,3'; valid: a list of stage numbers"),
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


@pytest.mark.slow
def test_cli_error_is_one_line_exit_2():
    proc = run_seprobe("models", "--output", "x.unknown", cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "valid: .csv" in proc.stderr


def test_foreign_gates_are_found_and_named():
    import torchvision

    from seprobe.models.blocks import find_blocks

    names = [g.name for g in find_blocks(torchvision.models.mobilenet_v3_small())]
    assert names == ["SE_2_1"] + [f"SE_4_{i}" for i in range(1, 6)] + [f"SE_5_{i}" for i in range(1, 4)]
    timm = pytest.importorskip("timm")
    ours = [(g.name, g.channels) for g in find_blocks(build_model("se_resnet50"))]
    assert [(g.name, g.channels) for g in find_blocks(timm.create_model("seresnet50"))] == ours
    assert find_blocks(timm.create_model("legacy_seresnet50"))[0].gate_path == "layer1.0.se_module.sigmoid"


def _rule_names(blocks):
    """Names by the README's rule from (channels, side) in network order: stage = log2(224 / side), block = order."""
    import math

    seen, out = {}, []
    for channels, side in blocks:
        stage = round(math.log2(224 / side))
        seen[stage] = seen.get(stage, 0) + 1
        out.append((f"SE_{stage}_{seen[stage]}", channels))
    return out


FOREIGN_SE = {  # (expanded channels, side at 224x224) of every SE block, from each paper's architecture table
    # MobileNetV3-Large (Howard et al. 2019, Table 1): SE in the 5x5 bnecks at 28, the 112-wide ones at 14, the 7x7
    "mobilenet_v3_large": [(72, 28), (120, 28), (120, 28), (480, 14), (672, 14), (672, 7), (960, 7), (960, 7)],
    # EfficientNet-B0 (Tan & Le 2019, Table 1): SE in every MBConv, on the expanded width after the depthwise conv
    "efficientnet_b0": [(32, 112), (96, 56), (144, 56), (144, 28), (240, 28), (240, 14), (480, 14), (480, 14),
                        (480, 14), (672, 14), (672, 14), (672, 7), (1152, 7), (1152, 7), (1152, 7), (1152, 7)],
    # RegNetY-400MF (Radosavovic et al. 2020): depths 1, 3, 6, 6 and widths 48, 104, 208, 440 at 56, 28, 14, 7
    "regnet_y_400mf": [(48, 56)] + [(104, 28)] * 3 + [(208, 14)] * 6 + [(440, 7)] * 6,
}


@pytest.mark.parametrize("name", sorted(FOREIGN_SE))
def test_torchvision_se_networks_are_named_by_the_rule(name):
    import torchvision

    from seprobe.models.blocks import find_blocks

    gates = find_blocks(getattr(torchvision.models, name)())
    assert [(g.name, g.channels) for g in gates] == _rule_names(FOREIGN_SE[name])
    assert all(g.gate_path.endswith(".scale_activation") for g in gates)
