"""The channel groups of a residual SE network: the channels that one pruning decision removes together.

An SE block recalibrates a feature map ``u`` channel by channel (Eq. 4: ``x~_c = s_c * u_c``), so the channels
its gate ``s`` scores are the channels a gate criterion prunes. Where they can be cut is the architecture's:

* **The residual stream of a stage** (``stage<s>``, kind ``stream``). In the SE-ResNet module (Fig. 3, the
  ``standard`` integration) ``u`` is the residual branch's output (``bn3``'s in a bottleneck, ``bn2``'s in a
  basic block) and ``x~`` is summed with the identity: channel ``c`` of every block of a stage is the same
  channel of one stream, written by every block's last conv and BatchNorm (and by the projection shortcut of the
  stage's first block, ``downsample``: conv and BatchNorm) and read by every next block's first conv, by the
  next stage's first conv and projection, and by the head. Removing it is one decision for the whole stage, and
  every SE block of the stage scores it (``gates``): its FCs lose the channel (``W1``'s input column, ``W2``'s
  output row and bias; SE-Var2's and SRM's per-channel weights; SE-Var3's row and column; ECA's convolution has
  no per-channel weight, its channel axis is kept by position, :mod:`~seprobe.pruning.channel_maps`). Where the
  first stage has no projection (ResNet-18/34, the CIFAR ResNets) the stem's conv and BatchNorm write the same
  stream; otherwise the stem is a group of its own (``stem``, no gate).
* **The widths inside a residual branch** (kind ``inner``, named by the conv that writes them:
  ``layer1.0.conv1``, and ``layer1.0.conv2`` in a bottleneck): that conv's output, its BatchNorm, the next
  conv's input. No SE gate scales them (they are there for the magnitude criteria).
* **The option-A shortcut** of the CIFAR ResNets (He et al. 2015: subsample, then append zero channels) joins two
  streams without parameters: channel ``j < C_s`` of stage ``s + 1`` is channel ``j`` of stage ``s`` plus its
  residual branch. The two streams are separate groups, and the shortcut is an :class:`Axis` of both (its
  ``input`` and ``output``); the surgery replaces it by a
  :class:`~seprobe.pruning.channel_maps.ScatterShortcut` that carries each kept input channel to its output
  channel's new position. Pruning stage ``s + 1``'s channel ``j`` therefore also drops what stage ``s``'s channel
  ``j`` gave it (exactly what zeroing that output channel does): a channel of stage ``s + 1`` whose gates are all
  0 still carries stage ``s``'s values, and only pruning both is free. (This is where Torch-Pruning 1.6.1's
  graph, which does not see through the padding, fails: "mat1 and mat2 shapes cannot be multiplied".)

The SE hidden width ``C / r`` is left as it is (it is not a group here): a pruned block's excitation is the
unpruned one restricted to the kept channels, which is what makes the surgery exact.

Supported: seprobe's ResNets (:class:`~seprobe.models.resnet.SEResNet`: ``resnet18`` ... ``resnet152`` and
their ``se_`` models, not the ResNeXts, whose grouped 3x3 cannot lose single channels) and the post-activation
CIFAR ResNets (``resnet20_cifar`` ... ``resnet110_cifar``), with SE in the ``standard`` integration or none in a
block; anything else is refused with what is supported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise

from torch import nn

from ..errors import SeprobeError
from ..models.cifar_resnet import CifarResNet, OptionAShortcut
from ..models.resnet import SEBasicBlock, SEBottleneck, SEResNet
from ..models.se_block import SqueezeExcite
from .channel_maps import ScatterShortcut

SUPPORTED = ("seprobe's ResNets (resnet18..resnet152, se_resnet18..se_resnet152) and post-activation CIFAR ResNets "
             "(resnet20_cifar..resnet110_cifar and their se_ models), with SE integration 'standard' (Fig. 3) or no "
             "SE; MobileNetV3, the other integrations and CBAM are not supported yet")


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
    (a stage's residual stream), ``stem`` (the stem's output, where a projection reads it) or ``inner`` (a width
    inside a residual branch).

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

    def frozen(self) -> ChannelGroup:
        return ChannelGroup(self.name, self.kind, self.width, tuple(self.gates), tuple(self.se_paths),
                            tuple(self.cuts), tuple(self.axes))


def channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """The channel groups of ``model`` (see the module's docstring), in network order: each stream before the
    inner widths of its stage."""
    stages = list(_stages(model))
    collected = []
    stream = _Group(model, "stem", "stem", model.conv1.out_channels)
    stream.writes("conv1")
    stream.norm("bn1")
    collected.append(stream)
    for stage, layer_path, layer in stages:
        for index, unit in enumerate(layer):
            path = f"{layer_path}.{index}"
            stream.reads(f"{path}.conv1")
            if unit.downsample is not None:
                stream = _shortcut(model, stream, f"stage{stage}", f"{path}.downsample", unit.downsample)
                collected.append(stream)
            elif stream.kind == "stem":  # no projection: the stem writes the first stage's stream
                stream.name, stream.kind = f"stage{stage}", "stream"
            collected.extend(_inner(model, path, unit))
            last = "conv3" if isinstance(unit, SEBottleneck) else "conv2"
            stream.writes(f"{path}.{last}")
            stream.norm(f"{path}.bn{last[-1]}")
            if isinstance(unit.se, SqueezeExcite):
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


def _inner(model: nn.Module, path: str, unit: nn.Module) -> list[_Group]:
    """The widths inside a residual branch: conv1's output (and conv2's, in a bottleneck)."""
    convs = ("conv1", "conv2", "conv3") if isinstance(unit, SEBottleneck) else ("conv1", "conv2")
    groups = []
    for number, (writer, reader) in enumerate(pairwise(convs), start=1):
        group = _Group(model, f"{path}.{writer}", "inner", getattr(unit, writer).out_channels)
        group.writes(f"{path}.{writer}")
        group.norm(f"{path}.bn{number}")
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
    if isinstance(unit.se, SqueezeExcite) and unit.integration != "standard":
        raise SeprobeError(f"cannot prune {path}: SE integration {unit.integration!r} is not supported yet; valid: "
                           f"integration 'standard' ({SUPPORTED})", argument="model")
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
