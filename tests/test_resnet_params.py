"""Parameter counts against the paper's closed form and against torchvision's own ResNets."""

import itertools

import pytest
import torch
import torchvision

from seprobe import build_model, se_blocks

# (blocks per stage, bottleneck width per stage, output channels per stage) for the paper's stages 2..5.
RESNET50 = dict(blocks=(3, 4, 6, 3), width=(64, 128, 256, 512), out=(256, 512, 1024, 2048))
ALL_STAGES = (2, 3, 4, 5)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def se_channels(arch, integration):
    """The channels C of every SE block, per stage, as the paper's Fig. 5 places it (computed by hand)."""
    per_stage = {}
    for i, stage in enumerate(ALL_STAGES):
        n, out = arch["blocks"][i], arch["out"][i]
        if integration == "3x3":
            per_stage[stage] = [arch["width"][i]] * n
        elif integration == "pre":
            previous_out = arch["out"][i - 1] if i else 64  # the stem's 64 channels feed stage 2
            per_stage[stage] = [previous_out] + [out] * (n - 1)
        else:
            per_stage[stage] = [out] * n
    return per_stage


def closed_form(arch, r, stages, integration="standard", bias=True):
    """(2/r) * sum_s N_s C_s^2, written per block, plus C/r + C biases per block when on."""
    total = 0
    for stage, channels in se_channels(arch, integration).items():
        if stage in stages:
            for c in channels:
                total += 2 * c * (c // r) + (c // r + c if bias else 0)
    return total


def test_paper_and_anchor_totals():
    assert n_params(build_model("resnet50", device="meta")) == 25_557_032
    assert n_params(build_model("se_resnet50", device="meta")) == 28_088_024
    assert n_params(build_model("se_resnet50", bias=False, device="meta")) == 28_071_976
    # the paper's closed form without biases, and its stage-5 share (senet-paper.md)
    assert closed_form(RESNET50, 16, ALL_STAGES, bias=False) == 2_514_944
    assert closed_form(RESNET50, 16, (5,), bias=False) == 1_572_864


@pytest.mark.parametrize("name,reference", [
    ("resnet18", torchvision.models.resnet18), ("resnet34", torchvision.models.resnet34),
    ("resnet50", torchvision.models.resnet50), ("resnet101", torchvision.models.resnet101),
    ("resnet152", torchvision.models.resnet152), ("resnext50_32x4d", torchvision.models.resnext50_32x4d),
])
def test_plain_models_match_torchvision(name, reference):
    with torch.device("meta"):
        expected = n_params(reference())
    for stride_at in ("1x1", "3x3"):
        assert n_params(build_model(name, stride_at=stride_at, device="meta")) == expected


def test_resnext101_32x4d_matches_timm():
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        expected = n_params(timm.create_model("resnext101_32x4d"))
        expected_se = n_params(timm.create_model("legacy_seresnext101_32x4d"))
    assert n_params(build_model("resnext101_32x4d", device="meta")) == expected
    assert n_params(build_model("se_resnext101_32x4d", device="meta")) == expected_se


@pytest.mark.parametrize("r", [1, 2, 4, 8, 16, 32])
@pytest.mark.parametrize("bias", [True, False])
def test_every_stage_subset_matches_closed_form(r, bias):
    base = n_params(build_model("resnet50", device="meta"))
    for k in range(1, 5):
        for stages in itertools.combinations(ALL_STAGES, k):
            model = build_model("se_resnet50", reduction=r, stages=stages, bias=bias, device="meta")
            assert n_params(model) - base == closed_form(RESNET50, r, stages, bias=bias), stages


@pytest.mark.parametrize("integration", ["standard", "pre", "post", "identity", "3x3"])
@pytest.mark.parametrize("r", [2, 4, 8, 16, 32])
def test_every_integration_matches_closed_form(integration, r):
    base = n_params(build_model("resnet50", device="meta"))
    for stages in [ALL_STAGES, (2, 3, 4)]:
        for bias in (True, False):
            model = build_model("se_resnet50", reduction=r, integration=integration, stages=stages,
                                bias=bias, device="meta")
            assert n_params(model) - base == closed_form(RESNET50, r, stages, integration, bias)


def test_stage5_removal_is_one_flag_and_cuts_the_increase():
    base = n_params(build_model("resnet50", device="meta"))
    full = n_params(build_model("se_resnet50", device="meta")) - base
    no5 = n_params(build_model("se_resnet50", drop_stage5=True, device="meta")) - base
    assert no5 == closed_form(RESNET50, 16, (2, 3, 4))
    assert round(100 * full / base) == 10 and round(100 * no5 / base) == 4  # Section 4: ~10 % -> ~4 %


def test_blocks_are_named_the_papers_way():
    blocks = se_blocks(build_model("se_resnet50", device="meta"))
    assert [b.name for b in blocks] == [f"SE_{s}_{i}" for s, n in zip(ALL_STAGES, (3, 4, 6, 3), strict=True)
                                        for i in range(1, n + 1)]
    by_name = {b.name: b for b in blocks}
    assert by_name["SE_4_6"].path == "layer3.5.se" and by_name["SE_4_6"].gate_path == "layer3.5.se.gate"
    # Table 1's hidden widths: fc [16, 256], [32, 512], [64, 1024], [128, 2048]
    assert {(b.hidden_channels, b.channels) for b in blocks} == {(16, 256), (32, 512), (64, 1024), (128, 2048)}
    assert sum(b.params for b in blocks) == 28_088_024 - 25_557_032
    no5 = se_blocks(build_model("se_resnet50", stages=[2, 3, 4], device="meta"))
    assert not [b for b in no5 if b.stage == 5]


def test_stride_placement():
    caffe = build_model("resnet50", device="meta")
    tv = build_model("resnet50", stride_at="3x3", device="meta")
    assert caffe.layer2[0].conv1.stride == (2, 2) and caffe.layer2[0].conv2.stride == (1, 1)
    assert tv.layer2[0].conv1.stride == (1, 1) and tv.layer2[0].conv2.stride == (2, 2)
    assert caffe.maxpool.ceil_mode and not tv.maxpool.ceil_mode
