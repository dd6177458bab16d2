"""Find the excitation gates of any SE network, and name them ``SE_<stage>_<block>``.

seprobe's own models carry their names (:func:`seprobe.models.inventory.se_blocks`). In a foreign network (timm's
``SEModule`` / ``SqueezeExcite``, timm's legacy ``se_module``, torchvision's ``SqueezeExcitation`` in
MobileNetV3, EfficientNet and RegNetY) the SE modules are found by class, and named by a stable rule that
reproduces the paper's numbering on ResNets:

* stage ``s = log2(input side / side of the map the block recalibrates)``, measured at the model's input
  size, and never below :data:`NAMING_SIZE` (the names are the architecture's: at a small input, padding and
  rounding make the ratio lie): conv2_x works at 1/4 of the input (stage 2), conv5_x at 1/32 (stage 5);
* block ``b`` = the block's order (1-based, network order) among the SE blocks of that stage.

So MobileNetV3-Small's nine SE blocks are ``SE_2_1``, ``SE_4_1`` ... ``SE_4_5`` and ``SE_5_1`` ... ``SE_5_3``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import SeprobeError
from ..models.inventory import SEBlockInfo, se_blocks

#: The smallest input side the gates can be read at: stage 5 works at 1/32 of the input, one pixel at 32.
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


@dataclass(frozen=True)
class Gate:
    name: str
    stage: int
    block: int
    path: str        # the SE module
    gate_path: str   # the module whose output is the excitation s
    channels: int


def _gate_attribute(module: nn.Module) -> str | None:
    for attr in GATE_ATTRIBUTES.get(type(module).__name__, ()):
        if isinstance(getattr(module, attr, None), nn.Module):
            return attr
    return None


def find_gates(model: nn.Module, input_size: int = 224) -> list[Gate]:
    """Every SE gate of ``model`` in network order, named ``SE_<stage>_<block>``; ``input_size`` is the side of
    the images it will see (for a foreign model at least :data:`MIN_INPUT_SIZE`; it is traced at
    :data:`NAMING_SIZE` or more, so that a small crop does not rename its blocks)."""
    own = se_blocks(model)
    if own:  # seprobe's models carry their names
        return [Gate(b.name, b.stage, b.block, b.path, b.gate_path, b.channels) for b in own]
    if input_size < MIN_INPUT_SIZE:
        raise SeprobeError(f"input size {input_size} is too small to read the SE stages (stage 5 works at 1/32 of "
                           f"the input); valid: a crop of at least {MIN_INPUT_SIZE} pixels")
    input_size = max(input_size, NAMING_SIZE)
    found = [(path, attr) for path, m in model.named_modules() if (attr := _gate_attribute(m))]
    if not found:
        return []
    shapes: dict[str, tuple[int, int]] = {}

    def record(path):
        def hook(module, inputs, output):  # returns None: the output is left as it is
            shapes.setdefault(path, (inputs[0].shape[1], inputs[0].shape[-1]))
        return hook

    hooks = [model.get_submodule(path).register_forward_hook(record(path)) for path, _ in found]
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        with torch.inference_mode():
            model(torch.zeros(1, 3, input_size, input_size, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    counters: dict[int, int] = defaultdict(int)
    gates = []
    for path, attr in found:  # named_modules() yields network (registration) order
        if path not in shapes:
            continue  # an SE module the forward pass never called
        channels, side = shapes[path]
        stage = round(math.log2(input_size / side))
        counters[stage] += 1
        gates.append(Gate(f"SE_{stage}_{counters[stage]}", stage, counters[stage], path, f"{path}.{attr}", channels))
    return gates


def gate_range(model: nn.Module, gate: Gate) -> tuple[float, float]:
    """The interval a gate's values live in, for fixed histogram bins (values outside go to overflow bins)."""
    module = model.get_submodule(gate.gate_path)
    if isinstance(module, nn.Tanh):
        return -1.0, 1.0
    if isinstance(module, (nn.ReLU, nn.ReLU6)):
        return 0.0, 4.0
    return 0.0, 1.0


def block_infos(model: nn.Module, input_size: int = 224) -> list[SEBlockInfo]:
    """The SE blocks of any SE network as :class:`~seprobe.models.inventory.SEBlockInfo` (for counting): the
    hidden width is the output width of the block's first FC (a 1x1 conv or a linear layer)."""
    own = se_blocks(model)
    if own:
        return own
    infos = []
    for g in find_gates(model, input_size):
        module = model.get_submodule(g.path)
        first = next((m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
        hidden = getattr(first, "out_channels", getattr(first, "out_features", 0))
        infos.append(SEBlockInfo(g.name, g.stage, g.block, g.path, g.gate_path, g.channels, hidden,
                                 sum(p.numel() for p in module.parameters())))
    return infos
