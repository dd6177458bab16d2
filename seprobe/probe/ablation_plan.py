"""What ``seprobe ablate`` evaluates: the network with chosen SE blocks' gates replaced (:mod:`~seprobe.probe.hooks`).

:class:`AblationPlan` holds the choice, checked once when it is made: the modes (``identity``: ``s = 1``;
``mean``: ``s_c = E[s_c]`` over calibration images), every block alone, a set as one (``blocks`` or ``stage``),
each stage's blocks together, and a cumulative curve that removes blocks one after another in a stated order.
:meth:`AblationPlan.evaluations` turns it into :class:`Ablation` s for one network's blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ..errors import SeprobeError, check_bool, check_choice, check_int
from ..models.blocks import SEBlockInfo
from .hooks import REPLACEMENTS

#: the ablation modes: the gate replacements of :mod:`~seprobe.probe.hooks`
MODES = REPLACEMENTS
#: how the cumulative curve orders the blocks: by the single-block KL or top-1 drop (least important first),
#: or in network order (first to last) or its reverse.
ORDERS = ("kl", "top1", "network", "reverse")


@dataclass(frozen=True)
class Ablation:
    """One evaluation of the network with ``blocks`` replaced by ``mode``.

    ``group`` says how it was chosen: ``block`` (one block alone), ``set`` (a chosen set as one), ``stage``
    (one stage's blocks) or ``cumulative`` (the first ``step`` blocks of the cumulative order).
    """

    label: str
    group: str
    mode: str
    blocks: tuple[str, ...]
    step: int | None = None


def _names(argument: str, value) -> tuple[str, ...]:
    """A non-empty list of block names, each once."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not value \
            or not all(isinstance(v, str) for v in value):
        raise SeprobeError(f"invalid {argument} {value!r}; valid: a non-empty list of block names such as "
                           "['SE_5_1', 'SE_5_2']", argument=argument)
    if len(set(value)) != len(value):
        raise SeprobeError(f"invalid {argument} {list(value)!r}: a block is named twice; valid: each block once",
                           argument=argument)
    return tuple(value)


@dataclass(frozen=True)
class AblationPlan:
    """Which ablations to evaluate.

    ``modes``: a list of :data:`MODES` (``None``: both when calibration images are given, else ``identity``);
    ``blocks`` / ``stage``: one set ablated as one; ``per_stage``: each stage's blocks together; ``each_block``:
    every block alone (``None``: when no set is chosen, or when ``cumulative`` orders by single-block results);
    ``cumulative``: an order of :data:`ORDERS` or a list of blocks, removed one after another.
    """

    modes: Sequence[str] | None = None
    blocks: Sequence[str] | None = None
    stage: int | None = None
    per_stage: bool = False
    each_block: bool | None = None
    cumulative: str | Sequence[str] | None = None

    def __post_init__(self):
        if self.modes is not None:
            if isinstance(self.modes, str) or not isinstance(self.modes, Sequence) or not self.modes:
                raise SeprobeError(f"invalid modes {self.modes!r}; valid: a non-empty list of {', '.join(MODES)}",
                                   argument="modes")
            for m in self.modes:
                check_choice("ablation mode", m, MODES, argument="modes")
            object.__setattr__(self, "modes", tuple(m for m in MODES if m in self.modes))
        if self.blocks is not None:
            object.__setattr__(self, "blocks", _names("blocks", self.blocks))
        check_int("stage", self.stage)
        check_bool("per_stage", self.per_stage)
        if self.each_block is not None:
            check_bool("each_block", self.each_block)
        if isinstance(self.cumulative, str):
            check_choice("cumulative order", self.cumulative, ORDERS, argument="cumulative")
        elif self.cumulative is not None:
            object.__setattr__(self, "cumulative", _names("cumulative", self.cumulative))
        if self.cumulative in ("kl", "top1") and self.each_block is False:
            raise SeprobeError(f"cumulative {self.cumulative!r} orders blocks by their single-block results; valid: "
                               "keep every block alone in the sweep, or order network / reverse / a block list",
                               argument="cumulative")
        if not self.single and self.blocks is None and self.stage is None and not self.per_stage \
                and self.cumulative is None:
            raise SeprobeError("nothing to ablate; valid: every block alone (the default), blocks, stage, per_stage "
                               "or cumulative", argument="each_block")

    @property
    def single(self) -> bool:
        """Whether every block is evaluated alone."""
        if self.each_block is not None:
            return self.each_block
        return (self.blocks is None and self.stage is None and not self.per_stage) or self.cumulative in ("kl", "top1")

    def resolve_modes(self, calibrated: bool) -> tuple[str, ...]:
        """The modes run: those given, else both when calibration images are given, else ``identity``."""
        if self.modes is not None:
            return tuple(self.modes)
        return MODES if calibrated else ("identity",)

    def chosen_set(self, blocks: Sequence[SEBlockInfo]) -> tuple[str, ...] | None:
        """The set of ``blocks`` / ``stage`` as block names in network order (``None``: neither given)."""
        if self.blocks is not None:
            return in_network_order(blocks, self.blocks)
        if self.stage is not None:
            return stage_blocks(blocks, self.stage)
        return None

    def evaluations(self, blocks: Sequence[SEBlockInfo], modes: Sequence[str]) -> list[Ablation]:
        """The ablations of the first phase (all but the cumulative curve), for each mode."""
        chosen = self.chosen_set(blocks)
        plan = []
        for mode in modes:
            if self.single:
                plan += [Ablation(b.name, "block", mode, (b.name,)) for b in blocks]
            if self.blocks is not None:
                plan.append(Ablation("+".join(chosen), "set", mode, chosen))
            if self.stage is not None:
                plan.append(Ablation(f"stage {self.stage}", "set", mode, chosen))
            if self.per_stage:
                plan += [Ablation(f"stage {s}", "stage", mode, stage_blocks(blocks, s))
                         for s in sorted({b.stage for b in blocks})]
        return plan

    def check(self, blocks: Sequence[SEBlockInfo]) -> None:
        """Every block or stage named is one of the network's."""
        self.chosen_set(blocks)
        if self.cumulative is not None and not isinstance(self.cumulative, str):
            in_network_order(blocks, self.cumulative, argument="cumulative")


def in_network_order(blocks: Sequence[SEBlockInfo], names: Sequence[str], argument: str = "blocks") -> tuple[str, ...]:
    """``names``, each a block of the network, in network order."""
    known = [b.name for b in blocks]
    for n in names:
        if n not in known:
            raise SeprobeError(f"unknown block {n!r}; valid: {', '.join(known)}", argument=argument)
    return tuple(n for n in known if n in names)


def stage_blocks(blocks: Sequence[SEBlockInfo], stage: int) -> tuple[str, ...]:
    found = tuple(b.name for b in blocks if b.stage == stage)
    if not found:
        valid = ", ".join(map(str, sorted({b.stage for b in blocks})))
        raise SeprobeError(f"no SE block in stage {stage}; valid: {valid}", argument="stage")
    return found


def cumulative_order(blocks: Sequence[SEBlockInfo], singles: pd.DataFrame | None, mode: str,
                     by: str | Sequence[str]) -> list[str]:
    """The blocks in the order the cumulative curve removes them: a given list as it is; ``kl`` / ``top1``:
    least important first, by the single-block mean KL or top-1 change of ``mode`` (ties in network order);
    ``network`` / ``reverse``."""
    if not isinstance(by, str):
        return list(by)
    check_choice("cumulative order", by, ORDERS, argument="cumulative")
    names = [b.name for b in blocks]
    if by == "network":
        return names
    if by == "reverse":
        return names[::-1]
    rows = singles[(singles["group"] == "block") & (singles["mode"] == mode)].set_index("label")
    if by == "kl":
        key = {n: float(rows.loc[n, "kl"]) for n in names}
    else:  # the largest top-1 drop last; KL breaks ties, as it sees what a small set's accuracy cannot
        key = {n: (-float(rows.loc[n, "top1_change"]), float(rows.loc[n, "kl"])) for n in names}
    return sorted(names, key=lambda n: (key[n], names.index(n)))


def cumulative_plan(order: Sequence[str], mode: str) -> list[Ablation]:
    """Remove ``order[0]``, then ``order[:2]``, ... every block: the curve of "how much SE can go"."""
    return [Ablation(f"+{order[k]}", "cumulative", mode, tuple(order[: k + 1]), step=k + 1) for k in range(len(order))]
