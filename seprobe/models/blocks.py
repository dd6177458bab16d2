"""The SE blocks of any SE network: one :class:`SEBlockInfo` per block, named ``SE_<stage>_<block>``.

seprobe's own models carry their names (each :class:`~seprobe.models.se_block.SqueezeExcite` is named by the
architecture that holds it). In a foreign network (timm's ``SEModule`` / ``SqueezeExcite``, timm's legacy
``se_module``, torchvision's ``SqueezeExcitation`` in MobileNetV3, EfficientNet and RegNetY) the SE modules are
found by class, and named by a stable rule that reproduces the paper's numbering on ResNets:

* stage ``s = log2(input side / side of the map the block recalibrates)``, measured at the model's input
  size, and never below :data:`NAMING_SIZE` (the names are the architecture's: at a small input, padding and
  rounding make the ratio lie): conv2_x works at 1/4 of the input (stage 2), conv5_x at 1/32 (stage 5);
* block ``b`` = the block's order (1-based, network order) among the SE blocks of that stage.

So MobileNetV3-Small's nine SE blocks are ``SE_2_1``, ``SE_4_1`` ... ``SE_4_5`` and ``SE_5_1`` ... ``SE_5_3``.

Each block also says where a constant gate (``s_c`` fixed, Eq. 4 with a constant scale) folds into the network
(:class:`FoldTarget`): into the BatchNorm before the block, or into the convolution after it, where the
architecture allows; ``None`` otherwise.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..choices import SPATIAL_SUFFIX
from ..errors import SeprobeError
from .resnet import SEBasicBlock, SEBottleneck
from .se_block import CBAM, SpatialGate, SqueezeExcite

#: The smallest input side the gates of a foreign model can be named at: stage 5 works at 1/32 of the input.
MIN_INPUT_SIZE = 32
#: The side foreign models are traced at to name their stages (the paper's; a larger input size is used as is).
NAMING_SIZE = 224

#: SE module class name -> the attribute that holds its gate (the module whose output is ``s``).
GATE_ATTRIBUTES = {
    "SqueezeExcitation": ("scale_activation",),   # torchvision.ops
    "SEModule": ("gate", "sigmoid"),              # timm.layers (gate), timm legacy senet (sigmoid)
    "SqueezeExcite": ("gate",),                   # timm efficientnet / mobilenetv3 blocks
    "EffectiveSEModule": ("gate",),
    "SqueezeExcite2d": ("gate",),
}

#: timm block class name -> the convolution that reads the SE block's output
TIMM_FOLLOWING_CONV = {"InvertedResidual": "conv_pwl", "DepthwiseSeparableConv": "conv_pw",
                       "EdgeResidual": "conv_pwl"}


@dataclass(frozen=True)
class FoldTarget:
    """Where a constant scale of an SE block's output goes: ``bn`` scales a BatchNorm's affine terms (the layer
    before the block), ``conv`` a convolution's input channels (the layer after it)."""

    path: str
    kind: str  # "bn" | "conv"


@dataclass(frozen=True)
class SEBlockInfo:
    """One SE block: ``name`` is ``SE_<stage>_<block>``; ``path`` the SE module, ``gate_path`` the module whose
    output is ``s`` (Eq. 3); ``hidden_channels`` the width of its first FC (``C`` where the excitation has no
    reduction); ``fold`` where a constant gate folds (``None``: it cannot, and stays a per-channel scale).

    A block with CBAM's spatial gate after its channel gate (a :class:`~seprobe.models.se_block.CBAM`):
    ``path`` is its channel part (what an ablation of the gate at ``gate_path`` removes), ``spatial_path`` the
    spatial gate and ``spatial_gate_path`` the module whose output is the spatial map ``M_s`` (``N x 1 x H x
    W``); ``params`` counts both parts (the block's cost in the network). The probes name the spatial gate
    ``<name>.spatial`` (:attr:`spatial_name`); the block's name alone is its channel gate. A spatial gate an
    export removed or froze is no longer a gate: the block then has none."""

    name: str
    stage: int
    block: int
    path: str
    gate_path: str
    channels: int
    hidden_channels: int
    params: int
    fold: FoldTarget | None = None
    spatial_path: str | None = None
    spatial_gate_path: str | None = None

    @property
    def spatial_name(self) -> str | None:
        """The name of the block's spatial gate (``SE_2_1.spatial``), ``None`` without one; the block's own name
        is its channel gate's."""
        return f"{self.name}{SPATIAL_SUFFIX}" if self.spatial_gate_path else None

    def gates(self) -> dict[str, str]:
        """The block's gates by name -> the module whose output is the gate: the channel gate (``s``) under the
        block's name, then the spatial gate (``M_s``) under :attr:`spatial_name`, in the order they run."""
        found = {self.name: self.gate_path}
        if self.spatial_gate_path:
            found[self.spatial_name] = self.spatial_gate_path
        return found


def gate_paths(blocks: Sequence[SEBlockInfo]) -> dict[str, str]:
    """Every gate of ``blocks`` by name (:meth:`SEBlockInfo.gates`), in network order."""
    return {name: path for b in blocks for name, path in b.gates().items()}


def se_blocks(model: nn.Module) -> list[SEBlockInfo]:
    """The named SE blocks of a seprobe model, in network order (stage, then block)."""
    found = []
    for path, module in model.named_modules():
        if isinstance(module, SqueezeExcite) and module.name:
            _, stage, block = module.name.split("_")
            parent_path = path.rpartition(".")[0]
            parent = model.get_submodule(parent_path) if parent_path else model
            cbam = isinstance(parent, CBAM) and parent.channel is module
            # an exported spatial gate (removed, or a constant scale) has no map left to read
            spatial = f"{parent_path}.spatial" if cbam and isinstance(parent.spatial, SpatialGate) else None
            params = _params(parent if cbam else module)
            found.append(SEBlockInfo(module.name, int(stage), int(block), path, f"{path}.gate", module.channels,
                                     module.hidden_channels, params,
                                     fold_target(model, path), spatial, f"{spatial}.gate" if spatial else None))
    return sorted(found, key=lambda b: (b.stage, b.block))


def find_blocks(model: nn.Module, input_size: int = 224) -> list[SEBlockInfo]:
    """Every SE block of ``model`` in network order: seprobe's by their names, a foreign model's by class,
    named by tracing it at ``input_size`` (at least :data:`MIN_INPUT_SIZE`; :data:`NAMING_SIZE` or more is
    used, so that a small crop does not rename the blocks)."""
    own = se_blocks(model)
    if own:
        return own
    if input_size < MIN_INPUT_SIZE:
        raise SeprobeError(f"input size {input_size} is too small to read the SE stages (stage 5 works at 1/32 of "
                           f"the input); valid: a crop of at least {MIN_INPUT_SIZE} pixels")
    found = [(path, attr) for path, m in model.named_modules() if (attr := _gate_attribute(m))]
    if not found:
        return []
    size = max(input_size, NAMING_SIZE)
    shapes = _input_shapes(model, [path for path, _ in found], size)
    counters: dict[int, int] = defaultdict(int)
    blocks = []
    for path, attr in found:  # named_modules() yields network (registration) order
        if path not in shapes:
            continue  # an SE module the forward pass never called
        channels, side = shapes[path]
        stage = round(math.log2(size / side))
        counters[stage] += 1
        module = model.get_submodule(path)
        first = next((m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
        hidden = getattr(first, "out_channels", getattr(first, "out_features", 0))
        blocks.append(SEBlockInfo(f"SE_{stage}_{counters[stage]}", stage, counters[stage], path, f"{path}.{attr}",
                                  channels, hidden, _params(module), fold_target(model, path)))
    return blocks


def _gate_attribute(module: nn.Module) -> str | None:
    for attr in GATE_ATTRIBUTES.get(type(module).__name__, ()):
        if isinstance(getattr(module, attr, None), nn.Module):
            return attr
    return None


def _input_shapes(model: nn.Module, paths: list[str], size: int) -> dict[str, tuple[int, int]]:
    """(channels, side) of the input each module at ``paths`` sees on one ``size`` x ``size`` image."""
    shapes: dict[str, tuple[int, int]] = {}

    def record(path):
        def hook(module, inputs, output):  # returns None: the output is left as it is
            shapes.setdefault(path, (inputs[0].shape[1], inputs[0].shape[-1]))
        return hook

    hooks = [model.get_submodule(path).register_forward_hook(record(path)) for path in paths]
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        with torch.inference_mode():
            model(torch.zeros(1, 3, size, size, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return shapes


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def gate_range(model: nn.Module, block: SEBlockInfo) -> tuple[float, float]:
    """The interval a gate's values live in, for fixed histogram bins (values outside go to overflow bins)."""
    module = model.get_submodule(block.gate_path)
    if isinstance(module, nn.Tanh):
        return -1.0, 1.0
    if isinstance(module, (nn.ReLU, nn.ReLU6)):
        return 0.0, 4.0
    return 0.0, 1.0


def fold_target(model: nn.Module, se_path: str) -> FoldTarget | None:
    """The layer a constant scale of the SE module at ``se_path`` folds into, or ``None``:

    * seprobe ResNet, ``standard`` integration: the SE block scales the output of the BatchNorm that ends the
      residual branch (``bn3`` of a bottleneck, ``bn2`` of a basic block): ``s * (gamma * x_hat + beta)`` is a
      BatchNorm with ``gamma' = s * gamma``, ``beta' = s * beta``;
    * seprobe ResNet, ``3x3`` integration, and MobileNetV3 / EfficientNet-style blocks (timm's
      ``InvertedResidual``, ``DepthwiseSeparableConv``, ``EdgeResidual``; torchvision's blocks, where the SE module
      is followed by a convolution in an ``nn.Sequential``): the following convolution (groups 1) reads ``s * x``,
      so each weight ``W[:, c]`` of input channel ``c`` is multiplied by ``s_c``;
    * the channel part of a :class:`~seprobe.models.se_block.CBAM`: the layer before the block only (the spatial
      gate reads ``s * x``, so ``s`` cannot move past it into the layer after).
    """
    parent_path, _, name = se_path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    if isinstance(parent, CBAM) and name == "channel":
        target = fold_target(model, parent_path)
        return target if target is not None and target.kind == "bn" else None
    target = None
    if isinstance(parent, (SEBottleneck, SEBasicBlock)) and name == "se":
        last = "bn3" if isinstance(parent, SEBottleneck) else "bn2"
        after = "conv3" if isinstance(parent, SEBottleneck) else "conv2"
        target = {"standard": FoldTarget(f"{parent_path}.{last}", "bn"),
                  "3x3": FoldTarget(f"{parent_path}.{after}", "conv")}.get(parent.integration)
    elif type(parent).__name__ in TIMM_FOLLOWING_CONV and name == "se":
        target = FoldTarget(f"{parent_path}.{TIMM_FOLLOWING_CONV[type(parent).__name__]}", "conv")
    elif isinstance(parent, nn.Sequential) and name.isdigit() and int(name) + 1 < len(parent):
        following = parent[int(name) + 1]
        prefix = f"{parent_path}.{int(name) + 1}" if parent_path else str(int(name) + 1)
        if isinstance(following, nn.Sequential) and len(following) and isinstance(following[0], nn.Conv2d):
            target = FoldTarget(f"{prefix}.0", "conv")
        elif isinstance(following, nn.Conv2d):
            target = FoldTarget(prefix, "conv")
    if target is None:
        return None
    module = model.get_submodule(target.path)
    if target.kind == "bn" and not (isinstance(module, nn.BatchNorm2d) and module.affine):
        return None
    if target.kind == "conv" and not (isinstance(module, nn.Conv2d) and module.groups == 1):
        return None
    return target
