"""What each SE block of a network costs, and what an ablation of it saves (``seprobe ablate``'s cost columns)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..models.blocks import SEBlockInfo
from .flops import DEFAULT, count_flops


@dataclass(frozen=True)
class BlockCost:
    """What one SE block costs: its parameters, its multiply-adds (the ``seprobe complexity --per-block``
    counting), and those of its scale (Eq. 4), which a ``mean`` (or ``constant``) block keeps unless folded;
    ``channels``: the parameters such a kept scale has. A CBAM block's spatial gate is a gate of its own
    (``<block>.spatial``), which an ablation of the block's channel gate keeps: its cost is its own entry (its
    convolution and BatchNorm, the map's pooling, gate and scale; a frozen map keeps its scale, one parameter)."""

    params: int
    macs: int
    scale_macs: int
    channels: int


def block_costs(model: nn.Module, blocks: Sequence[SEBlockInfo],
                input_size: int) -> tuple[dict[str, BlockCost], int, int]:
    """Per block cost, and the whole model's multiply-adds and parameters, at one ``input_size`` image."""
    device = next(model.parameters()).device
    count = count_flops(model, torch.zeros(1, 3, input_size, input_size, device=device), list(blocks))
    counted = DEFAULT.categories()
    costs = {}
    for g in blocks:
        parts = count.per_block[g.name]
        costs[g.name] = BlockCost(
            params=sum(p.numel() for p in model.get_submodule(g.path).parameters()),
            macs=sum(v for part, v in parts.items() if f"se_{part}" in counted and not part.startswith("spatial_")),
            scale_macs=parts.get("scale", 0) if "se_scale" in counted else 0,
            channels=g.channels)
        if g.spatial_name:
            costs[g.spatial_name] = BlockCost(
                params=sum(p.numel() for p in model.get_submodule(g.spatial_path).parameters()),
                macs=sum(v for part, v in parts.items() if f"se_{part}" in counted and part.startswith("spatial_")),
                scale_macs=parts.get("spatial_scale", 0) if "se_spatial_scale" in counted else 0,
                channels=1)
    return costs, count.total(DEFAULT), sum(p.numel() for p in model.parameters())


def saved(costs: dict[str, BlockCost], blocks: Iterable[str], mode: str,
          folded: bool | Mapping[str, bool]) -> tuple[int, int]:
    """Parameters and multiply-adds an ablation saves: all of an identity or folded mean (or constant) block's; a
    mean or constant block kept as a scale keeps ``C`` parameters (a spatial gate: one) and one multiply per
    element. ``folded``: for every block, or block by block (a block missing from the mapping is not folded)."""
    params = macs = 0
    for b in blocks:
        c = costs[b]
        keeps = mode in ("mean", "constant") and not (folded.get(b, False) if isinstance(folded, Mapping) else folded)
        params += c.params - (c.channels if keeps else 0)
        macs += c.macs - (c.scale_macs if keeps else 0)
    return params, macs
