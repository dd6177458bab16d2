"""Structural channel pruning (seprobe/models/pruning): the channel groups of the SE-ResNets and the CIFAR ResNets, and
a surgery that is exact. Every expected value here is written from the architectures (which modules write a
residual stream, what a pruned SE-ResNet-20 has as parameters), not read back from the groups the library finds.
"""

import io
import random

import pytest
import torch

from seprobe.errors import SeprobeError
from seprobe.models.blocks import se_blocks
from seprobe.models.cifar_resnet import OptionAShortcut
from seprobe.models.pruning import (
    Cut,
    PositionedConv1d,
    ScatterShortcut,
    apply_pruning,
    channel_groups,
    prune_channels,
    pruning_record,
)
from seprobe.models.registry import build_model

from .conftest import randomize_batchnorm
from .zeroing import close, logits, zeroed_resnet_logits

CIFAR = "se_resnet20_cifar"


def _model(name, **knobs):
    return randomize_batchnorm(build_model(name, **knobs)).eval()


def _close(a, b):
    close(a, b, 1e-5, floor=1.0)


def _random_keep(model, seed, fraction=0.5):
    """A random kept set for every group: about ``fraction`` of its channels, at least one."""
    rng = random.Random(seed)
    return {g.name: sorted(rng.sample(range(g.width), max(1, round(g.width * fraction))))
            for g in channel_groups(model)}


# --- the groups, by hand -------------------------------------------------------------------------------------


def test_se_resnet50_stage3_group_is_every_tensor_of_the_stream():
    model = build_model("se_resnet50", device="meta")
    groups = {g.name: g for g in channel_groups(model)}
    assert [n for n, g in groups.items() if g.kind != "inner"] == ["stem", "stage2", "stage3", "stage4", "stage5"]
    stage3 = groups["stage3"]
    assert (stage3.width, stage3.kind) == (512, "stream")
    assert stage3.gates == ("SE_3_1", "SE_3_2", "SE_3_3", "SE_3_4")
    bn = ("weight", "bias", "running_mean", "running_var")
    expected = {Cut("layer2.0.downsample.0", "weight", 0), *(Cut("layer2.0.downsample.1", t, 0) for t in bn),
                Cut("layer3.0.conv1", "weight", 1), Cut("layer3.0.downsample.0", "weight", 1)}
    for b in range(4):
        expected |= {Cut(f"layer2.{b}.conv3", "weight", 0), *(Cut(f"layer2.{b}.bn3", t, 0) for t in bn),
                     Cut(f"layer2.{b}.se.fc1", "weight", 1), Cut(f"layer2.{b}.se.fc2", "weight", 0),
                     Cut(f"layer2.{b}.se.fc2", "bias", 0)}
        if b:
            expected.add(Cut(f"layer2.{b}.conv1", "weight", 1))
    assert set(stage3.cuts) == expected and len(stage3.cuts) == len(expected)
    assert set(groups["stem"].cuts) == {Cut("conv1", "weight", 0), *(Cut("bn1", t, 0) for t in bn),
                                        Cut("layer1.0.conv1", "weight", 1), Cut("layer1.0.downsample.0", "weight", 1)}
    assert Cut("fc", "weight", 1) in groups["stage5"].cuts
    inner = groups["layer3.5.conv2"]
    assert (inner.width, inner.gates) == (256, ())
    assert set(inner.cuts) == {Cut("layer3.5.conv2", "weight", 0), *(Cut("layer3.5.bn2", t, 0) for t in bn),
                               Cut("layer3.5.conv3", "weight", 1)}
    # 1 stem + 4 streams + 16 bottlenecks x 2 inner widths
    assert len(groups) == 37


def test_basic_and_option_a_groups():
    groups = {g.name: g for g in channel_groups(build_model("se_resnet18", device="meta"))}
    # no projection in stage 2: the stem writes its stream
    assert "stem" not in groups and Cut("conv1", "weight", 0) in groups["stage2"].cuts
    assert [g.width for g in groups.values() if g.kind == "stream"] == [64, 128, 256, 512]
    cifar = {g.name: g for g in channel_groups(build_model(CIFAR, device="meta"))}
    assert [(n, g.width) for n, g in cifar.items() if g.kind == "stream"] == [("stage1", 16), ("stage2", 32),
                                                                              ("stage3", 64)]
    assert [(a.path, a.role) for a in cifar["stage2"].axes] == [("layer2.0.downsample", "output"),
                                                                ("layer3.0.downsample", "input")]
    # stage 5 without SE (drop_stage5): a group with no gate
    dropped = {g.name: g for g in channel_groups(build_model("se_resnet50", drop_stage5=True, device="meta"))}
    assert dropped["stage5"].gates == () and dropped["stage4"].gates[-1] == "SE_4_6"


# --- exactness -----------------------------------------------------------------------------------------------


def _zero_gates(model, stage_layer, channels, blind=True):
    """Every SE gate of a stage exactly 0 at ``channels`` (ReLU gate: a zero row of W2 and a negative bias), and,
    when ``blind``, the excitation blind to them (zero columns of W1): a channel whose gate is 0 still feeds its
    descriptor ``z_c`` to the other channels' gates (Eq. 3), which pruning it removes."""
    with torch.no_grad():
        for unit in stage_layer:
            unit.se.fc2.weight[channels] = 0
            unit.se.fc2.bias[channels] = -1
            if blind:
                unit.se.fc1.weight[:, channels] = 0


def _zero_bn(bn, channels):
    with torch.no_grad():
        bn.weight[channels] = 0
        bn.bias[channels] = 0


def test_pruning_channels_whose_gate_is_zero_leaves_thelogits():
    model = _model("se_resnet18", gate="relu", num_classes=10)
    dead = list(range(3, 128, 3))
    _zero_gates(model, model.layer2, dead)
    _zero_bn(model.layer2[0].downsample[1], dead)  # the projection writes the stream too
    dead_stem = [1, 7, 30]
    _zero_gates(model, model.layer1, dead_stem)
    _zero_bn(model.bn1, dead_stem)
    inner = [0, 5, 9]
    _zero_bn(model.layer4[1].bn1, inner)  # a width without a gate: BN's output 0, the ReLU keeps it 0
    gates = {}
    hooks = [model.get_submodule(b.gate_path).register_forward_hook(
        lambda m, i, o, name=b.name: gates.__setitem__(name, o)) for b in se_blocks(model)]
    x = torch.randn(2, 3, 64, 64)
    full = logits(model, x)
    for h in hooks:
        h.remove()
    assert (gates["SE_3_2"][:, dead] == 0).all() and (gates["SE_3_2"] > 0).any()
    keep = {"stage3": [c for c in range(128) if c not in dead], "stage2": [c for c in range(64) if c not in dead_stem],
            "layer4.1.conv1": [c for c in range(512) if c not in inner]}
    pruned = prune_channels(model, keep)
    _close(full, logits(pruned, x))
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


def test_a_zero_gate_alone_does_not_make_a_channel_free():
    model = _model("se_resnet18", gate="relu", num_classes=10)
    dead = [4, 9, 60]
    _zero_gates(model, model.layer2, dead, blind=False)  # s_c = 0, but z_c still reaches W1
    _zero_bn(model.layer2[0].downsample[1], dead)
    x = torch.randn(2, 3, 64, 64)
    pruned = prune_channels(model, {"stage3": [c for c in range(128) if c not in dead]})
    assert (logits(model, x) - logits(pruned, x)).abs().max() > 1e-3
    # what the surgery is exact to: the channel zeroed where it is written, before the SE block reads it
    _close(zeroed_resnet_logits(model, {"stage3": [c for c in range(128) if c not in dead]}, x), logits(pruned, x))


def test_zero_gates_across_the_option_a_boundary():
    model = _model(CIFAR, gate="relu")
    dead1 = [2, 5, 11]  # stage 1: through option A, these reach stage 2's channels 2, 5, 11
    _zero_gates(model, model.layer1, dead1)
    _zero_bn(model.bn1, dead1)
    dead2 = [2, 5, 11, 16, 20, 31]  # stage 2: only free where stage 1 gives nothing, or beyond its 16 channels
    _zero_gates(model, model.layer2, dead2)
    x = torch.randn(3, 3, 32, 32)
    full = logits(model, x)
    keep = {"stage1": [c for c in range(16) if c not in dead1], "stage2": [c for c in range(32) if c not in dead2]}
    pruned = prune_channels(model, keep)
    _close(full, logits(pruned, x))
    shortcut = pruned.layer2[0].downsample
    assert isinstance(shortcut, ScatterShortcut) and (shortcut.cin, shortcut.cout) == (13, 26)
    # a stage-2 channel with zero gates still carries stage 1's channel: pruning only it changes the logits
    bad = {"stage1": keep["stage1"], "stage2": [c for c in range(32) if c not in dead2 + [3]]}
    assert (full - logits(prune_channels(model, bad), x)).abs().max() > 1e-3


@pytest.mark.parametrize("name, size, knobs", [
    ("se_resnet18", 64, {}),
    ("se_resnet50", 64, {"num_classes": 10}),
    ("se_resnet50", 64, {"num_classes": 10, "drop_stage5": True, "stride_at": "3x3"}),
    ("resnet18", 64, {"num_classes": 10}),
    (CIFAR, 32, {}),
    (CIFAR, 32, {"stages": [2, 3], "reduction": 4}),
])
def test_pruned_equals_the_original_with_the_channels_zeroed(name, size, knobs):
    model = _model(name, **knobs)
    x = torch.randn(2, 3, size, size)
    for seed in (0, 1):
        keep = _random_keep(model, seed)
        pruned = prune_channels(model, keep)
        expected = zeroed_resnet_logits(model, keep, x)
        assert (expected - logits(model, x)).abs().max() > 1e-3  # the zeroing changes the logits: the test bites
        _close(expected, logits(pruned, x))


@pytest.mark.parametrize("attention", ["se", "eca", "srm", "se_var1", "se_var2", "se_var3"])
def test_every_excitation_is_cut_exactly(attention):
    model = _model(CIFAR, attention=attention)
    with torch.no_grad():  # SRM starts with zero weights (every gate 1/2), the diagonal FC without a bias
        for m in model.modules():
            if isinstance(m, torch.nn.Conv1d):
                m.weight.normal_()
    x = torch.randn(2, 3, 32, 32)
    keep = _random_keep(model, 3)
    pruned = prune_channels(model, keep)
    _close(zeroed_resnet_logits(model, keep, x), logits(pruned, x))
    if attention == "eca":
        conv = pruned.layer3[1].se.conv
        assert isinstance(conv, PositionedConv1d) and conv.positions.tolist() == keep["stage3"]


def test_the_option_a_boundary_keeps_some_low_channels_and_drops_others():
    model = _model(CIFAR)
    keep = {"stage1": [0, 1, 4, 6, 9, 13, 15], "stage2": [0, 1, 2, 6, 8, 13, 17, 25, 31],
            "stage3": [3, 17, 30, 31, 32, 40, 63]}
    pruned = prune_channels(model, keep)
    shortcut = pruned.layer2[0].downsample
    # stage 1's channels 0, 1, 6, 13 reach stage 2's kept 0, 1, 6, 13 (new positions 0, 1, 3, 5); 4, 9, 15 do not
    assert shortcut.sources.tolist() == [0, 1, 3, 5] and shortcut.targets.tolist() == [0, 1, 3, 5]
    # stage 2's 17, 31 (new 6, 8) reach stage 3's kept 17, 31 (new 1, 3); stage 3's 3 and 30 get nothing
    assert pruned.layer3[0].downsample.sources.tolist() == [6, 8]
    assert pruned.layer3[0].downsample.targets.tolist() == [1, 3]
    x = torch.randn(2, 3, 32, 32)
    _close(zeroed_resnet_logits(model, keep, x), logits(pruned, x))


def test_a_stage_narrower_than_the_one_before_it():
    model = _model(CIFAR)
    keep = {"stage2": [1, 4, 15, 20, 30]}  # option A now narrows: 16 channels in, 5 out, 3 of them carried
    pruned = prune_channels(model, keep)
    shortcut = pruned.layer2[0].downsample
    assert (shortcut.cin, shortcut.cout, shortcut.sources.tolist(), shortcut.targets.tolist()) == (
        16, 5, [1, 4, 15], [0, 1, 2])
    x = torch.randn(2, 3, 32, 32)
    _close(zeroed_resnet_logits(model, keep, x), logits(pruned, x))


# --- what the pruned network is ------------------------------------------------------------------------------


def _cifar_params(stream, inner, hidden=(1, 2, 4), classes=10):
    """SE-ResNet-20 (CIFAR) by hand: 3x3 convs without bias, 2 BatchNorm parameters per channel, SE
    ``C -> h -> C`` with biases (the hidden width ``h`` of the unpruned network: 16 // 16, 32 // 16, 64 // 16),
    a ``classes``-way linear head."""
    total = 3 * 9 * stream[0] + 2 * stream[0]
    for s in range(3):
        for b in range(3):
            cin = stream[s - 1] if b == 0 and s > 0 else stream[s]
            a, c, h = inner[3 * s + b], stream[s], hidden[s]
            total += 9 * cin * a + 2 * a + 9 * a * c + 2 * c + (c * h + h) + (h * c + c)
    return total + stream[2] * classes + classes


def test_parameters_of_a_pruned_se_resnet20_by_hand():
    model = build_model(CIFAR)
    assert sum(p.numel() for p in model.parameters()) == _cifar_params((16, 32, 64), (16,) * 3 + (32,) * 3 + (64,) * 3)
    stream, inner = (10, 20, 40), (12, 9, 16, 20, 30, 25, 50, 33, 64)
    groups = [g.name for g in channel_groups(model) if g.kind == "inner"]
    keep = {"stage1": list(range(3, 13)), "stage2": [*range(12), *range(16, 24)], "stage3": list(range(24, 64)),
            **{name: list(range(w)) for name, w in zip(groups, inner, strict=True)}}
    pruned = prune_channels(model, keep)
    assert sum(p.numel() for p in pruned.parameters()) == _cifar_params(stream, inner)
    blocks = se_blocks(pruned)
    assert [(b.channels, b.hidden_channels) for b in blocks] == [(10, 1)] * 3 + [(20, 2)] * 3 + [(40, 4)] * 3
    assert [b.params for b in blocks] == [2 * c * h + h + c for c, h in [(10, 1)] * 3 + [(20, 2)] * 3 + [(40, 4)] * 3]


def test_the_input_network_is_left_as_it_is():
    model = _model(CIFAR)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prune_channels(model, _random_keep(model, 0))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model.layer2[0].downsample, OptionAShortcut) and pruning_record(model) is None


@pytest.mark.parametrize("name, size", [(CIFAR, 32), ("se_resnet18", 64)])
def test_pruning_twice_is_pruning_once_with_the_composed_sets(name, size):
    model = _model(name, attention="eca") if name == CIFAR else _model(name)
    first = _random_keep(model, 0, 0.75)
    del first["stage3"]  # a group pruned only the second time
    once = prune_channels(model, first)
    second = _random_keep(once, 1, 0.6)
    twice = prune_channels(once, second)
    widths = {g.name: g.width for g in channel_groups(model)}
    composed = {n: [first.get(n, range(widths[n]))[i] for i in kept] for n, kept in second.items()}
    direct = prune_channels(model, composed)
    assert pruning_record(twice) == pruning_record(direct)
    assert pruning_record(twice)["kept"] == composed
    a, b = twice.state_dict(), direct.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 3, size, size)
    assert torch.equal(logits(twice, x), logits(direct, x))
    _close(zeroed_resnet_logits(model, composed, x), logits(twice, x))


@pytest.mark.parametrize("name, knobs, size", [(CIFAR, {"attention": "eca"}, 32), ("se_resnet18", {}, 64)])
def test_a_pruned_checkpoint_is_rebuilt_from_its_record(name, knobs, size):
    model = _model(name, **knobs)
    pruned = prune_channels(prune_channels(model, _random_keep(model, 0, 0.8)), {"stage2": [0, 3, 4]})
    buffer = io.BytesIO()
    torch.save({"pruning": pruning_record(pruned), "state_dict": pruned.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    rebuilt = apply_pruning(build_model(name, **knobs), saved["pruning"])
    rebuilt.load_state_dict(saved["state_dict"], strict=True)
    rebuilt.eval()
    x = torch.randn(2, 3, size, size)
    assert torch.equal(logits(rebuilt, x), logits(pruned, x))
    assert pruning_record(rebuilt) == pruning_record(pruned)
    with pytest.raises(SeprobeError, match=r"group '[\w.]+' had \d+ channels before pruning, this network has"):
        apply_pruning(build_model("se_resnet50" if name == CIFAR else CIFAR, device="meta"), saved["pruning"])


def test_a_pruned_network_trains():
    model = build_model(CIFAR).train()
    pruned = prune_channels(model, _random_keep(model, 0))
    loss = pruned(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in pruned.parameters())


# --- refusals ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep, message", [
    ({"stage2": []}, r"invalid channels kept of group 'stage2': none \(0 of 32\).*valid: 1 to 32 sorted"),
    ({"stage2": [0, 32]}, r"invalid channel index 32 in group 'stage2' of 32 channels; valid: .* in 0\.\.31"),
    ({"stage2": [-1, 3]}, r"invalid channel index -1 in group 'stage2'"),
    ({"stage2": [3, 1]}, r"invalid channels kept of group 'stage2': 1 after 3"),
    ({"stage2": [1, 1]}, r"1 after 1"),
    ({"stage2": [0.5]}, r"invalid channel index 0\.5 in group 'stage2': 0\.5 \(float\)"),
    ({"stage2": "012"}, r"invalid channels kept of group 'stage2': '012' \(str\)"),
    ({"stage9": [0]}, r"unknown channel group 'stage9'; did you mean .*valid: stage1, layer1\.0\.conv1"),
    ([0, 1], r"invalid keep \[0, 1\] \(list\); valid: a mapping of channel group names"),
])
def test_bad_kept_sets_are_refused_in_one_line(keep, message):
    with pytest.raises(SeprobeError, match=message) as info:
        prune_channels(build_model(CIFAR, device="meta"), keep)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, knobs, message", [
    ("se_vgg16_bn", {}, r"cannot prune SEVGG: its channel groups are not known; valid: seprobe's ResNets"),
    ("se_resnet50", {"integration": "3x3", "attention": "cbam"}, r"cannot prune layer1\.0: its SE module is a CBAM"),
    ("se_preact_resnet110_cifar", {"integration": "pre"}, r"cannot prune a pre-activation CIFAR ResNet"),
    (CIFAR, {"attention": "cbam"}, r"its SE module is a CBAM; valid: a SqueezeExcite block or none"),
    ("se_preact_resnet110_cifar", {}, r"cannot prune a pre-activation CIFAR ResNet"),
    ("se_resnext50_32x4d", {}, r"layer1\.0\.conv2 is a grouped convolution \(a ResNeXt\)"),
])
def test_architectures_not_supported_yet_are_refused(name, knobs, message):
    model = build_model(name, device="meta", **knobs)
    for call in (lambda: channel_groups(model), lambda: prune_channels(model, {"stage2": [0]})):
        with pytest.raises(SeprobeError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
        assert "resnet20_cifar" in str(info.value)  # names what is supported
