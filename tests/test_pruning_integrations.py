"""Structural channel pruning (seprobe/models/pruning) of the SE-ResNets in the other integrations of Fig. 5: ``pre``
(the SE block on the unit's input, feeding the residual branch only), ``post`` (after the sum), ``identity`` (on the
identity branch, after the projection or option A) and ``3x3`` (after the 3x3 conv, on the branch's inner width).

Every expected value is written from the architectures (seprobe/models/resnet.py: which modules write a group's
channels, which map each SE block recalibrates, what a pruned network has as parameters), not read back from the
groups the library finds: the logits against the unpruned network with the pruned channels zeroed where they are
written, the gates of each group by hand, parameters by a hand formula.
"""

import io
import random

import pytest
import torch

from seprobe.errors import SeprobeError
from seprobe.models.blocks import se_blocks
from seprobe.models.pruning import Cut, apply_pruning, channel_groups, prune_channels, pruning_record
from seprobe.models.registry import build_model
from seprobe.models.resnet import SEBottleneck

from .conftest import randomize_batchnorm
from .zeroing import close, logits, resnet_layers, resnet_writers, zeroed_resnet_logits

CIFAR = "se_resnet20_cifar"
INTEGRATIONS = ("pre", "post", "identity", "3x3")
BN = ("weight", "bias", "running_mean", "running_var")
NETWORKS = [("se_resnet18", 64, {"num_classes": 10}), ("se_resnet50", 64, {"num_classes": 10}), (CIFAR, 32, {})]


def _model(name, **knobs):
    return randomize_batchnorm(build_model(name, **knobs)).eval()


def _width(model, writers, group):
    module = model.get_submodule(writers[group][0])
    return module.num_features if isinstance(module, torch.nn.BatchNorm2d) else module.cout


def _close(a, b):
    close(a, b, 1e-5)


def _differs(a, b):
    """Apart by more than 1 % of the logits' size: what the exactness checks must be able to see."""
    return (a - b).abs().max().item() > 1e-2 * a.abs().max().item()


def _random_keep(model, seed, groups, fraction=0.5):
    """About ``fraction`` of the channels of each group named (at least one), drawn from ``seed``."""
    rng = random.Random(seed)
    writers = resnet_writers(model)
    widths = {g: _width(model, writers, g) for g in groups}
    return {g: sorted(rng.sample(range(w), max(1, round(w * fraction)))) for g, w in widths.items()}


def _se_names(model):
    """Unit path -> the name of its SE block (``SE_<stage>_<block>``, 1-based), from the architecture."""
    first = 2 if hasattr(model, "layer4") else 1
    return {f"{name}.{b}": f"SE_{first + number}_{b + 1}" for number, name in enumerate(resnet_layers(model))
            for b in range(len(model.get_submodule(name)))}


# --- exactness -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("integration", INTEGRATIONS)
@pytest.mark.parametrize("name, size, knobs", NETWORKS)
def test_pruned_equals_the_original_with_the_channels_zeroed(name, size, knobs, integration):
    model = _model(name, integration=integration, **knobs)
    writers = resnet_writers(model)
    # the groups, from the architecture: one per writer set, and none other
    assert {g.name for g in channel_groups(model)} == set(writers)
    streams = [g for g in writers if g.startswith("stage") or g == "stem"]
    units = list(_se_names(model))
    # several inner widths, among them the 3x3 conv's (gated in the 3x3 integration) of a stage's first unit
    bottleneck = isinstance(model.layer1[0], SEBottleneck)
    inner = [f"{u}.conv2" if bottleneck else f"{u}.conv1" for u in (units[0], units[len(units) // 2], units[-1])]
    inner.append(f"{units[1]}.conv1")
    x = torch.randn(2, 3, size, size)
    full = logits(model, x)
    for seed in (0, 1):
        keep = _random_keep(model, seed, streams + inner)
        expected = zeroed_resnet_logits(model, keep, x)
        assert _differs(expected, full)  # the zeroing changes the logits: the test bites
        _close(expected, logits(prune_channels(model, keep), x))


def _zero_gates(se, channels, blind=True):
    """The gate of ``se`` exactly 0 at ``channels`` (hard sigmoid: a zero row of W2 and a bias below -3), and, when
    ``blind``, its excitation blind to them (zero columns of W1)."""
    with torch.no_grad():
        se.fc2.weight[channels] = 0
        se.fc2.bias[channels] = -4
        if blind:
            se.fc1.weight[:, channels] = 0


def _zero_bn(bn, channels):
    with torch.no_grad():
        bn.weight[channels] = 0
        bn.bias[channels] = 0


def _without(width, dead):
    return [c for c in range(width) if c not in dead]


def test_post_zero_gates_free_a_stream_channel_even_across_option_a():
    # post: x~ = s * relu(branch + identity) is what the next unit reads. With s_c = 0 (and W1 blind to c) in every
    # unit of stage 2, its channel c is 0 after each unit, whatever option A carries into it from stage 1 (2, 5, 11
    # are below stage 1's 16 channels): pruning stage 2 alone is exact, with nothing zeroed where it is written
    model = _model(CIFAR, integration="post", gate="hardsigmoid")
    dead = [2, 5, 11, 16, 20, 31]
    for unit in model.layer2:
        _zero_gates(unit.se, dead)
    x = torch.randn(3, 3, 32, 32)
    keep = {"stage2": _without(32, dead)}
    _close(logits(model, x), logits(prune_channels(model, keep), x))
    # the same channels pruned without the zero gates change the logits
    plain = _model(CIFAR, integration="post", gate="hardsigmoid")
    assert _differs(logits(plain, x), logits(prune_channels(plain, keep), x))


def test_post_zero_gates_and_the_stem_that_writes_the_stream():
    # ResNet-18's stage 2 is also the stem's output, which layer1.0's conv1 reads before any SE block scales it
    model = _model("se_resnet18", integration="post", gate="hardsigmoid", num_classes=10)
    dead = list(range(1, 64, 2))
    for unit in model.layer1:
        _zero_gates(unit.se, dead)
    x = torch.randn(2, 3, 64, 64)
    keep = {"stage2": _without(64, dead)}
    assert _differs(logits(model, x), logits(prune_channels(model, keep), x))
    _zero_bn(model.bn1, dead)  # u_c = 0 at the stem
    _close(logits(model, x), logits(prune_channels(model, keep), x))


def test_identity_zero_gates_with_the_branch_zeroed():
    # identity: s_c = 0 scales the shortcut (the projection's output in layer2.0, the unit's input in layer2.1); the
    # branch's last BatchNorm still writes c, so u_c = 0 there makes it free (the projection's BatchNorm left as is)
    model = _model("se_resnet18", integration="identity", gate="hardsigmoid", num_classes=10)
    dead = list(range(3, 128, 5))
    x = torch.randn(2, 3, 64, 64)
    keep = {"stage3": _without(128, dead)}
    for unit in model.layer2:
        _zero_gates(unit.se, dead)
    assert _differs(logits(model, x), logits(prune_channels(model, keep), x))
    for unit in model.layer2:
        _zero_bn(unit.bn2, dead)
    _close(logits(model, x), logits(prune_channels(model, keep), x))


def test_pre_zero_gates_hide_a_channel_from_the_branch_only():
    # pre: stage 3's channels are scaled by SE_3_2 (layer2.1's input) and SE_4_1 (layer3.0's input, the previous
    # stage's stream); s_c = 0 hides c from those branches, but the identity still carries it
    model = _model("se_resnet18", integration="pre", gate="hardsigmoid", num_classes=10)
    dead = [0, 9, 40, 77, 127]
    for unit in (model.layer2[1], model.layer3[0]):
        _zero_gates(unit.se, dead)
    x = torch.randn(2, 3, 64, 64)
    keep = {"stage3": _without(128, dead)}
    assert _differs(logits(model, x), logits(prune_channels(model, keep), x))
    for bn in (model.layer2[0].bn2, model.layer2[1].bn2, model.layer2[0].downsample[1]):  # u_c = 0 where written
        _zero_bn(bn, dead)
    _close(logits(model, x), logits(prune_channels(model, keep), x))


@pytest.mark.parametrize("name, unit, group, width", [("se_resnet18", "layer3.1", "layer3.1.conv1", 256),
                                                      ("se_resnet50", "layer2.0", "layer2.0.conv2", 128)])
def test_3x3_zero_gates_free_an_inner_channel(name, unit, group, width):
    # 3x3: x~ = s * relu(bn(3x3 conv)) is read by the branch's last conv only: s_c = 0 (W1 blind) makes c free
    model = _model(name, integration="3x3", gate="hardsigmoid", num_classes=10)
    dead = list(range(1, width, 4))
    x = torch.randn(2, 3, 64, 64)
    keep = {group: _without(width, dead)}
    assert _differs(logits(model, x), logits(prune_channels(model, keep), x))
    _zero_gates(model.get_submodule(f"{unit}.se"), dead)
    _close(logits(model, x), logits(prune_channels(model, keep), x))


# --- the gates of each group, by hand ------------------------------------------------------------------------


def _gates(model):
    return {g.name: (g.gates, g.se_paths) for g in channel_groups(model) if g.gates}


def _on(*units):
    """(gates, se_paths) of CIFAR ResNet-20 units given as (stage, block), 1-based."""
    return (tuple(f"SE_{s}_{b}" for s, b in units), tuple(f"layer{s}.{b - 1}.se" for s, b in units))


def test_cifar_gates_by_integration():
    three = [(s, b) for s in (1, 2, 3) for b in (1, 2, 3)]
    on_output = {f"stage{s}": _on(*[(s, b) for b in (1, 2, 3)]) for s in (1, 2, 3)}
    for integration in ("standard", "post", "identity"):
        # the unit's output channels, in a stage's first unit too (after option A for identity)
        assert _gates(build_model(CIFAR, integration=integration, device="meta")) == on_output
    # pre: the unit's input, the previous stage's stream in a stage's first unit
    assert _gates(build_model(CIFAR, integration="pre", device="meta")) == {
        "stage1": _on((1, 1), (1, 2), (1, 3), (2, 1)), "stage2": _on((2, 2), (2, 3), (3, 1)),
        "stage3": _on((3, 2), (3, 3))}
    assert _gates(build_model(CIFAR, integration="pre", stages=[2, 3], device="meta")) == {
        "stage1": _on((2, 1)), "stage2": _on((2, 2), (2, 3), (3, 1)), "stage3": _on((3, 2), (3, 3))}
    # 3x3: each unit's conv1 width, the streams none
    assert _gates(build_model(CIFAR, integration="3x3", device="meta")) == {
        f"layer{s}.{b - 1}.conv1": _on((s, b)) for s, b in three}


def test_imagenet_gates_in_the_first_unit_of_a_stage():
    pre50 = _gates(build_model("se_resnet50", integration="pre", device="meta"))
    # layer1.0 has a projection: its SE block reads the stem's output, a group of its own
    assert pre50["stem"] == (("SE_2_1",), ("layer1.0.se",))
    assert pre50["stage2"] == (("SE_2_2", "SE_2_3", "SE_3_1"), ("layer1.1.se", "layer1.2.se", "layer2.0.se"))
    assert pre50["stage5"] == (("SE_5_2", "SE_5_3"), ("layer4.1.se", "layer4.2.se"))
    assert len(pre50["stage4"][0]) == 6 and pre50["stage4"][0][-1] == "SE_5_1"
    # ResNet-18: the stem writes stage 2's stream, and SE_2_1 is one of its gates
    pre18 = _gates(build_model("se_resnet18", integration="pre", device="meta"))
    assert "stem" not in pre18 and pre18["stage2"][0] == ("SE_2_1", "SE_2_2", "SE_3_1")
    identity50 = _gates(build_model("se_resnet50", integration="identity", device="meta"))
    # layer2.0's identity SE block sits after its projection: on stage 3's channels, not stage 2's
    assert identity50["stage3"][1] == ("layer2.0.se", "layer2.1.se", "layer2.2.se", "layer2.3.se")
    assert identity50["stage2"][1] == ("layer1.0.se", "layer1.1.se", "layer1.2.se")
    groups = {g.name: g for g in channel_groups(build_model("se_resnet50", integration="3x3", device="meta"))}
    assert groups["layer3.2.conv2"].gates == ("SE_4_3",) and groups["layer3.2.conv1"].gates == ()
    assert all(g.gates == () for g in groups.values() if g.kind in ("stream", "stem"))


def test_the_gated_groups_cut_the_se_tensors():
    groups = {g.name: g for g in channel_groups(build_model(CIFAR, integration="3x3", device="meta"))}
    assert set(groups["layer2.1.conv1"].cuts) == {
        Cut("layer2.1.conv1", "weight", 0), *(Cut("layer2.1.bn1", t, 0) for t in BN),
        Cut("layer2.1.se.fc1", "weight", 1), Cut("layer2.1.se.fc2", "weight", 0), Cut("layer2.1.se.fc2", "bias", 0),
        Cut("layer2.1.conv2", "weight", 1)}
    assert not any(".se." in c.path for c in groups["stage2"].cuts)
    stem = {g.name: g for g in channel_groups(build_model("se_resnet50", integration="pre", device="meta"))}["stem"]
    assert set(stem.cuts) == {
        Cut("conv1", "weight", 0), *(Cut("bn1", t, 0) for t in BN), Cut("layer1.0.conv1", "weight", 1),
        Cut("layer1.0.downsample.0", "weight", 1), Cut("layer1.0.se.fc1", "weight", 1),
        Cut("layer1.0.se.fc2", "weight", 0), Cut("layer1.0.se.fc2", "bias", 0)}


# --- what the pruned network is ------------------------------------------------------------------------------


def _cifar_3x3_params(stream, inner, hidden=(1, 2, 4), classes=10):
    """SE-ResNet-20 (CIFAR), SE in the 3x3 integration, by hand: 3x3 convs without bias, 2 BatchNorm parameters
    per channel, each unit's SE ``a -> h -> a`` with biases on its conv1 width ``a`` (``h`` the unpruned network's
    16 // 16, 32 // 16, 64 // 16), a ``classes``-way linear head."""
    total = 3 * 9 * stream[0] + 2 * stream[0]
    for s in range(3):
        for b in range(3):
            cin = stream[s - 1] if b == 0 and s > 0 else stream[s]
            a, c, h = inner[3 * s + b], stream[s], hidden[s]
            total += 9 * cin * a + 2 * a + (a * h + h) + (h * a + a) + 9 * a * c + 2 * c
    return total + stream[2] * classes + classes


def test_parameters_of_a_pruned_3x3_se_resnet20_by_hand():
    model = build_model(CIFAR, integration="3x3")
    assert sum(p.numel() for p in model.parameters()) == _cifar_3x3_params((16, 32, 64), (16,) * 3 + (32,) * 3 +
                                                                           (64,) * 3)
    stream, inner = (10, 20, 40), (12, 9, 16, 20, 30, 25, 50, 33, 64)
    names = [f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)]
    keep = {"stage1": list(range(3, 13)), "stage2": [*range(12), *range(16, 24)], "stage3": list(range(24, 64)),
            **{name: list(range(w)) for name, w in zip(names, inner, strict=True)}}
    pruned = prune_channels(model, keep)
    assert sum(p.numel() for p in pruned.parameters()) == _cifar_3x3_params(stream, inner)
    hidden = [1] * 3 + [2] * 3 + [4] * 3
    assert [(b.channels, b.hidden_channels) for b in se_blocks(pruned)] == list(zip(inner, hidden, strict=True))
    assert [b.params for b in se_blocks(pruned)] == [2 * a * h + h + a for a, h in zip(inner, hidden, strict=True)]


@pytest.mark.parametrize("name, integration, size", [(CIFAR, "3x3", 32), ("se_resnet18", "pre", 64),
                                                     (CIFAR, "identity", 32)])
def test_pruning_twice_is_pruning_once_with_the_composed_sets(name, integration, size):
    model = _model(name, integration=integration)
    groups = list(resnet_writers(model))
    first = _random_keep(model, 0, [g for g in groups if g != "stage3"], 0.75)  # stage3: pruned the second time
    once = prune_channels(model, first)
    rng = random.Random(1)
    widths = {g: _width(model, resnet_writers(model), g) for g in groups}
    second = {g: sorted(rng.sample(range(len(first.get(g, range(w)))), max(1, len(first.get(g, range(w))) // 2)))
              for g, w in widths.items()}
    twice = prune_channels(once, second)
    composed = {g: [first.get(g, range(widths[g]))[i] for i in kept] for g, kept in second.items()}
    direct = prune_channels(model, composed)
    assert pruning_record(twice)["kept"] == composed
    a, b = twice.state_dict(), direct.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 3, size, size)
    assert torch.equal(logits(twice, x), logits(direct, x))
    _close(zeroed_resnet_logits(model, composed, x), logits(twice, x))


def test_a_pruned_pre_checkpoint_is_rebuilt_from_its_record():
    model = _model(CIFAR, integration="pre", attention="eca")
    pruned = prune_channels(model, {"stage1": [0, 2, 3, 9, 15], "stage2": list(range(0, 32, 3)),
                                    "layer2.0.conv1": [1, 4, 5]})
    buffer = io.BytesIO()
    torch.save({"pruning": pruning_record(pruned), "state_dict": pruned.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    rebuilt = apply_pruning(build_model(CIFAR, integration="pre", attention="eca"), saved["pruning"])
    rebuilt.load_state_dict(saved["state_dict"], strict=True)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(logits(rebuilt.eval(), x), logits(pruned, x))
    # SE_2_1 (pre) reads stage 1's 5 kept channels; its ECA convolution keeps their positions among 16
    conv = rebuilt.layer2[0].se.conv
    assert conv.width == 16 and conv.positions.tolist() == [0, 2, 3, 9, 15]


# --- refusals ------------------------------------------------------------------------------------------------


def test_an_unknown_integration_or_a_misplaced_block_is_refused_in_one_line():
    model = build_model(CIFAR, integration="3x3", device="meta")
    model.layer2[1].integration = "after_relu"
    with pytest.raises(SeprobeError, match=r"cannot prune layer2\.1: SE integration 'after_relu' is not one "
                                           r"seprobe's groups know; valid: integration 'standard', 'pre'") as info:
        channel_groups(model)
    assert "\n" not in str(info.value) and "resnet20_cifar" in str(info.value)
    model.layer2[1].integration = "pre"  # a 32-channel block on the unit's 32-channel input: fits
    channel_groups(model)
    model.layer2[0].integration = "pre"  # the first unit's input has 16 channels, its block 32
    with pytest.raises(SeprobeError, match=r"cannot prune layer2\.0: its SE block \('pre'\) recalibrates 32 "
                                           r"channels, not the 16"):
        channel_groups(model)
