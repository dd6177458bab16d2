"""The channel groups of a residual SE network: the channels that one pruning decision removes together.

An SE block recalibrates a feature map ``u`` channel by channel (Eq. 4: ``x~_c = s_c * u_c``), so the channels
its gate ``s`` scores are the channels a gate criterion prunes. Where they can be cut is the architecture's:

* **The residual stream of a stage** (``stage<s>``, kind ``stream``). In the SE-ResNet module (Fig. 3, the
  ``standard`` integration) ``u`` is the residual branch's output (``bn3``'s in a bottleneck, ``bn2``'s in a
  basic block) and ``x~`` is summed with the identity: channel ``c`` of every block of a stage is the same
  channel of one stream, written by every block's last conv and BatchNorm (and by the projection shortcut of the
  stage's first block, ``downsample``: conv and BatchNorm) and read by every next block's first conv, by the
  next stage's first conv and projection, and by the head. Removing it is one decision for the whole stage, and
  every SE block of the stage scores it (``gates``; in the other integrations, below, the SE blocks that sit on
  the stream): its FCs lose the channel (``W1``'s input column, ``W2``'s output row and bias; SE-Var2's and SRM's
  per-channel weights; SE-Var3's row and column; ECA's convolution has no per-channel weight, its channel axis is kept
  by position, :mod:`~seprobe.models.pruning.channel_maps`). Where the first stage has no projection (ResNet-18/34, the
  CIFAR ResNets) the stem's conv and BatchNorm write the same stream; otherwise the stem is a group of its own
  (``stem``, no gate but in the ``pre`` integration).
* **The widths inside a residual branch** (kind ``inner``, named by the conv that writes them:
  ``layer1.0.conv1``, and ``layer1.0.conv2`` in a bottleneck): that conv's output, its BatchNorm, the next
  conv's input. No SE gate scales them (they are there for the magnitude criteria), except in the ``3x3``
  integration (below), where the 3x3 conv's output is its SE block's ``u``.
* **The option-A shortcut** of the CIFAR ResNets (He et al. 2015: subsample, then append zero channels) joins two
  streams without parameters: channel ``j < C_s`` of stage ``s + 1`` is channel ``j`` of stage ``s`` plus its
  residual branch. The two streams are separate groups, and the shortcut is an :class:`Axis` of both (its
  ``input`` and ``output``); the surgery replaces it by a
  :class:`~seprobe.models.pruning.channel_maps.ScatterShortcut` that carries each kept input channel to its output
  channel's new position. Pruning stage ``s + 1``'s channel ``j`` therefore also drops what stage ``s``'s channel
  ``j`` gave it (exactly what zeroing that output channel does): a channel of stage ``s + 1`` whose gates are all
  0 still carries stage ``s``'s values, and only pruning both is free. (This is where Torch-Pruning 1.6.1's
  graph, which does not see through the padding, fails: "mat1 and mat2 shapes cannot be multiplied".)

Where the SE block sits (``integration``, Fig. 5; :class:`~seprobe.models.resnet.SEBasicBlock`,
:class:`~seprobe.models.resnet.SEBottleneck`) decides which group its gate scores: the one whose channels are its
``u`` in Eq. 4, and that group's cuts take the block's per-channel weights. It is exact in each for one reason: a
channel zeroed where it is written is 0 where the SE block reads it, so ``z_c = 0`` (every squeeze of a zero map)
and ``x~_c = s_c * 0 = 0``; cutting the block's weights of ``c`` removes terms that were 0, and every kept ``s_c``
is the same number.

* ``standard`` (Fig. 3): ``u`` is the branch's last BatchNorm output, summed with the identity after ``x~``: the
  unit's stage's stream.
* ``post``: ``u = relu(branch + identity)``, the unit's output, and ``x~`` is what the next unit (or the next
  stage's first conv and projection, or the head) reads: the unit's stage's stream, in a stage's first unit too
  (its projection or option A is summed before the SE block). A stream channel zeroed where it is written (each
  unit's last BatchNorm, the projection or option A, the stem) is 0 in both addends, so ``u_c = 0`` and what the
  next unit reads, ``x~_c``, is 0. (Here ``s_c = 0`` with ``W1`` blind to ``c`` in every unit of a stage is
  already enough, even across option A: each unit's output channel ``c`` is then 0, whatever its addends; only a
  stream the stem writes is also read, by the first unit's ``conv1``, before any SE block scales it.)
* ``identity``: ``u`` is the identity branch after the shortcut, ``downsample(x)`` in a stage's first unit (a
  projection's BatchNorm or option A) and ``x`` elsewhere: in both the unit's output channels, the unit's own
  stage's stream (in a first unit the new stage's, not the stage input's: the shortcut reads ``x`` without SE).
  ``s_c = 0`` removes the identity's channel ``c`` only; the branch's last BatchNorm still writes it.
* ``pre``: ``u = x``, the unit's input, and ``x~`` feeds the residual branch only (``conv1``; the identity and
  the projection read ``x``): the stream the unit reads. In a stage's first unit that is the previous stage's
  stream: ``SE_3_1`` scores ``stage2``'s channels and is one of its gates (the gates are named by their unit, so
  stage ``s``'s stream has ``SE_<s>_2 ... SE_<s>_n`` and ``SE_<s+1>_1``); ``SE_2_1`` is the ``stem`` group's
  gate where the first unit has a projection (ResNet-50 and deeper), and one of the first stage's stream's
  where the stem writes that stream (ResNet-18/34, the CIFAR ResNets' ``SE_1_1``). ``s_c = 0`` hides ``c`` from
  the branch only; the identity still carries it.
* ``3x3``: ``u`` is the 3x3 conv's output after its BatchNorm and ReLU (``bn1``'s in a basic block, ``bn2``'s in
  a bottleneck; the ReLU keeps a zero ``u_c`` zero) and ``x~`` is read by the branch's last conv only: the inner
  group named by that 3x3 conv (``layer1.0.conv1``; ``layer1.0.conv2`` in a bottleneck) has the gate and the
  block's tensors, the stream none from that unit. ``s_c = 0`` with ``W1`` blind to ``c`` makes ``c`` free.

timm's MobileNetV3 (Howard et al. 2019) puts its SE block inside the residual branch, after the depthwise
convolution: ``u`` is the depthwise convolution's output after its BatchNorm and activation, and ``x~ = s * u``
is read by one 1x1 convolution only. The groups are therefore the widths the depthwise convolutions work on:

* **The expanded width of an inverted residual** (kind ``expanded``, named by the block: ``blocks.2.0``):
  channel ``c`` is written by ``conv_pw`` (its row), ``bn1``, the depthwise ``conv_dw`` (its own filter, which
  reads channel ``c`` only) and ``bn2``, whose output is ``u_c``; the SE block squeezes it (``conv_reduce``'s
  input column) and scores it (``conv_expand``'s output row and bias: ``s_c``), and ``conv_pwl`` reads
  ``x~_c`` (its column). One gate per group, the block's own (none where the block has no SE).
* **The channels of a depthwise-separable first block** (MobileNetV3-Small's ``blocks.0.0``, kind ``stem``,
  named by the block): its depthwise convolution maps channel ``c`` of its input to channel ``c``, so ``u_c``
  (after the block's ``bn1``) is the stem's channel ``c``: ``conv_stem``'s row, the network's ``bn1``, the block's
  ``conv_dw`` and ``bn1``, its SE block, ``conv_pw``'s column. Only where the block has no skip: with one
  (MobileNetV3-Large), the stem's output is also summed into the block's, and so is a residual stream (an SE
  block there would score a stream's channels and belong to no group; timm's MobileNetV3-Large has none).
* **The width of the last stage's ``ConvBnAct``** (kind ``inner``, named by the block: ``blocks.5.0``, 576 in
  MobileNetV3-Small): its ``conv``'s rows, its ``bn1``, ``conv_head``'s columns (after the global pooling, which
  keeps a zero channel zero; or the next ``ConvBnAct``'s ``conv``, where the stage has two). No gate.

The residual streams between the blocks (each ``conv_pwl`` and ``bn3``'s output, summed along a stage's skips)
are not groups: no SE gate scales them (the blocks' gates scale the expanded widths), and they are left whole
(``conv_pw``'s columns, ``conv_pwl``'s rows). The gates are named as every foreign model's are
(:func:`~seprobe.models.blocks.find_blocks`, traced at :data:`~seprobe.models.blocks.NAMING_SIZE`):
``SE_2_1`` is ``blocks.0.0``'s, ``SE_4_1`` ... ``SE_4_5`` and ``SE_5_1`` ... ``SE_5_3`` are ``blocks.2.0`` ...
``blocks.4.2``'s in MobileNetV3-Small.

The SE hidden width (``C / r``; ``conv_reduce``'s output in timm) is left as it is (it is not a group here): a
pruned block's excitation is the unpruned one restricted to the kept channels, which is what makes the surgery
exact.

Supported: seprobe's ResNets (:class:`~seprobe.models.resnet.SEResNet`: ``resnet18`` ... ``resnet152`` and their ``se_``
models, not the ResNeXts, whose grouped 3x3 cannot lose single channels) and the post-activation CIFAR ResNets
(``resnet20_cifar`` ... ``resnet110_cifar``), with SE (a :class:`~seprobe.models.se_block.SqueezeExcite`, not CBAM) in
any of the five integrations or none in a block; and timm's MobileNetV3 (``mobilenetv3_small_*``,
``mobilenetv3_large_*``, their ``tf_`` and ``minimal`` versions, and FBNetV3, which timm builds the same way): a stem,
depthwise-separable blocks (without skip only as the first block), inverted residuals with a depthwise convolution and
timm's ``SqueezeExcite`` or no SE, ``ConvBnAct`` blocks without skip only at the end (each one an ``inner`` group read
by the next one's ``conv``, the last by ``conv_head``), and a ``conv_head`` that reads the last block's channels pooled
(not MobileNetV4's blocks, LCNet's chain of depthwise-separable blocks, anti-aliasing or space-to-depth). Anything else
is refused with what is supported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise

from torch import nn

from ...errors import SeprobeError
from ..blocks import NAMING_SIZE, find_blocks
from ..cifar_resnet import CifarResNet, OptionAShortcut
from ..resnet import SEBasicBlock, SEBottleneck, SEResNet
from ..se_block import SqueezeExcite
from .channel_maps import ScatterShortcut

SUPPORTED = ("seprobe's ResNets (resnet18..resnet152, se_resnet18..se_resnet152) and post-activation CIFAR ResNets "
             "(resnet20_cifar..resnet110_cifar and their se_ models), with SE in any integration ('standard', "
             "'pre', 'post', 'identity', '3x3') or no SE; timm's MobileNetV3 (mobilenetv3_small_*, "
             "mobilenetv3_large_*, tf_mobilenetv3_*, fbnetv3_*: a stem, depthwise-separable blocks (without skip only "
             "first), inverted residuals with timm's SqueezeExcite or none, ConvBnAct only at the end); CBAM, the "
             "pre-activation CIFAR ResNets, the ResNeXts and other timm models (EfficientNet, MobileNetV4, LCNet) are "
             "not supported yet")


@dataclass(frozen=True)
class Cut:
    """Keep only the kept channels of the tensor ``tensor`` (a parameter or buffer) of the module at ``path``,
    along ``dim``."""

    path: str
    tensor: str
    dim: int


@dataclass(frozen=True)
class Axis:
    """A module that reads or writes this group's channels by position, with no tensor to cut: ``role`` is
    ``input`` or ``output`` of an option-A shortcut, or ``positions`` of ECA's 1-D convolution across channels."""

    path: str
    role: str


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that are pruned together: ``width`` of them, indexed ``0 .. width - 1``; ``kind`` is ``stream``
    (a stage's residual stream), ``stem`` (the stem's output, where a projection or a depthwise-separable block
    reads it), ``expanded`` (an inverted residual's expanded width) or ``inner`` (a width inside a residual
    branch, gated in the ``3x3`` integration; MobileNetV3's last ``ConvBnAct``).

    ``gates``: the names (``SE_<stage>_<block>``) of the SE blocks whose gates scale these channels, and
    ``se_paths`` their modules (same order); ``cuts``: every tensor that loses the pruned channels; ``axes``: the
    parameter-free modules that index them."""

    name: str
    kind: str
    width: int
    gates: tuple[str, ...]
    se_paths: tuple[str, ...]
    cuts: tuple[Cut, ...]
    axes: tuple[Axis, ...] = ()


class _Group:
    """A group being collected, on ``model``."""

    def __init__(self, model: nn.Module, name: str, kind: str, width: int):
        self.model, self.name, self.kind, self.width = model, name, kind, width
        self.gates: list[str] = []
        self.se_paths: list[str] = []
        self.cuts: list[Cut] = []
        self.axes: list[Axis] = []

    def writes(self, path: str) -> None:
        """The output channels of a conv or linear layer (weight rows, bias)."""
        module = self.model.get_submodule(path)
        self.cuts.append(Cut(path, "weight", 0))
        if module.bias is not None:
            self.cuts.append(Cut(path, "bias", 0))

    def reads(self, path: str) -> None:
        """The input channels of a conv or linear layer (weight columns)."""
        self.cuts.append(Cut(path, "weight", 1))

    def norm(self, path: str) -> None:
        """A BatchNorm's affine terms and running statistics."""
        module = self.model.get_submodule(path)
        for tensor in ("weight", "bias", "running_mean", "running_var"):
            if getattr(module, tensor) is not None:
                self.cuts.append(Cut(path, tensor, 0))

    def se(self, path: str) -> None:
        """An SE block on these channels: its gate, and its per-channel weights (by excitation, Eq. 3)."""
        module = self.model.get_submodule(path)
        self.gates.append(module.name)
        self.se_paths.append(path)
        excitation = module.excitation
        if excitation == "bottleneck":
            self.reads(f"{path}.fc1")
            self.writes(f"{path}.fc2")
        elif excitation == "diagonal":
            self.writes(f"{path}.fc")
        elif excitation == "full":
            self.writes(f"{path}.fc")
            self.reads(f"{path}.fc")
        elif excitation == "srm":
            self.writes(f"{path}.cfc")
            self.norm(f"{path}.norm")
        elif excitation == "conv1d":
            self.axes.append(Axis(f"{path}.conv", "positions"))

    def timm_se(self, path: str, name: str) -> None:
        """timm's ``SqueezeExcite`` on these channels, named ``name``: ``conv_reduce``'s input columns,
        ``conv_expand``'s output rows and bias (its hidden width stays)."""
        self.gates.append(name)
        self.se_paths.append(path)
        self.reads(f"{path}.conv_reduce")
        self.writes(f"{path}.conv_expand")

    def frozen(self) -> ChannelGroup:
        return ChannelGroup(self.name, self.kind, self.width, tuple(self.gates), tuple(self.se_paths),
                            tuple(self.cuts), tuple(self.axes))


def channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """The channel groups of ``model`` (see the module's docstring), in network order: each stream before the
    inner widths of its stage (a MobileNetV3's: block by block)."""
    if _is_timm_mobilenetv3(model):
        return _mobilenetv3_groups(model)
    stages = list(_stages(model))
    collected = []
    stream = _Group(model, "stem", "stem", model.conv1.out_channels)
    stream.writes("conv1")
    stream.norm("bn1")
    collected.append(stream)
    for stage, layer_path, layer in stages:
        for index, unit in enumerate(layer):
            path = f"{layer_path}.{index}"
            placement = unit.integration if isinstance(unit.se, SqueezeExcite) else None
            if placement == "pre":  # on the unit's input: the stream it reads (the previous one, in a first block)
                stream.se(f"{path}.se")
            stream.reads(f"{path}.conv1")
            if unit.downsample is not None:
                stream = _shortcut(model, stream, f"stage{stage}", f"{path}.downsample", unit.downsample)
                collected.append(stream)
            elif stream.kind == "stem":  # no projection: the stem writes the first stage's stream
                stream.name, stream.kind = f"stage{stage}", "stream"
            collected.extend(_inner(model, path, unit, gated=placement == "3x3"))
            last = "conv3" if isinstance(unit, SEBottleneck) else "conv2"
            stream.writes(f"{path}.{last}")
            stream.norm(f"{path}.bn{last[-1]}")
            if placement in _ON_OUTPUT:  # before the sum, on the identity (after any projection), after the sum
                stream.se(f"{path}.se")
    stream.reads("fc")
    return [g.frozen() for g in collected]


def _shortcut(model: nn.Module, stream: _Group, name: str, path: str, shortcut: nn.Module) -> _Group:
    """The stream that starts at a stage's first block: its shortcut reads ``stream`` and writes the new one."""
    if isinstance(shortcut, (OptionAShortcut, ScatterShortcut)):
        new = _Group(model, name, "stream", shortcut.cout)
        stream.axes.append(Axis(path, "input"))
        new.axes.append(Axis(path, "output"))
        return new
    new = _Group(model, name, "stream", shortcut[0].out_channels)
    stream.reads(f"{path}.0")
    new.writes(f"{path}.0")
    new.norm(f"{path}.1")
    return new


def _inner(model: nn.Module, path: str, unit: nn.Module, gated: bool = False) -> list[_Group]:
    """The widths inside a residual branch: conv1's output (and conv2's, in a bottleneck); with ``gated`` (the
    ``3x3`` integration) the SE block on the last of them, the 3x3 conv's output, read by the branch's last conv."""
    convs = ("conv1", "conv2", "conv3") if isinstance(unit, SEBottleneck) else ("conv1", "conv2")
    groups = []
    for number, (writer, reader) in enumerate(pairwise(convs), start=1):
        group = _Group(model, f"{path}.{writer}", "inner", getattr(unit, writer).out_channels)
        group.writes(f"{path}.{writer}")
        group.norm(f"{path}.bn{number}")
        if gated and reader == convs[-1]:
            group.se(f"{path}.se")
        group.reads(f"{path}.{reader}")
        groups.append(group)
    return groups


def _stages(model: nn.Module) -> Iterator[tuple[int, str, nn.Sequential]]:
    """(stage number, path, layer) of each stage of a supported network; a :class:`SeprobeError` otherwise."""
    if isinstance(model, SEResNet):
        first, count = 2, 4
    elif isinstance(model, CifarResNet) and not model.preact:
        first, count = 1, 3
    else:
        what = "a pre-activation CIFAR ResNet" if isinstance(model, CifarResNet) else type(model).__name__
        raise SeprobeError(f"cannot prune {what}: its channel groups are not known; valid: {SUPPORTED}",
                           argument="model")
    for number in range(1, count + 1):
        layer = model.get_submodule(f"layer{number}")
        for index, unit in enumerate(layer):
            _check_unit(f"layer{number}.{index}", unit)
        yield first + number - 1, f"layer{number}", layer


def _check_unit(path: str, unit: nn.Module) -> None:
    if not isinstance(unit, (SEBasicBlock, SEBottleneck)):
        raise SeprobeError(f"cannot prune {path}: a {type(unit).__name__} is not a residual unit seprobe's groups "
                           f"know; valid: {SUPPORTED}", argument="model")
    if unit.se is not None and not isinstance(unit.se, (SqueezeExcite, nn.Identity)):
        raise SeprobeError(f"cannot prune {path}: its SE module is a {type(unit.se).__name__}; valid: a "
                           f"SqueezeExcite block or none ({SUPPORTED})", argument="model")
    if isinstance(unit.se, SqueezeExcite):
        widths = _se_widths(unit)
        if unit.integration not in widths:
            raise SeprobeError(f"cannot prune {path}: SE integration {unit.integration!r} is not one seprobe's "
                               f"groups know; valid: integration {', '.join(map(repr, widths))} ({SUPPORTED})",
                               argument="model")
        if unit.se.channels != widths[unit.integration]:
            raise SeprobeError(f"cannot prune {path}: its SE block ({unit.integration!r}) recalibrates "
                               f"{unit.se.channels} channels, not the {widths[unit.integration]} of the map that "
                               f"integration puts it on; valid: {SUPPORTED}", argument="model")
    grouped = [name for name in ("conv1", "conv2", "conv3") if getattr(getattr(unit, name, None), "groups", 1) != 1]
    if grouped:
        raise SeprobeError(f"cannot prune {path}: {path}.{grouped[0]} is a grouped convolution (a ResNeXt), whose "
                           f"channels go by groups; valid: {SUPPORTED}", argument="model")
    shortcut = unit.downsample
    if shortcut is not None and not isinstance(shortcut, (OptionAShortcut, ScatterShortcut)) and not (
            isinstance(shortcut, nn.Sequential) and len(shortcut) == 2 and isinstance(shortcut[0], nn.Conv2d)
            and isinstance(shortcut[1], nn.BatchNorm2d) and shortcut[0].groups == 1):
        raise SeprobeError(f"cannot prune {path}: its shortcut {type(shortcut).__name__} is neither a projection "
                           f"(conv, BatchNorm) nor option A; valid: {SUPPORTED}", argument="model")


#: the integrations whose SE block recalibrates the unit's output channels, the stage's stream (Fig. 5)
_ON_OUTPUT = ("standard", "identity", "post")


def _se_widths(unit: nn.Module) -> dict[str, int]:
    """Integration -> the channels of the map its SE block recalibrates in ``unit`` (the unit's input for
    ``pre``, the 3x3 conv's output for ``3x3``, its output otherwise): the integrations the groups know."""
    last = unit.conv3 if isinstance(unit, SEBottleneck) else unit.conv2
    inner = unit.conv2 if isinstance(unit, SEBottleneck) else unit.conv1
    return {"standard": last.out_channels, "pre": unit.conv1.in_channels, "post": last.out_channels,
            "identity": last.out_channels, "3x3": inner.out_channels}


# --- timm's MobileNetV3 ----------------------------------------------------------------------------------------


def _is_timm_mobilenetv3(model: nn.Module) -> bool:
    """timm's ``MobileNetV3`` class (by name: timm is an optional dependency); it also builds MobileNetV4, LCNet
    and FBNetV3, which :func:`_check_mobilenetv3` sorts out."""
    cls = type(model)
    return cls.__name__ == "MobileNetV3" and cls.__module__.startswith("timm.")


def _mobilenetv3_groups(model: nn.Module) -> list[ChannelGroup]:
    """The groups of a timm MobileNetV3 (see the module's docstring), block by block."""
    _check_mobilenetv3(model)
    # the gates' names are the network's, read at the naming size whatever size the caller works at
    names = {b.path: b.name for b in find_blocks(model, NAMING_SIZE)}
    blocks = [(f"blocks.{i}.{j}", block) for i, stage in enumerate(model.blocks) for j, block in enumerate(stage)]
    collected = []
    for number, (path, block) in enumerate(blocks):
        kind = type(block).__name__
        if kind == "DepthwiseSeparableConv":
            if block.has_skip:
                # its depthwise channels are its input's, which the skip also adds to its output: a residual
                # stream (MobileNetV3-Large's first block reads the stem so), which no group cuts
                continue
            group = _Group(model, path, "stem", block.conv_dw.out_channels)  # checked: only the first block
            group.writes("conv_stem")
            group.norm("bn1")
            group.writes(f"{path}.conv_dw")
            group.norm(f"{path}.bn1")
            _timm_se(group, names, path, block)
            group.reads(f"{path}.conv_pw")
        elif kind == "InvertedResidual":
            group = _Group(model, path, "expanded", block.conv_pw.out_channels)
            group.writes(f"{path}.conv_pw")
            group.norm(f"{path}.bn1")
            group.writes(f"{path}.conv_dw")
            group.norm(f"{path}.bn2")
            _timm_se(group, names, path, block)
            group.reads(f"{path}.conv_pwl")
        else:  # a ConvBnAct of the last stage, without skip (checked): read by the next one's conv or the head
            group = _Group(model, path, "inner", block.conv.out_channels)
            group.writes(f"{path}.conv")
            group.norm(f"{path}.bn1")
            group.reads(f"{blocks[number + 1][0]}.conv" if number + 1 < len(blocks) else "conv_head")
        collected.append(group)
    return [g.frozen() for g in collected]


def _timm_se(group: _Group, names: dict[str, str], path: str, block: nn.Module) -> None:
    if isinstance(block.se, nn.Identity):
        return
    se_path = f"{path}.se"
    if se_path not in names:
        raise SeprobeError(f"cannot prune {se_path}: its SE block is not among the network's named SE blocks (not "
                           f"called by a forward pass); valid: {SUPPORTED}", argument="model")
    group.timm_se(se_path, names[se_path])


def _refuse(path: str, why: str, valid: str = SUPPORTED) -> SeprobeError:
    return SeprobeError(f"cannot prune {path} of timm's MobileNetV3: {why}; valid: {valid}", argument="model")


def _check_mobilenetv3(model: nn.Module) -> None:
    """A :class:`SeprobeError` unless ``model`` has the structure :func:`_mobilenetv3_groups` knows."""
    _check_conv("conv_stem", model.conv_stem)
    _check_norm("bn1", model.bn1)
    blocks = [(f"blocks.{i}.{j}", i, block) for i, stage in enumerate(model.blocks) for j, block in enumerate(stage)]
    last_stage = len(model.blocks) - 1
    width = model.bn1.num_features
    for number, (path, stage, block) in enumerate(blocks):
        kind = type(block).__name__
        if getattr(block, "aa", None) is not None and not isinstance(block.aa, nn.Identity):
            raise _refuse(path, f"its anti-aliasing {type(block.aa).__name__} filters channels by position")
        if getattr(block, "conv_s2d", None) is not None:
            raise _refuse(path, "its space-to-depth convolution is not supported")
        if kind == "DepthwiseSeparableConv":
            if number and not block.has_skip:
                raise _refuse(path, "a DepthwiseSeparableConv without skip after the first block (its channels are "
                                    "the previous block's output) is not supported")
            _check_conv(f"{path}.conv_dw", block.conv_dw, depthwise=True)
            _check_norm(f"{path}.bn1", block.bn1)
            _check_se(path, block.se)
            _check_conv(f"{path}.conv_pw", block.conv_pw)
            width = block.conv_pw.out_channels
        elif kind == "InvertedResidual":
            _check_conv(f"{path}.conv_pw", block.conv_pw)
            _check_norm(f"{path}.bn1", block.bn1)
            _check_conv(f"{path}.conv_dw", block.conv_dw, depthwise=True)
            _check_norm(f"{path}.bn2", block.bn2)
            _check_se(path, block.se)
            _check_conv(f"{path}.conv_pwl", block.conv_pwl)
            width = block.conv_pwl.out_channels
        elif kind == "ConvBnAct":
            if stage != last_stage or block.has_skip or any(type(b).__name__ != kind for *_, b in blocks[number + 1:]):
                raise _refuse(path, "a ConvBnAct is supported only in the last stage, without skip, after every "
                                    "other block")
            _check_conv(f"{path}.conv", block.conv)
            _check_norm(f"{path}.bn1", block.bn1)
            width = block.conv.out_channels
        else:
            raise _refuse(path, f"a {kind} is not a block seprobe's groups know (DepthwiseSeparableConv, "
                                "InvertedResidual, ConvBnAct)")
    head = getattr(model, "conv_head", None)
    if not isinstance(head, nn.Conv2d) or head.groups != 1 or head.in_channels != width:
        found = f"reads {head.in_channels} channels" if isinstance(head, nn.Conv2d) else f"is a {type(head).__name__}"
        raise _refuse("conv_head", f"it {found}, not the {width} channels of the last block pooled (a global pool "
                                   "other than avg or max, a grouped or missing head)")


def _check_conv(path: str, conv: nn.Module, depthwise: bool = False) -> None:
    if not isinstance(conv, nn.Conv2d):
        raise _refuse(path, f"a {type(conv).__name__} is not a convolution seprobe can cut")
    if depthwise and not conv.groups == conv.in_channels == conv.out_channels:
        raise _refuse(path, f"a convolution of {conv.in_channels} to {conv.out_channels} channels in {conv.groups} "
                            "groups is not depthwise")
    if not depthwise and conv.groups != 1:
        raise _refuse(path, f"a grouped convolution ({conv.groups} groups), whose channels go by groups")


def _check_norm(path: str, norm: nn.Module) -> None:
    if not isinstance(norm, nn.modules.batchnorm._BatchNorm):
        raise _refuse(path, f"its normalisation {type(norm).__name__} is not a BatchNorm")


def _check_se(path: str, se: nn.Module) -> None:
    if isinstance(se, nn.Identity):
        return
    convs = [getattr(se, name, None) for name in ("conv_reduce", "conv_expand")]
    if type(se).__name__ != "SqueezeExcite" or not all(
            isinstance(c, nn.Conv2d) and c.groups == 1 and c.kernel_size == (1, 1) for c in convs):
        raise _refuse(f"{path}.se", f"its SE module is a {type(se).__name__}",
                      f"timm's SqueezeExcite (1x1 conv_reduce, conv_expand) or none ({SUPPORTED})")
