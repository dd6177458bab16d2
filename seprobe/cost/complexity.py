"""What SE costs: multiply-adds and parameters of a model against the same network without SE.

Models are built on the ``meta`` device and given zeroed CPU memory
(:func:`~seprobe.models.factory.get_network` with ``zeros=True``): counting needs shapes, not values, so no
weight initialisation is paid for. An SE block preserves the shape of what it
recalibrates, so the network without SE is the SE model's graph less the SE blocks' own operators and
parameters: its counts are derived from the one trace (``trace_plain=True`` traces it separately instead;
the tests check that both agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import SeprobeError
from ..models.blocks import MIN_INPUT_SIZE, SEBlockInfo, find_blocks
from ..models.factory import ModelSource, get_network
from ..paper import PaperFigure, paper_figure
from .flops import FlopConvention, FlopCount, count_flops


@dataclass
class Complexity:
    """The counts of one model and of its counterpart without SE (``plain_*``; ``None`` for a plain model)."""

    model: str
    knobs: dict[str, Any]
    input_size: int
    convention: FlopConvention
    params: int
    flops: FlopCount
    blocks: list[SEBlockInfo]
    plain_model: str | None = None
    plain_params: int | None = None
    plain_flops: FlopCount | None = None
    paper: PaperFigure | None = None

    @property
    def total(self) -> int:
        return self.flops.total(self.convention)

    @property
    def plain_total(self) -> int | None:
        return self.plain_flops.total(self.convention) if self.plain_flops else None


def measure(model: str | ModelSource, *, input_size: int | None = None, convention: FlopConvention | None = None,
            trace_plain: bool = False, **knobs: Any) -> Complexity:
    """Count one model (a name with knobs, or a :class:`~seprobe.models.factory.ModelSource`) and, for an SE
    model, the same network without SE. ``input_size`` defaults to the model's own (224; 299 for
    Inception-ResNet-v2; a foreign model's pretrained crop)."""
    source = model if isinstance(model, ModelSource) else ModelSource(model, "random", knobs)
    convention = convention or FlopConvention()
    net = get_network(source, zeros=True)
    spec = source.spec
    input_size = input_size or net.input_size
    smallest = spec.min_input_size if spec else MIN_INPUT_SIZE
    if input_size < smallest:
        raise SeprobeError(f"invalid input_size {input_size} for {source.name}; valid: an integer >= {smallest}",
                           argument="input_size")
    blocks = net.blocks if input_size == net.input_size else find_blocks(net.model, input_size)
    x = torch.zeros(1, 3, input_size, input_size)
    name = source.name if net.ablated is None else net.name
    result = Complexity(name, dict(source.knobs), input_size, convention, _params(net.model),
                        count_flops(net.model, x, blocks), blocks)
    # an exported (pruned or ablated) network's counterpart without SE is its own graph less its SE blocks, not
    # the registered network without SE
    plain = source.plain() if net.ablated is None else None
    if plain is not None and trace_plain:
        plain_net = get_network(plain, zeros=True)
        result.plain_model = plain.name
        result.plain_params, result.plain_flops = _params(plain_net.model), count_flops(plain_net.model, x)
    elif plain is not None or ((source.foreign or net.ablated is not None) and blocks):
        result.plain_model = plain.name if plain is not None else f"{net.name} without SE"
        result.plain_params = result.params - sum(b.params for b in blocks)
        result.plain_flops = result.flops.without_se()
    if spec is not None and input_size == spec.input_size and net.ablated is None:
        result.paper = paper_figure(source.name, source.knobs, spec.family)
    return result


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
