"""SE-aware multiply-add counting with fvcore.

fvcore counts one multiply-add as one "flop" (like the paper's GFLOPs), but ignores the operators an SE block
is made of: the squeeze (``mean`` / ``amax``), the gate (``sigmoid`` ...) and the scale (``mul``). The handles
below count them, each as one operation per element:

* squeeze (Eq. 2): one add (or compare) per **input** element, as fvcore counts ``adaptive_avg_pool2d``;
* gate and other activations: one per **output** element;
* scale (Eq. 4), residual adds and other elementwise products (``mul``): one per **output** element (the
  scale's first input may be the small ``N x C x 1 x 1`` gate, so its input size says nothing);
* SRM's standard deviation (``std``): one per **input** element, as a squeeze (its square-and-accumulate; the
  centring subtractions and the square root are not counted, as a mean's division is not).

fvcore's own formulas count the rest of the new blocks: a convolution ``C_in / groups * k`` multiply-adds per
output element, so ECA's ``Conv1d(1, 1, k)`` is ``k * C`` per image, SE-Var2's depthwise 1x1 ``C``, SE-Var3's
``C^2``, SRM's channel-wise FC ``2 * C`` and CBAM's spatial 7x7 convolution ``2 * 49 * H * W``; BatchNorm
(SRM's, CBAM's spatial one) 2 per element in eval mode (1 without affine terms), 5 in training mode.

A block's operations are its parts (:attr:`FlopCount.per_block`): ``fc`` (its FCs and convolutions),
``squeeze``, ``act``, ``gate``, ``scale``, ``norm`` (SRM's BatchNorm) and ``add`` (CBAM's sum of the two
descriptors' excitations), and, for CBAM's spatial gate, ``spatial_conv``, ``spatial_pool`` (the mean and max
over channels, one per input element), ``spatial_norm``, ``spatial_gate`` and ``spatial_scale`` (one per output
element). The default convention counts the multiply-adds: ``fc``, ``scale``, ``spatial_conv`` and
``spatial_scale``.

Every operator is counted once, by module; a :class:`FlopConvention` then chooses which categories enter the
total. The default counts multiply-adds as multiplications, which is the paper's convention: convolutions, FC
layers and SE's scale, and nothing else. It reproduces every GFLOPs figure the paper prints for SE (ResNet-50
3.86 -> 3.87, VGG-16 15.47 -> 15.48, MobileNet 569 -> 572 M, ShuffleNet 140 -> 142 M, NoSqueeze 4.27). Pooling
(additions only: fvcore's one per input element, with ``pooling=True``), BatchNorm, activations, gates, residual
sums and the other elementwise products (category ``mul``: Inception-ResNet-v2's residual scaling ``out *
scale``, 11.54 M at 299x299) are left out unless asked for. fvcore itself counts convolutions and FC layers the
same way (timm's ``inception_resnet_v2``: 13.1558 G, seprobe's total), and by default adds BatchNorm and pooling
(13.1829 G).
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # fvcore's import calls the deprecated torch.jit.script
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import elementwise_flop_counter

from ..models.blocks import SEBlockInfo
from .settings import FlopConvention

# fvcore operator names (without "aten::") by category
CONV_OPS = {"conv"}
FC_OPS = {"linear", "addmm", "matmul", "mm", "bmm", "einsum"}
NORM_OPS = {"batch_norm", "group_norm", "layer_norm", "instance_norm"}
POOL_OPS = {"adaptive_avg_pool2d", "mean", "amax", "adaptive_max_pool2d", "std"}
ACT_OPS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "hardsigmoid", "hardsigmoid_",
           "hardswish", "hardswish_", "silu", "silu_", "gelu"}
MUL_OPS = {"mul", "mul_"}
ADD_OPS = {"add", "add_"}
#: data movement, no arithmetic: a pruned network's channel maps (seprobe.models.pruning.channel_maps) gather and
#: scatter channels by index
MOVE_OPS = {"index_select", "index_copy", "new_zeros"}


#: one operation per element of the first input (a pooling's adds or compares), fvcore's own elementwise handle
input_elements = elementwise_flop_counter(input_scale=1, output_scale=0)
#: one operation per element of the output (an activation, a product, a sum)
output_elements = elementwise_flop_counter(input_scale=0, output_scale=1)


DEFAULT = FlopConvention()


def _category(op: str) -> str:
    for name, ops in (("conv", CONV_OPS), ("fc", FC_OPS), ("norm", NORM_OPS), ("pool", POOL_OPS),
                      ("act", ACT_OPS), ("mul", MUL_OPS), ("add", ADD_OPS)):
        if op in ops:
            return name
    return "other"


@dataclass
class FlopCount:
    """One traced model: operations per category (whole model, and per SE block), and the operators left out."""

    by_category: Counter           # category -> operations; SE parts are "se_fc", "se_squeeze", ...
    per_block: dict[str, Counter]  # SE block name -> {"fc", "squeeze", "gate", "act", "scale", ...} -> operations
    unsupported: Counter           # aten operator -> number of calls, for operators with no cost formula

    def total(self, convention: FlopConvention = DEFAULT) -> int:
        return sum(v for k, v in self.by_category.items() if k in convention.categories())

    def se_total(self, convention: FlopConvention = DEFAULT) -> int:
        return sum(v for k, v in self.by_category.items() if k.startswith("se_") and k in convention.categories())

    def without_se(self) -> FlopCount:
        """The counts of the same graph without its SE blocks (SE preserves shapes, so nothing else changes)."""
        return FlopCount(Counter({k: v for k, v in self.by_category.items() if not k.startswith("se_")}), {},
                         Counter(self.unsupported))

    def excluded(self, convention: FlopConvention = DEFAULT) -> dict[str, int]:
        """Categories counted but left out of the total by the convention, with their operations."""
        return {k: v for k, v in self.by_category.items() if k not in convention.categories() and v}


#: category -> part of a block's channel gate, and of its spatial gate
_CHANNEL_PARTS = {"conv": "fc", "fc": "fc", "pool": "squeeze", "mul": "scale", "act": "act"}
_SPATIAL_PARTS = {"conv": "spatial_conv", "fc": "spatial_conv", "pool": "spatial_pool", "mul": "spatial_scale",
                  "act": "spatial_gate", "norm": "spatial_norm"}


def _se_parts(ops: dict[str, Counter], block: SEBlockInfo) -> Counter:
    whole = ops.get(block.path, Counter())
    gate = sum(ops.get(block.gate_path, Counter()).values())
    parts = Counter()
    for op, n in whole.items():
        cat = _category(op)
        parts[_CHANNEL_PARTS.get(cat, cat)] += n
    parts["act"] -= gate
    parts["gate"] = gate
    if block.spatial_path is not None:
        for op, n in ops.get(block.spatial_path, Counter()).items():
            cat = _category(op)
            parts[_SPATIAL_PARTS.get(cat, f"spatial_{cat}")] += n
    return parts


def count_flops(model: nn.Module, inputs: torch.Tensor, blocks: list[SEBlockInfo] = ()) -> FlopCount:
    """Trace ``model`` on ``inputs`` with fvcore and count every operator, SE blocks apart.

    fvcore's own warnings (unsupported operators, uncalled modules, tracer notes) are silenced: the operators
    it cannot count are returned in ``unsupported`` instead.
    """
    analysis = FlopCountAnalysis(model, inputs)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    for op in ("mean", "amax", "adaptive_max_pool2d", "std"):
        analysis.set_op_handle(f"aten::{op}", input_elements)
    for op in ACT_OPS | MUL_OPS | ADD_OPS:
        analysis.set_op_handle(f"aten::{op}", output_elements)
    for op in MOVE_OPS:
        analysis.set_op_handle(f"aten::{op}", None)  # fvcore's way to say: no operation to count
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation and tracer warnings
        ops = analysis.by_module_and_operator()
        unsupported = analysis.unsupported_ops()

    rest = Counter(ops[""])
    per_block = {}
    for block in blocks:
        rest.subtract(ops.get(block.path, Counter()))
        if block.spatial_path is not None:
            rest.subtract(ops.get(block.spatial_path, Counter()))
        per_block[block.name] = _se_parts(ops, block)
    by_category = Counter()
    for path, module in model.named_modules():
        if getattr(module, "frozen_se_scale", False):  # an exported mean-ablated block: Eq. 4 with a constant s
            scale = ops.get(path, Counter())
            rest.subtract(scale)
            by_category["se_scale"] += sum(scale.values())
    for op, n in rest.items():
        by_category[_category(op)] += n
    for parts in per_block.values():
        for part, n in parts.items():
            by_category[f"se_{part}"] += n
    return FlopCount(+by_category, per_block, Counter(unsupported))
