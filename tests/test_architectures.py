"""The paper's other SE families: parameter counts against independent counts, SE against the closed form,
blocks found and hookable."""

import pytest
import torch
import torchvision

from seprobe import build_model, se_blocks
from seprobe.models.blocks import find_blocks
from seprobe.probe.hooks import GateHooks


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def conv_bn(cin, cout, k, groups=1):
    """Parameters of a bias-free conv followed by BatchNorm (weight and bias)."""
    return cin // groups * cout * k * k + 2 * cout


def test_vgg16_bn_is_torchvision_key_for_key():
    with torch.device("meta"):
        reference = torchvision.models.vgg16_bn()
    ours = build_model("vgg16_bn", device="meta")
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == \
        [(k, v.shape) for k, v in reference.state_dict().items()]
    assert n_params(ours) == 138_365_992


def test_mobilenet_v1_matches_timm_and_the_paper():
    ours = n_params(build_model("mobilenet_v1", device="meta"))
    assert round(ours / 1e6, 1) == 4.2  # the MobileNet paper's 4.2 M (Table 3 of the SENet paper)
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        assert ours == n_params(timm.create_model("mobilenetv1_100"))


def test_inception_resnet_v2_matches_timm():
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        reference = timm.create_model("inception_resnet_v2")
    assert n_params(build_model("inception_resnet_v2", device="meta")) == n_params(reference) == 55_843_464


def test_shufflenet_v1_g3_matches_a_hand_count():
    """From the ShuffleNet paper's Table 1 (g = 3): 240/480/960 channels, 4/8/4 units, bottleneck = out / 4."""
    total, cin = conv_bn(3, 24, 3), 24
    for cout, units in ((240, 4), (480, 8), (960, 4)):
        for i in range(units):
            mid, branch = cout // 4, cout - cin if i == 0 else cout
            total += conv_bn(cin, mid, 1, groups=1 if cin == 24 else 3)
            total += conv_bn(mid, mid, 3, groups=mid) + conv_bn(mid, branch, 1, groups=3)
            cin = cout
    total += 960 * 1000 + 1000
    assert n_params(build_model("shufflenet_v1_g3", device="meta")) == total


BN_INCEPTION = [  # Ioffe & Szegedy Table 1: 1x1, 3x3 reduce, 3x3, double reduce, double 3x3, pool projection
    (64, 64, 64, 64, 96, 32), (64, 64, 96, 64, 96, 64), (0, 128, 160, 64, 96, 0),
    (224, 64, 96, 96, 128, 128), (192, 96, 128, 96, 128, 128), (160, 128, 160, 128, 160, 128),
    (96, 128, 192, 160, 192, 128), (0, 128, 192, 192, 256, 0), (352, 192, 320, 160, 224, 128),
    (352, 192, 320, 192, 224, 128)]


def bn_inception_outputs():
    cin, outs = 192, []
    for n1, _, n3, _, nd, proj in BN_INCEPTION:
        cin = n1 + n3 + nd + (proj or cin)
        outs.append(cin)
    return outs


def test_bn_inception_matches_a_hand_count():
    total = conv_bn(3, 64, 7) + conv_bn(64, 64, 1) + conv_bn(64, 192, 3)
    cin = 192
    for (n1, r3, n3, rd, nd, proj), out in zip(BN_INCEPTION, bn_inception_outputs(), strict=True):
        total += (conv_bn(cin, n1, 1) if n1 else 0) + conv_bn(cin, r3, 1) + conv_bn(r3, n3, 3)
        total += conv_bn(cin, rd, 1) + conv_bn(rd, nd, 3) + conv_bn(nd, nd, 3) + (conv_bn(cin, proj, 1) if proj else 0)
        cin = out
    assert bn_inception_outputs()[-1] == 1024
    assert n_params(build_model("bn_inception", device="meta")) == total + 1024 * 1000 + 1000


SE_CHANNELS = {  # the channels of every SE block, listed from each paper's architecture table
    "vgg16_bn": [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512],
    "mobilenet_v1": [64, 128, 128, 256, 256] + [512] * 6 + [1024, 1024],
    "shufflenet_v1_g3": [216] + [240] * 3 + [240] + [480] * 7 + [480] + [960] * 3,
    "bn_inception": bn_inception_outputs(),
    "inception_resnet_v2": [320] * 10 + [1088] * 20 + [2080] * 10,
}


@pytest.mark.parametrize("name", sorted(SE_CHANNELS))
@pytest.mark.parametrize("r", [4, 16])
def test_se_adds_the_closed_form(name, r):
    base = n_params(build_model(name, device="meta"))
    for bias in (True, False):
        model = build_model(f"se_{name}", reduction=r, bias=bias, device="meta")
        expected = sum(2 * c * (c // r) + ((c // r) + c if bias else 0) for c in SE_CHANNELS[name])
        assert n_params(model) - base == expected
        assert [b.channels for b in se_blocks(model)] == SE_CHANNELS[name]


@pytest.mark.parametrize("name,first,last", [pytest.param("se_vgg16_bn", "SE_1_1", "SE_5_3", marks=pytest.mark.slow),
                                             ("se_mobilenet_v1", "SE_1_1", "SE_5_2"),
                                             ("se_shufflenet_v1_g3", "SE_3_1", "SE_5_4"),
                                             ("se_bn_inception", "SE_3_1", "SE_5_2"),
                                             pytest.param("se_inception_resnet_v2", "SE_3_1", "SE_5_10",
                                                          marks=pytest.mark.slow)])
def test_blocks_are_named_listed_and_hookable(name, first, last):
    model = build_model(name).eval()
    gates = find_blocks(model, input_size=96)
    assert gates[0].name == first and gates[-1].name == last
    recorder = GateHooks(model, gates)
    with torch.inference_mode():
        model(torch.randn(1, 3, 96, 96))
    assert set(recorder.values) == {g.name for g in gates}
    assert all(recorder.values[g.name].shape[1] == g.channels for g in gates)


def test_stage_knobs_apply():
    assert {b.stage for b in se_blocks(build_model("se_vgg16_bn", stages=[1, 2], device="meta"))} == {1, 2}
    assert {b.stage for b in se_blocks(build_model("se_inception_resnet_v2", drop_stage5=True, device="meta"))} \
        == {3, 4}
    from seprobe import SeprobeError

    with pytest.raises(SeprobeError, match="invalid stage 2 in stages; valid: a subset of 3, 4, 5"):
        build_model("se_shufflenet_v1_g3", stages=[2, 3], device="meta")


@pytest.mark.slow
def test_models_table_counts_every_model_independently():
    """`seprobe models`: each parameter count against torchvision, timm or the hand count from the paper's table,
    SE models as their counterpart plus the closed form (2/r) sum C^2 + biases."""
    import torchvision

    from seprobe.models.registry import models_table

    from .test_resnet_params import RESNET50, closed_form

    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        plain = {name: n_params(getattr(torchvision.models, name)()) for name in
                 ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "vgg16_bn")}
        plain |= {"resnext101_32x4d": n_params(timm.create_model("resnext101_32x4d")),
                  "mobilenet_v1": n_params(timm.create_model("mobilenetv1_100")),
                  "inception_resnet_v2": n_params(timm.create_model("inception_resnet_v2"))}
    from .hand_counts import CIFAR_NETS, cifar_params, cifar_se_blocks, shufflenet_params
    from .hand_counts import se_params as cifar_se_params

    plain["shufflenet_v1_g3"] = shufflenet_params()
    plain["bn_inception"] = 11_285_224  # hand count: test_bn_inception_matches_a_hand_count
    plain |= {name: cifar_params(name) for name in CIFAR_NETS}  # hand counts of the CIFAR papers' layer lists
    basic = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}  # blocks per stage, output 64..512 channels
    bottleneck = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3),
                  "resnext50_32x4d": (3, 4, 6, 3), "resnext101_32x4d": (3, 4, 23, 3)}

    def se_params(base):
        if base in CIFAR_NETS:
            return cifar_se_params(cifar_se_blocks(base))
        if base in SE_CHANNELS:
            return sum(2 * c * (c // 16) + c // 16 + c for c in SE_CHANNELS[base])
        if base in basic:
            return sum(n * (2 * c * (c // 16) + c // 16 + c) for n, c in zip(basic[base], (64, 128, 256, 512),
                                                                           strict=True))
        return closed_form(dict(RESNET50, blocks=bottleneck[base]), 16, (2, 3, 4, 5))

    table = models_table().set_index("model")
    assert set(table.index) == set(plain) | {f"se_{name}" for name in plain}
    for name, row in table.iterrows():
        base = name.removeprefix("se_")
        expected = plain[base] + (se_params(base) if row["se"] else 0)
        assert row["params"] == expected, name
        assert row["se"] == name.startswith("se_") and row["without_se"] == base
        assert row["input_size"] == {"inception_resnet_v2": 299}.get(base, 32 if base in CIFAR_NETS else 224)


@pytest.mark.parametrize("name", sorted(SE_CHANNELS))
def test_se_knobs_reach_every_block_of_every_family(name):
    model = build_model(f"se_{name}", gate="tanh", squeeze="max", reduction=4, bias=False, device="meta")
    blocks = se_blocks(model)
    assert [b.channels for b in blocks] == SE_CHANNELS[name]
    for b in blocks:
        se = model.get_submodule(b.path)
        assert isinstance(model.get_submodule(b.gate_path), torch.nn.Tanh)
        assert se.squeeze.kind == "max" and se.fc1.out_channels == b.channels // 4 and se.fc1.bias is None
