"""Structural channel pruning of timm's MobileNetV3 (seprobe/models/pruning): its channel groups, and a surgery that is
exact. Every expected value is written from the architecture (Howard et al. 2019, Table 2, as timm builds it: the
expanded widths, kernels, strides, SE hidden widths), not read back from what the library finds: the groups by
hand, the logits against the unpruned network with the pruned channels zeroed where they are written (the BatchNorm
after the depthwise convolution, whose output is ``u`` of Eq. 4), parameters and multiply-adds by hand formulas.
"""

import copy
import io
import math
import random
from functools import cache

import pytest
import torch

from seprobe.cost.flops import count_flops
from seprobe.errors import SeprobeError
from seprobe.models.blocks import find_blocks
from seprobe.models.pruning import Cut, apply_pruning, channel_groups, prune_channels, pruning_record

from .conftest import randomize_batchnorm
from .zeroing import close, logits, zeroed_logits

timm = pytest.importorskip("timm", reason="timm is not installed: MobileNetV3 comes from timm (pip install timm)")

SMALL = "tf_mobilenetv3_small_100"
SIZE = 64  # numerics at a small crop; the gates are named at 224 whatever the crop (find_blocks)

# MobileNetV3-Small, Table 2 of Howard et al. 2019 (timm's rounding of the SE hidden widths: make_divisible(E / 4, 8)):
# block, input channels, expanded width E (the depthwise-separable block's: its input's, the stem's 16), output
# channels, depthwise kernel, stride, SE hidden width (0: no SE)
SMALL_BLOCKS = [
    ("blocks.0.0", 16, 16, 16, 3, 2, 8),
    ("blocks.1.0", 16, 72, 24, 3, 2, 0),
    ("blocks.1.1", 24, 88, 24, 3, 1, 0),
    ("blocks.2.0", 24, 96, 40, 5, 2, 24),
    ("blocks.2.1", 40, 240, 40, 5, 1, 64),
    ("blocks.2.2", 40, 240, 40, 5, 1, 64),
    ("blocks.3.0", 40, 120, 48, 5, 1, 32),
    ("blocks.3.1", 48, 144, 48, 5, 1, 40),
    ("blocks.4.0", 48, 288, 96, 5, 2, 72),
    ("blocks.4.1", 96, 576, 96, 5, 1, 144),
    ("blocks.4.2", 96, 576, 96, 5, 1, 144),
]
LAST, HEAD, CLASSES = 576, 1024, 1000  # the last stage's ConvBnAct (96 -> 576), conv_head (with bias), classifier
# the gates' names: the stage is log2(224 / the side the SE block works at): 56 (blocks.0.0), 14, 7
SMALL_GATES = {"blocks.0.0": "SE_2_1", "blocks.2.0": "SE_4_1", "blocks.2.1": "SE_4_2", "blocks.2.2": "SE_4_3",
               "blocks.3.0": "SE_4_4", "blocks.3.1": "SE_4_5", "blocks.4.0": "SE_5_1", "blocks.4.1": "SE_5_2",
               "blocks.4.2": "SE_5_3"}
BN = ("weight", "bias", "running_mean", "running_var")
# where a group's channels are u (Eq. 4): the BatchNorm after the depthwise convolution, by block type
WRITER = {"DepthwiseSeparableConv": "bn1", "InvertedResidual": "bn2", "ConvBnAct": "bn1"}


@cache
def _built(name):
    """``name`` with random weights and non-trivial BatchNorms, in eval mode (shared: the tests copy it to change
    it)."""
    torch.manual_seed(0)
    return randomize_batchnorm(timm.create_model(name)).eval()


@pytest.fixture(scope="module")
def small():
    return _built(SMALL)


@pytest.fixture(scope="module")
def small_groups(small):
    """The groups of MobileNetV3-Small, found once (a trace at 224 names the gates)."""
    return {g.name: g for g in channel_groups(small)}


def _zeroed_logits(model, keep, x):
    """The logits of ``model`` with the channels not in ``keep`` set to 0 where they are written: the output of
    the BatchNorm after each block's depthwise convolution (the last ConvBnAct's BatchNorm)."""
    return zeroed_logits(model, {f"{path}.{WRITER[type(model.get_submodule(path)).__name__]}": kept
                                 for path, kept in keep.items()}, x)


def _close(expected, actual):
    close(expected, actual, 1e-4)


def _random_keep(widths, seed, fraction=0.5):
    rng = random.Random(seed)
    return {name: sorted(rng.sample(range(w), max(1, round(w * fraction)))) for name, w in widths.items()}


# --- the groups, by hand -------------------------------------------------------------------------------------


def test_the_groups_of_mobilenetv3_small(small_groups):
    expected = [(path, "stem" if path == "blocks.0.0" else "expanded", exp, (SMALL_GATES[path],) if h else ())
                for path, _, exp, _, _, _, h in SMALL_BLOCKS] + [("blocks.5.0", "inner", LAST, ())]
    assert [(g.name, g.kind, g.width, g.gates) for g in small_groups.values()] == expected
    assert all(g.se_paths == ((f"{g.name}.se",) if g.gates else ()) for g in small_groups.values())
    # an inverted residual with SE: its expansion, depthwise convolution, SE FCs and projection's columns
    se = "blocks.2.1.se"
    assert set(small_groups["blocks.2.1"].cuts) == {
        Cut("blocks.2.1.conv_pw", "weight", 0), *(Cut("blocks.2.1.bn1", t, 0) for t in BN),
        Cut("blocks.2.1.conv_dw", "weight", 0), *(Cut("blocks.2.1.bn2", t, 0) for t in BN),
        Cut(f"{se}.conv_reduce", "weight", 1), Cut(f"{se}.conv_expand", "weight", 0),
        Cut(f"{se}.conv_expand", "bias", 0), Cut("blocks.2.1.conv_pwl", "weight", 1)}
    assert len(small_groups["blocks.2.1"].cuts) == 14  # no tensor twice
    # the depthwise-separable block (no skip): its channels are the stem's
    assert set(small_groups["blocks.0.0"].cuts) == {
        Cut("conv_stem", "weight", 0), *(Cut("bn1", t, 0) for t in BN),
        Cut("blocks.0.0.conv_dw", "weight", 0), *(Cut("blocks.0.0.bn1", t, 0) for t in BN),
        Cut("blocks.0.0.se.conv_reduce", "weight", 1), Cut("blocks.0.0.se.conv_expand", "weight", 0),
        Cut("blocks.0.0.se.conv_expand", "bias", 0), Cut("blocks.0.0.conv_pw", "weight", 1)}
    assert set(small_groups["blocks.1.0"].cuts) == {
        Cut("blocks.1.0.conv_pw", "weight", 0), *(Cut("blocks.1.0.bn1", t, 0) for t in BN),
        Cut("blocks.1.0.conv_dw", "weight", 0), *(Cut("blocks.1.0.bn2", t, 0) for t in BN),
        Cut("blocks.1.0.conv_pwl", "weight", 1)}
    assert set(small_groups["blocks.5.0"].cuts) == {
        Cut("blocks.5.0.conv", "weight", 0), *(Cut("blocks.5.0.bn1", t, 0) for t in BN), Cut("conv_head", "weight", 1)}


def test_the_groups_of_mobilenetv3_large():
    """MobileNetV3-Large: its first block (depthwise-separable, 16 -> 16, stride 1) has a skip, so the stem's
    channels are a residual stream, not a group; SE on the 28-, 14- and 7-pixel stages."""
    expanded = [("blocks.1.0", 64, ""), ("blocks.1.1", 72, ""), ("blocks.2.0", 72, "SE_3_1"),
                ("blocks.2.1", 120, "SE_3_2"), ("blocks.2.2", 120, "SE_3_3"), ("blocks.3.0", 240, ""),
                ("blocks.3.1", 200, ""), ("blocks.3.2", 184, ""), ("blocks.3.3", 184, ""),
                ("blocks.4.0", 480, "SE_4_1"), ("blocks.4.1", 672, "SE_4_2"), ("blocks.5.0", 672, "SE_5_1"),
                ("blocks.5.1", 960, "SE_5_2"), ("blocks.5.2", 960, "SE_5_3")]
    groups = channel_groups(_built("tf_mobilenetv3_large_100"))
    assert [(g.name, g.kind, g.width, g.gates) for g in groups] == [
        (p, "expanded", w, (gate,) if gate else ()) for p, w, gate in expanded] + [("blocks.6.0", "inner", 960, ())]


# --- exactness -----------------------------------------------------------------------------------------------


def test_pruned_small_equals_the_original_with_the_channels_zeroed(small):
    widths = {path: exp for path, _, exp, *_ in SMALL_BLOCKS} | {"blocks.5.0": LAST}
    chosen = ["blocks.0.0", "blocks.1.0", "blocks.1.1", "blocks.2.0", "blocks.3.1", "blocks.4.2", "blocks.5.0"]
    x = torch.randn(2, 3, SIZE, SIZE)
    full = logits(small, x)
    for seed in (0, 1):
        keep = _random_keep({n: widths[n] for n in chosen}, seed)
        pruned = prune_channels(small, keep)
        expected = _zeroed_logits(small, keep, x)
        assert (expected - full).abs().max() > 0.05 * full.abs().max()  # the zeroing changes the logits: it bites
        _close(expected, logits(pruned, x))
    # the pruned SE blocks: every kept channel keeps its gate, the hidden width stays (timm's SqueezeExcite has no
    # width attributes to set)
    se = pruned.blocks[4][2].se
    assert (se.conv_reduce.in_channels, se.conv_reduce.out_channels, se.conv_expand.out_channels) == (288, 144, 288)
    assert not hasattr(se, "channels") and not hasattr(se, "hidden_channels")
    dw = pruned.blocks[0][0].conv_dw
    assert (dw.in_channels, dw.out_channels, dw.groups, tuple(dw.weight.shape)) == (8, 8, 8, (8, 1, 3, 3))
    assert [(b.name, b.channels, b.hidden_channels) for b in find_blocks(pruned, SIZE)][:2] == [
        ("SE_2_1", 8, 8), ("SE_4_1", 48, 24)]  # half of 16 and 96 kept; 8 and 24 hidden


@pytest.mark.parametrize("name", ["mobilenetv3_small_100", "tf_mobilenetv3_large_100"])
def test_every_group_of_other_mobilenetv3s_is_cut_exactly(name):
    model = _built(name)
    keep = _random_keep({g.name: g.width for g in channel_groups(model)}, 2)
    x = torch.randn(2, 3, SIZE, SIZE)
    expected = _zeroed_logits(model, keep, x)
    assert (expected - logits(model, x)).abs().max() > 0.05 * expected.abs().max()
    _close(expected, logits(prune_channels(model, keep), x))


def test_pruning_channels_whose_output_is_zero_leaves_the_logits(small):
    """A channel with ``u_c = 0`` (its BatchNorm's weight and bias 0; hardswish(0) = ReLU(0) = 0) adds nothing to
    its SE block's squeeze nor, scaled, to the projection: pruning it is free."""
    model = copy.deepcopy(small)
    dead = {"blocks.0.0": [2, 9], "blocks.1.1": [0, 40, 87], "blocks.2.1": [3, 50, 100, 239],
            "blocks.4.1": list(range(0, 576, 7)), "blocks.5.0": [5, 300]}
    with torch.no_grad():
        for path, channels in dead.items():
            block = model.get_submodule(path)
            bn = block.get_submodule(WRITER[type(block).__name__])
            bn.weight[channels] = 0
            bn.bias[channels] = 0
    widths = {"blocks.0.0": 16, "blocks.1.1": 88, "blocks.2.1": 240, "blocks.4.1": 576, "blocks.5.0": LAST}
    keep = {path: [c for c in range(widths[path]) if c not in dead[path]] for path in dead}
    x = torch.randn(2, 3, SIZE, SIZE)
    full = logits(model, x)
    _close(full, logits(prune_channels(model, keep), x))
    # as many live channels pruned instead do change them
    live = {path: [c for c in range(widths[path]) if c not in [d + 1 for d in dead[path]]] for path in dead}
    assert (full - logits(prune_channels(model, live), x)).abs().max() > 0.05 * full.abs().max()


# --- what the pruned network is ------------------------------------------------------------------------------


def _small_params(exp, stem, last):
    """MobileNetV3-Small's parameters by hand, with expanded widths ``exp`` (block -> width), the stem's width and
    the last ConvBnAct's: convolutions without bias but for the SE FCs and conv_head, 2 per BatchNorm channel."""
    total = 27 * stem + 2 * stem
    for path, cin, _, cout, k, _, h in SMALL_BLOCKS:
        if path == "blocks.0.0":  # depthwise k x k, BatchNorm, SE, pointwise stem -> 16, BatchNorm
            total += k * k * stem + 2 * stem + (stem * h + h) + (h * stem + stem) + stem * cout + 2 * cout
            continue
        e = exp[path]
        total += cin * e + 2 * e + k * k * e + 2 * e + cout * e + 2 * cout
        if h:
            total += (e * h + h) + (h * e + e)
    return total + 96 * last + 2 * last + last * HEAD + HEAD + HEAD * CLASSES + CLASSES


def _small_macs(exp, stem, last, size):
    """Multiply-adds by hand (the paper's convention: convolutions, FC layers, SE's FCs and scale), with TF "same"
    padding: a stride-2 layer's output side is ceil(side / 2)."""
    side = math.ceil(size / 2)
    total = 27 * stem * side ** 2
    for path, cin, _, cout, k, stride, h in SMALL_BLOCKS:
        e = stem if path == "blocks.0.0" else exp[path]
        out = math.ceil(side / stride)
        if path != "blocks.0.0":
            total += cin * e * side ** 2                   # expansion, before the stride
        total += k * k * e * out ** 2                      # depthwise
        if h:
            total += 2 * e * h + e * out ** 2              # SE: two FCs on the squeezed vector, the scale (Eq. 4)
        total += e * cout * out ** 2                       # projection
        side = out
    return total + 96 * last * side ** 2 + last * HEAD + HEAD * CLASSES


def test_parameters_and_multiply_adds_of_a_pruned_small_by_hand(small):
    full = {path: exp for path, _, exp, *_ in SMALL_BLOCKS[1:]}
    assert sum(p.numel() for p in small.parameters()) == _small_params(full, 16, LAST)
    exp = dict(zip(full, (40, 50, 60, 100, 120, 70, 80, 150, 300, 200), strict=True))
    stem, last = 10, 400
    keep = {"blocks.0.0": list(range(3, 13)), "blocks.5.0": list(range(100, 500)),
            **{path: sorted(random.Random(i).sample(range(full[path]), w)) for i, (path, w) in enumerate(exp.items())}}
    pruned = prune_channels(small, keep)
    assert sum(p.numel() for p in pruned.parameters()) == _small_params(exp, stem, last)
    size = 96
    x = torch.zeros(1, 3, size, size)
    for model, args in ((small, (full, 16, LAST)), (pruned, (exp, stem, last))):
        flops = count_flops(model, x, find_blocks(model, size))
        assert flops.total() == _small_macs(*args, size)


def test_pruning_twice_is_pruning_once_with_the_composed_sets(small):
    first = {"blocks.0.0": [0, 2, 3, 5, 8, 11, 12, 15], "blocks.2.0": list(range(0, 96, 2)),
             "blocks.5.0": list(range(100, 576))}
    once = prune_channels(small, first)
    second = {"blocks.2.0": [1, 4, 5, 30, 47], "blocks.5.0": list(range(0, 476, 3)), "blocks.4.1": [7, 9, 500]}
    twice = prune_channels(once, second)
    composed = {"blocks.2.0": [2, 8, 10, 60, 94], "blocks.5.0": list(range(100, 576, 3)), "blocks.4.1": [7, 9, 500]}
    direct = prune_channels(small, {**first, **composed})
    assert pruning_record(twice)["kept"] == {"blocks.0.0": first["blocks.0.0"], **composed}
    assert pruning_record(twice) == pruning_record(direct)
    a, b = twice.state_dict(), direct.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 3, SIZE, SIZE)
    assert torch.equal(logits(twice, x), logits(direct, x))
    _close(_zeroed_logits(small, {**first, **composed}, x), logits(twice, x))


def test_a_pruned_mobilenetv3_is_rebuilt_from_its_record(small):
    pruned = prune_channels(prune_channels(small, _random_keep({"blocks.0.0": 16, "blocks.3.0": 120}, 4)),
                            {"blocks.2.2": [0, 3, 4], "blocks.5.0": [1, 2, 575]})
    buffer = io.BytesIO()
    torch.save({"pruning": pruning_record(pruned), "state_dict": pruned.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    rebuilt = apply_pruning(timm.create_model(SMALL), saved["pruning"])
    rebuilt.load_state_dict(saved["state_dict"], strict=True)
    rebuilt.eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    assert torch.equal(logits(rebuilt, x), logits(pruned, x))
    assert pruning_record(rebuilt) == pruning_record(pruned)
    assert rebuilt.conv_head.in_channels == 3 and rebuilt.blocks[2][2].conv_pwl.in_channels == 3


def test_a_pruned_mobilenetv3_trains(small):
    pruned = prune_channels(small, _random_keep({"blocks.0.0": 16, "blocks.2.1": 240, "blocks.5.0": LAST}, 5)).train()
    pruned(torch.randn(2, 3, SIZE, SIZE)).logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in pruned.parameters())


# --- refusals ------------------------------------------------------------------------------------------------


def _swap_se(name):
    model = timm.create_model(name)
    model.blocks[2][0].se = timm.layers.SEModule(96)
    return model


@pytest.mark.parametrize("build, message", [
    (lambda: timm.create_model("efficientnet_b0"), r"cannot prune EfficientNet: its channel groups are not known"),
    (lambda: timm.create_model("lcnet_050"), r"cannot prune blocks\.1\.0 of timm's MobileNetV3: a "
                                             r"DepthwiseSeparableConv without skip after the first block"),
    (lambda: timm.create_model("mobilenetv4_conv_small"), r"cannot prune blocks\.0\.0 of timm's MobileNetV3: a "
                                                          r"ConvBnAct is supported only in the last stage"),
    (lambda: timm.create_model(SMALL, global_pool="catavgmax"),
     r"cannot prune conv_head of timm's MobileNetV3: it reads 1152 channels, not the 576"),
    (lambda: _swap_se(SMALL), r"cannot prune blocks\.2\.0\.se of timm's MobileNetV3: its SE module is a SEModule; "
                              r"valid: timm's SqueezeExcite"),
])
def test_structures_not_supported_are_refused_in_one_line(build, message):
    model = build()
    for call in (lambda: channel_groups(model), lambda: prune_channels(model, {"blocks.1.0": [0]})):
        with pytest.raises(SeprobeError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
        assert "timm's MobileNetV3 (mobilenetv3_small_*" in str(info.value)  # names what is supported


def test_the_stem_of_mobilenetv3_large_is_no_group():
    with pytest.raises(SeprobeError, match=r"unknown channel group 'blocks\.0\.0'; .*valid: blocks\.1\.0, ") as info:
        prune_channels(_built("tf_mobilenetv3_large_100"), {"blocks.0.0": [0, 1]})
    assert "\n" not in str(info.value)
