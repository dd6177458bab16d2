"""From channel scores and a target to the channels kept (group name -> sorted indices), with the target measured
by the counter ``seprobe complexity`` uses (:func:`~seprobe.cost.flops.count_flops`), on the pruned network itself.

``global``: every channel of every group in one order, lowest normalised score first (each group's scores divided
by their mean, :mod:`~seprobe.pruning.plan`); the first ``k`` channels are pruned, a group never going below
``min_channels``. ``uniform``: every group keeps the same fraction ``f`` of its channels (its highest scored
``max(min_channels, round(f * width))``). For a fraction of the multiply-adds or parameters, ``k`` (or ``f``) is
found by bisection: the cost of the pruned network falls as ``k`` grows (or ``f`` shrinks), and each step counts
it exactly, so the network written meets the target; the smallest cost within reach is checked first, so that a
target out of reach is refused before any calibration image is read. Ties are broken by channel index (lower
kept first), so the result is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..cost.flops import FlopConvention, count_flops
from ..errors import SeprobeError
from ..models.blocks import SEBlockInfo
from ..models.pruning import ChannelGroup, prune_channels
from .plan import PrunePlan

Keep = dict[str, list[int]]


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int


class Counter:
    """The cost of ``model`` pruned to a keep set, at ``input_size``, as ``seprobe complexity`` counts it."""

    def __init__(self, model: nn.Module, blocks: Sequence[SEBlockInfo], input_size: int,
                 convention: FlopConvention | None = None):
        self.model, self.blocks, self.convention = model, list(blocks), convention or FlopConvention()
        self.x = torch.zeros(1, 3, input_size, input_size)
        self.calls = 0

    def __call__(self, keep: Mapping[str, list[int]]) -> Cost:
        model = prune_channels(self.model, keep) if keep else self.model
        self.calls += 1
        with torch.no_grad():
            macs = count_flops(model.eval(), self.x, self.blocks).total(self.convention)
        return Cost(sum(p.numel() for p in model.parameters()), macs)


def _top(scores: np.ndarray, n: int) -> list[int]:
    """The ``n`` highest-scored channels, sorted by index (ties: the lower index)."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    return sorted(int(i) for i in order[:n])


def normalised(scores: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each group's scores divided by their mean (left as they are where the mean is not positive)."""
    out = {}
    for name, s in scores.items():
        mean = float(np.mean(s))
        out[name] = s / mean if mean > 0 else s.astype(np.float64)
    return out


def removal_order(groups: Sequence[ChannelGroup], scores: Mapping[str, np.ndarray],
                  min_channels: int) -> list[tuple[str, int]]:
    """Global allocation's order: (group, channel), lowest normalised score first, each group's last
    ``min_channels`` channels (its highest scored) never in it."""
    norm = normalised(scores)
    entries = []
    for gi, g in enumerate(groups):
        protected = set(_top(norm[g.name], min(min_channels, g.width)))
        entries += [(float(norm[g.name][c]), gi, c) for c in range(g.width) if c not in protected]
    entries.sort()
    return [(groups[gi].name, c) for _, gi, c in entries]


def global_keep(groups: Sequence[ChannelGroup], order: Sequence[tuple[str, int]], k: int) -> Keep:
    removed: dict[str, set[int]] = {}
    for name, c in order[:k]:
        removed.setdefault(name, set()).add(c)
    return {g.name: [c for c in range(g.width) if c not in removed[g.name]] for g in groups if g.name in removed}


def uniform_keep(groups: Sequence[ChannelGroup], scores: Mapping[str, np.ndarray], fraction: float,
                 min_channels: int) -> Keep:
    keep = {}
    for g in groups:
        n = min(g.width, max(min_channels, round(fraction * g.width)))
        if n < g.width:
            keep[g.name] = _top(scores[g.name], n)
    return keep


def _bisect_int(lo: int, hi: int, fits: Callable[[int], bool]) -> int:
    """The smallest ``k`` in ``[lo, hi]`` with ``fits(k)``, ``fits`` monotone and ``fits(hi)`` true."""
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def smallest(groups: Sequence[ChannelGroup], min_channels: int) -> Keep:
    """Every group cut to ``min_channels`` (its first ones: the cost does not depend on which)."""
    return {g.name: list(range(min(min_channels, g.width))) for g in groups if min_channels < g.width}


def check_reachable(plan: PrunePlan, groups: Sequence[ChannelGroup], counter: Counter, full: Cost) -> None:
    """Refuse a target the groups cannot reach (before any image is read): cut to ``min_channels`` each, they
    keep more than the fraction asked of the channels, multiply-adds or parameters."""
    target, fraction = plan.target
    least = smallest(groups, plan.min_channels)
    if target == "keep_channels":
        what = "channels"
        reach = sum(len(least.get(g.name, range(g.width))) for g in groups) / sum(g.width for g in groups)
    else:
        what = "multiply-adds" if target == "keep_macs" else "parameters"
        cost = counter(least)
        reach = getattr(cost, target.removeprefix("keep_")) / getattr(full, target.removeprefix("keep_"))
    if reach > fraction:
        valid = [f"a fraction >= {math.ceil(reach * 1000) / 1000:g}"]
        if plan.min_channels > 1:
            valid.append("a smaller min_channels")
        if plan.scope == "gated":
            valid.append("scope 'all' (the inner widths too)")
        raise SeprobeError(f"{target} {fraction:g} is out of reach: cutting every {plan.scope} channel group to "
                           f"min_channels {plan.min_channels} keeps {reach:.3f} of the {what}; valid: "
                           f"{', or '.join(valid)}", argument=target)


def allocate(plan: PrunePlan, groups: Sequence[ChannelGroup], scores: Mapping[str, np.ndarray], counter: Counter,
             full: Cost) -> Keep:
    """The channels kept for ``plan``'s target (see the module's docstring)."""
    target, fraction = plan.target
    total = sum(g.width for g in groups)
    if plan.allocation == "global":
        order = removal_order(groups, scores, plan.min_channels)
        if target == "keep_channels":
            k = min(len(order), total - round(fraction * total))
            return global_keep(groups, order, max(k, 0))
        key = target.removeprefix("keep_")
        budget = fraction * getattr(full, key)
        k = _bisect_int(0, len(order), lambda k: getattr(counter(global_keep(groups, order, k)), key) <= budget)
        return global_keep(groups, order, k)
    if target == "keep_channels":
        return uniform_keep(groups, scores, fraction, plan.min_channels)
    key = target.removeprefix("keep_")
    budget = fraction * getattr(full, key)
    # the kept fraction f only matters through each group's rounded count: bisect over f on a grid fine enough
    # that every count is reached (1 / (2 * the widest group))
    steps = 2 * max(g.width for g in groups)
    s = _bisect_int(0, steps, lambda i: getattr(counter(uniform_keep(
        groups, scores, 1 - i / steps, plan.min_channels)), key) <= budget)
    return uniform_keep(groups, scores, 1 - s / steps, plan.min_channels)
