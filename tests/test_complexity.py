"""Multiply-add counts against hand counts, closed forms, fvcore on torchvision, and the paper's figures."""

import functools

import pytest
import torch
import torchvision

from seprobe.cost import complexity
from seprobe.cost.flops import FlopConvention, count_flops
from seprobe.paper import FIGURES
from seprobe.report.complexity import block_table, notes, stage_table, summary_table

from . import hand_counts as hc
from .helpers import ROOT, run_seprobe

#: Counting is deterministic: tests that read the same model's counts share one trace (read-only).
measure = functools.cache(complexity.measure)

BLOCKS, PLANES = (3, 4, 6, 3), (64, 128, 256, 512)
SIZES = (56, 28, 14, 7)  # output side of stages 2..5 at 224x224


def resnet50_conv_fc_macs(stride_at):
    """Every convolution of ResNet-50 counted by hand: Cin * Cout * k^2 * Hout * Wout, plus the FC layer."""
    macs = 3 * 64 * 7 * 7 * 112 * 112
    cin, side_in = 64, 56
    for n, planes, side in zip(BLOCKS, PLANES, SIZES, strict=True):
        for i in range(n):
            first = i == 0
            conv1_side = side if (stride_at == "1x1" or not first) else side_in
            macs += cin * planes * conv1_side**2                    # 1x1 reduce
            macs += planes * planes * 9 * side**2                   # 3x3
            macs += planes * 4 * planes * side**2                   # 1x1 expand
            if first:
                macs += cin * 4 * planes * side**2                  # projection shortcut
            cin = 4 * planes
        side_in = side
    return macs + 2048 * 1000


@pytest.mark.parametrize("stride_at,expected_g", [("1x1", 3.858), ("3x3", 4.089)])
def test_resnet50_conv_fc_equals_hand_count(stride_at, expected_g):
    c = measure("resnet50", stride_at=stride_at)
    conv_fc = c.flops.by_category["conv"] + c.flops.by_category["fc"]
    assert conv_fc == resnet50_conv_fc_macs(stride_at)
    assert round(conv_fc / 1e9, 3) == expected_g


def test_se_additions_equal_hand_counts():
    c = measure("se_resnet50")
    cat = c.flops.by_category
    channels = [4 * p for p in PLANES]
    assert cat["se_fc"] == sum(n * 2 * ch * (ch // 16) for n, ch in zip(BLOCKS, channels, strict=True))  # (2/r)ΣN C²
    elements = sum(n * ch * s * s for n, ch, s in zip(BLOCKS, channels, SIZES, strict=True))
    assert cat["se_squeeze"] == elements == 5_519_360   # one add per element of u
    assert cat["se_scale"] == elements                  # one multiply per element of u
    assert cat["se_gate"] == sum(n * ch for n, ch in zip(BLOCKS, channels, strict=True))  # one per gate value
    assert cat["se_act"] == sum(n * ch // 16 for n, ch in zip(BLOCKS, channels, strict=True)) == 944  # hidden ReLU
    assert c.total - c.plain_total == cat["se_fc"] + cat["se_scale"]  # multiplications; the squeeze only adds
    pooled = FlopConvention(pooling=True)
    assert c.flops.total(pooled) - c.plain_flops.total(pooled) == cat["se_fc"] + cat["se_squeeze"] + cat["se_scale"]
    assert c.plain_model == "resnet50" and c.params - c.plain_params == 28_088_024 - 25_557_032


def test_nosqueeze_fcs_run_at_every_position():
    cat = measure("se_resnet50", squeeze="none", bias=False).flops.by_category
    channels = [4 * p for p in PLANES]
    assert cat["se_fc"] == sum(n * 2 * ch * (ch // 16) * s * s for n, ch, s in zip(BLOCKS, channels, SIZES,
                                                                                   strict=True))
    assert cat["se_gate"] == cat["se_scale"] and "se_squeeze" not in cat


@pytest.mark.slow
def test_max_squeeze_costs_what_avg_costs():
    avg, mx = measure("se_resnet50"), measure("se_resnet50", squeeze="max")
    assert avg.flops.by_category == mx.flops.by_category


@pytest.mark.slow
def test_bn_convention_matches_fvcore_default_on_torchvision():
    from fvcore.nn import FlopCountAnalysis

    tv = torchvision.models.resnet50().eval()
    analysis = FlopCountAnalysis(tv, torch.zeros(1, 3, 224, 224))
    analysis.unsupported_ops_warnings(False)
    ours = measure("resnet50", stride_at="3x3", convention=FlopConvention(bn=True, pooling=True))
    assert ours.total == analysis.total()
    assert notes(ours) and "BatchNorm" in notes(ours)[-1]


def test_count_flags_add_hand_counted_operations():
    """--count-bn / -activations / -adds / -pooling on ResNet-50, every operation counted by hand from Table 1:
    BatchNorm 2 per conv output element, one ReLU per element it rectifies, one add per residual sum's element,
    the global average pool one add per input element (the max-pool has no formula)."""
    relu = bn = adds = 0
    stem = 64 * 112 * 112
    for _, width, out, _, side, first in hc.bottleneck_units(hc.RESNET_DEPTHS[50]):
        bn += 2 * (2 * width + out + (out if first else 0)) * side * side
        relu += (2 * width + out) * side * side
        adds += out * side * side
    c = measure("resnet50")
    base = c.total
    assert base == hc.resnet_macs(hc.RESNET_DEPTHS[50])
    assert c.flops.total(FlopConvention(bn=True)) - base == 2 * stem + bn == 21_174_272
    assert c.flops.total(FlopConvention(activations=True)) - base == stem + relu == 9_081_856
    assert c.flops.total(FlopConvention(adds=True)) - base == adds == 5_519_360
    assert c.flops.total(FlopConvention(pooling=True)) - base == 2048 * 7 * 7
    assert c.flops.unsupported == {"aten::max_pool2d": 1}


def test_convention_flags_add_exactly_their_category():
    model = measure("se_resnet18")
    flops = model.flops
    base = flops.total(FlopConvention())
    assert flops.total(FlopConvention(activations=True)) == base + flops.by_category["act"] + \
        flops.by_category["se_gate"] + flops.by_category["se_act"]
    assert flops.total(FlopConvention(adds=True)) == base + flops.by_category["add"]
    assert flops.total(FlopConvention(pooling=True)) == base + flops.by_category["pool"] + \
        flops.by_category["se_squeeze"]


@functools.cache
def timm_inception_resnet_v2_macs():
    """Conv + linear multiply-adds of timm's Inception-ResNet-v2 at 299x299, counted by fvcore (the reference)."""
    timm = pytest.importorskip("timm")
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(timm.create_model("inception_resnet_v2").eval(), torch.zeros(1, 3, 299, 299))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    ops = analysis.by_operator()
    return ops["conv"] + ops["linear"] + ops.get("addmm", 0)


def se_resnet50_variant(knobs):
    """(FC, scale, parameters) of SE in SE-ResNet-50 for the knobs of Tables 10, 13, 15, 16 (bias-free)."""
    r, stages = knobs.get("reduction", 16), knobs.get("stages") or (2, 3, 4, 5)
    if knobs.get("integration") == "3x3":  # on the 3x3 conv's output: planes channels
        blocks = [(p, s) for n, p, s, st in zip(hc.RESNET_DEPTHS[50], hc.RESNET_PLANES, hc.RESNET_SIDES, (2, 3, 4, 5),
                                                strict=True) if st in stages for _ in range(n)]
        return hc.se_costs(blocks, r)
    fc, scale, params = hc.resnet_se(hc.RESNET_DEPTHS[50], r, stages)
    if knobs.get("squeeze") == "none":  # NoSqueeze: the FCs are 1x1 convolutions at every position
        fc = sum(n * 2 * 4 * p * (4 * p // r) * s * s
                 for n, p, s in zip(hc.RESNET_DEPTHS[50], hc.RESNET_PLANES, hc.RESNET_SIDES, strict=True))
    return fc, scale, params


def independent_figure(fig):
    """(multiply-adds, parameters) of a paper figure's configuration, counted without seprobe."""
    base = fig.model.removeprefix("se_")
    se = fig.model.startswith("se_")
    if base.startswith("resnet"):
        depth = int(base.removeprefix("resnet"))
        flops, params = hc.resnet_macs(hc.RESNET_DEPTHS[depth]), {50: 25_557_032}.get(depth)  # torchvision's count
        fc, scale, se_params = se_resnet50_variant(fig.knobs) if depth == 50 else hc.resnet_se(hc.RESNET_DEPTHS[depth])
    elif base.startswith("resnext"):
        blocks = hc.RESNET_DEPTHS[int(base[7:base.index("_")])]
        flops, params = hc.resnet_macs(blocks, "3x3", groups=32, base_width=4), None
        fc, scale, se_params = hc.resnet_se(blocks)
    else:
        flops, params, se_blocks = {
            "vgg16_bn": (hc.vgg16_macs, None, hc.vgg16_se_blocks),
            "bn_inception": (hc.bn_inception_macs, None, hc.bn_inception_se_blocks),
            "inception_resnet_v2": (timm_inception_resnet_v2_macs, None, lambda: hc.INCEPTION_RESNET_V2_SE_BLOCKS),
            "mobilenet_v1": (hc.mobilenet_macs, hc.mobilenet_params, hc.mobilenet_se_blocks),
            "shufflenet_v1_g3": (hc.shufflenet_macs, hc.shufflenet_params, hc.shufflenet_se_blocks),
        }[base]
        flops, params = flops(), params and params()
        fc, scale, se_params = hc.se_costs(se_blocks())
    if se:
        flops, params = flops + fc + scale, params and params + se_params
    return flops, params


def _slow_if(condition):
    return [pytest.mark.slow] if condition else []


@pytest.mark.parametrize("fig", [pytest.param(f, marks=_slow_if(f.model.startswith(("se_resnet1", "resnet1",
                                                                                   "inception_resnet", "se_incep"))),
                                              id=f"{f.table}-{f.label}")
                                 for f in FIGURES if f.gflops or f.mflops or f.params_m])
def test_paper_figures_reproduced_or_explained(fig):
    """Every measured figure equals its independent count; where that differs from the paper's, a note says why."""
    c = measure(fig.model, bias=False, **fig.knobs) if fig.model.startswith("se_") else measure(fig.model)
    flops, params = independent_figure(fig)
    cat = c.flops.by_category
    # conv + linear + SE's FCs and scale: what the paper counts (Inception-ResNet-v2's residual scaling aside)
    assert cat["conv"] + cat["fc"] + cat["se_fc"] + cat["se_scale"] == flops
    if not fig.model.endswith("inception_resnet_v2"):
        assert c.total == flops
    if params is not None:
        assert c.params == params
    gflops_ok = fig.gflops is None or round(c.total / 1e9, 2) == fig.gflops
    mflops_ok = fig.mflops is None or round(c.total / 1e6) == fig.mflops
    params_ok = fig.params_m is None or round(c.params / 1e6, 1) == fig.params_m
    if gflops_ok and mflops_ok and params_ok:
        assert not notes(c)
    else:
        assert fig.note, f"{fig.label} differs from the paper without an explanation"
        assert any(fig.note in n for n in notes(c))


@pytest.mark.slow  # the same figures are checked exactly, and more, by the test above
def test_paper_figures_that_must_match_exactly():
    """Section 4 and Tables 13, 15, 16: the paper's two decimals, under the default convention."""
    expected = [("resnet50", {}, 3.86), ("se_resnet50", {}, 3.87), ("se_resnet50", {"stages": (2,)}, 3.86),
                ("se_resnet50", {"stages": (4,)}, 3.86), ("se_resnet50", {"integration": "3x3"}, 3.86),
                ("se_resnet50", {"squeeze": "none"}, 4.27)]
    for name, knobs, g in expected:
        assert round(measure(name, **knobs).total / 1e9, 2) == g, (name, knobs)


def test_per_block_and_per_stage_tables():
    c = measure("se_resnet50")
    blocks, stages = block_table(c), stage_table(c)
    assert list(blocks["block"])[:2] == ["SE_2_1", "SE_2_2"] and len(blocks) == 16
    stage5 = stages.set_index("stage").loc[5]
    assert stage5["params"] == 3 * (2 * 2048 * 128 + 128 + 2048) == 1_579_392
    assert stage5["params_share_pct"] == pytest.approx(100 * 1_579_392 / 2_530_992)
    assert blocks["flops"].sum() == c.total - c.plain_total
    assert blocks["params_share_pct"].sum() == pytest.approx(100)


def test_summary_table_columns():
    df = summary_table([measure("se_resnet50"), measure("resnet18")])
    row = df.set_index("model").loc["se_resnet50"]
    assert row["paper_gflops"] == 3.87 and row["se_params"] == 2_530_992
    assert row["se_params_pct"] == pytest.approx(100 * 2_530_992 / 25_557_032)
    assert df.set_index("model").loc["resnet18", "se_gflops"] == 0


# MobileNetV3-Small (Howard et al. 2019, Table 2): the SE blocks' expanded channels and output side at 224x224
MOBILENET_V3_SMALL_SE = [(16, 56), (96, 14), (240, 14), (240, 14), (120, 14), (144, 14), (288, 7), (576, 7),
                         (576, 7)]


def _make_divisible(v, divisor=8):
    """MobileNet's rounding of a width to a multiple of 8 (at least 90 % of v)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def test_foreign_se_counted_on_the_feature_map():
    """torchvision's SqueezeExcitation computes ``scale * input``: its scale costs one multiply per element of the
    C x H x W map (285,376 in all), not per gate value (2,296)."""
    from seprobe.models.blocks import find_blocks

    model = torchvision.models.mobilenet_v3_small().eval()
    count = count_flops(model, torch.zeros(1, 3, 224, 224), find_blocks(model))
    cat = count.by_category
    assert cat["se_scale"] == sum(c * s * s for c, s in MOBILENET_V3_SMALL_SE) == 285_376
    assert cat["se_fc"] == sum(2 * c * _make_divisible(c // 4) for c, _ in MOBILENET_V3_SMALL_SE) == 458_752
    assert cat["se_gate"] == sum(c for c, _ in MOBILENET_V3_SMALL_SE) == 2_296
    assert [n for n in count.per_block] == ["SE_2_1"] + [f"SE_4_{i}" for i in range(1, 6)] + ["SE_5_1", "SE_5_2",
                                                                                            "SE_5_3"]
    assert count.per_block["SE_5_3"]["scale"] == 576 * 49
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, torch.zeros(1, 3, 224, 224))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    reference = analysis.by_operator()  # fvcore counts every conv (SE's FCs included) and linear layer
    assert cat["conv"] + cat["fc"] + cat["se_fc"] == reference["conv"] + reference["linear"]


def _cli(*args):
    return run_seprobe("complexity", *args, cwd=ROOT)


@pytest.mark.slow
def test_cli_one_screen_without_fvcore_warnings():
    proc = _cli("--model", "se_resnet50")
    assert proc.returncode == 0, proc.stderr
    assert "Unsupported" not in proc.stdout + proc.stderr and "Warning" not in proc.stderr
    assert "3.8660" in proc.stdout and "paper (Table 2)" in proc.stdout and "max_pool2d x1" in proc.stdout
    assert len(proc.stdout.splitlines()) <= 25


@pytest.mark.slow
def test_cli_writes_files_atomically(tmp_path):
    out = tmp_path / "se.csv"
    proc = _cli("--model", "se_resnet18", "--per-block", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    import pandas as pd

    assert pd.read_csv(out).loc[0, "model"] == "se_resnet18"
    assert len(pd.read_csv(tmp_path / "se.blocks.se_resnet18.csv")) == 8
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("args,message", [
    (["--model", "se_resnet50", "--squeeze", "median"], "'median' is not one of 'avg', 'max', 'none'"),
    (["--model", "resnet99"], "unknown model 'resnet99'"),
    (["--model", "se_resnet50", "--stages", "1,2"], "invalid stage 1 in --se-stages"),
    (["--model", "se_resnet50", "--se-stages", "2,x"], "invalid --se-stages '2,x'; valid: comma-separated stage "
                                                      "numbers, e.g. 2,3,4"),
    (["--model", "se_resnet50", "--reduction", "0"], "invalid --reduction ratio 0; valid: an integer r >= 1"),
    (["--model", "resnet50", "--time", "--dtype", "int8"], "'int8' is not one of 'float32', 'bfloat16', 'float16'"),
])
@pytest.mark.slow
def test_cli_bad_input(args, message):
    proc = _cli(*args)
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name,knobs", [("se_resnet50", {}), ("se_resnet50", {"integration": "pre"}),
                                        ("se_resnet50", {"integration": "identity", "squeeze": "none"}),
                                        ("se_resnet18", {"integration": "3x3"}),
                                        ("se_resnext50_32x4d", {"integration": "post", "stages": (3, 5)})])
def test_derived_plain_counts_equal_a_traced_plain_model(name, knobs):
    derived, traced = measure(name, **knobs), measure(name, trace_plain=True, **knobs)
    assert derived.plain_params == traced.plain_params
    assert derived.plain_flops.by_category == traced.plain_flops.by_category
    assert derived.plain_total == traced.plain_total


@pytest.mark.slow
def test_cli_time_smoke():
    proc = _cli("--model", "se_resnet18", "--time", "--batch-size", "2", "--input-size", "32", "--warmup", "1",
                "--repeats", "2")
    assert proc.returncode == 0, proc.stderr
    assert "timing inference" in proc.stderr            # progress goes to stderr
    assert "SE model / model without SE" in proc.stdout and "images_per_s" in proc.stdout


def test_per_block_stage_shares_of_the_readme():
    """README: for SE-ResNet-50 stage 5 holds 62 % of SE's parameters but 23 % of its multiply-adds; with
    --drop-stage5 stages 2, 3, 4 hold 25,392 / 133,248 / 792,960 parameters and 2,433,024 / 1,736,704 / 1,990,656
    multiply-adds, each counted here by hand: (2/r) C^2 + C/r + C parameters, 2 C C/r + C H W multiply-adds."""
    def stage(n, c, side):
        return n * (2 * c * (c // 16) + c // 16 + c), n * (2 * c * (c // 16) + c * side * side)

    hand = {s: stage(n, 4 * p, side) for s, n, p, side in zip((2, 3, 4, 5), BLOCKS, PLANES, SIZES, strict=True)}
    table = stage_table(measure("se_resnet50")).set_index("stage")
    for s, (params, flops) in hand.items():
        assert (table.loc[s, "params"], table.loc[s, "flops"]) == (params, flops)
    params5 = 100 * hand[5][0] / sum(p for p, _ in hand.values())
    flops5 = 100 * hand[5][1] / sum(f for _, f in hand.values())
    assert table.loc[5, "params_share_pct"] == pytest.approx(params5) and round(params5) == 62
    assert table.loc[5, "flops_share_pct"] == pytest.approx(flops5) and round(flops5) == 23
    no5 = stage_table(measure("se_resnet50", drop_stage5=True)).set_index("stage")
    assert list(no5.index) == [2, 3, 4]
    assert [tuple(no5.loc[s, ["params", "flops"]]) for s in (2, 3, 4)] == [(25_392, 2_433_024), (133_248, 1_736_704),
                                                                          (792_960, 1_990_656)]
    assert [round(no5.loc[s, "flops_share_pct"], 1) for s in (2, 3, 4)] == [39.5, 28.2, 32.3]
    assert [hand[s] for s in (2, 3, 4)] == [(25_392, 2_433_024), (133_248, 1_736_704), (792_960, 1_990_656)]
