"""What ``seprobe ablate`` evaluates: the network with chosen SE blocks' gates replaced (:mod:`~seprobe.probe.hooks`).

:class:`AblationPlan` holds the choice, checked once when it is made: the modes (``identity``: ``s = 1``;
``mean``: ``s_c = E[s_c]`` over calibration images; ``constant``: ``s = 1/2``), every block alone, a set as one
(``blocks`` or ``stage``), each stage's blocks together, and a cumulative curve that removes blocks one after
another in a stated order. :meth:`AblationPlan.evaluations` turns it into :class:`Ablation` s for one network's
blocks.

CBAM's spatial gate (``M_s``, after the channel gate) is a gate of its own, named by its block's name and
``.spatial`` (``SE_2_1.spatial``; the block's name alone is its channel gate, as for every other network): a
list of blocks (``blocks``, a ``cumulative`` order) may name it, and ``gates`` says which gates the sweeps take
(every block alone, ``stage``, ``per_stage``, a ``cumulative`` order by name): ``channel`` (the default: the
channel gates, as without CBAM), ``spatial`` or ``all`` (each gate a unit of its own). The modes are those of a
channel gate: ``M_s = 1`` (identity), its calibration mean (one number per block, see
:mod:`~seprobe.probe.calibration`), ``M_s = 1/2`` (constant).
:class:`CalibrationSource` says where the ``mean`` mode's images come from, :class:`Resampling` how the paired
bootstrap of :mod:`~seprobe.probe.bootstrap` resamples.

Both are option dataclasses (:mod:`seprobe.schema`): the command line's options and a study's ``[ablation]``
keys are their fields. Torch-free, so that the command line checks them before torch is imported.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from ..choices import BOTH_MODES, GATE_SETS, REPLACEMENTS, SPATIAL_SUFFIX
from ..defaults import BOOTSTRAP
from ..errors import SeprobeError, check_choice
from ..schema import Bool, Choice, Custom, Int, Items, Options, PathText

if TYPE_CHECKING:
    import pandas as pd

    from ..data.images import ImageSource
    from ..models.blocks import SEBlockInfo

#: the ablation modes: the gate replacements of :mod:`~seprobe.probe.hooks`
MODES = REPLACEMENTS
#: which gates the sweeps take: the channel gates, CBAM's spatial gates, or both kinds
GATES = GATE_SETS
#: how a stage's set is labelled, by the gates it holds
_STAGE_LABEL = {"channel": "", "spatial": " (spatial)", "all": " (all gates)"}
#: how the cumulative curve orders the blocks: by the single-block KL or top-1 drop (least important first),
#: or in network order (first to last) or its reverse.
ORDERS = ("kl", "top1", "network", "reverse")


@dataclass(frozen=True)
class Ablation:
    """One evaluation of the network with ``blocks`` (gate names: a block's, or ``<block>.spatial``) replaced by
    ``mode``.

    ``group`` says how it was chosen: ``block`` (one block alone), ``set`` (a chosen set as one), ``stage``
    (one stage's blocks) or ``cumulative`` (the first ``step`` blocks of the cumulative order).
    """

    label: str
    group: str
    mode: str
    blocks: tuple[str, ...]
    step: int | None = None


def block_names(argument: str, value: Any) -> tuple[str, ...]:
    """A non-empty list of block names, each once."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not value \
            or not all(isinstance(v, str) for v in value):
        raise SeprobeError(f"invalid {argument} {value!r}; valid: a non-empty list of block names such as "
                           "['SE_5_1', 'SE_5_2']", argument=argument)
    if len(set(value)) != len(value):
        raise SeprobeError(f"invalid {argument} {list(value)!r}: a block is named twice; valid: each block once",
                           argument=argument)
    return tuple(value)


def split_names(argument: str, text: str) -> list[str]:
    """``"SE_5_1,SE_5_2"`` as the command line and a study file write a list of names; text that names nothing
    is an error naming the text."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise SeprobeError(f"invalid {argument} {text!r}; valid: comma-separated names", argument=argument)
    return names


#: a list of SE blocks by name: an array, or on the command line (and in a study) comma-separated
BLOCKS = Custom(checker=block_names, parser=split_names, own_error=True, metavar="SE_s_b,...",
                description="a string such as \"SE_5_1,SE_5_2\" or an array of strings")


def _modes(argument: str, values: tuple) -> tuple[str, ...]:
    if not values:
        raise SeprobeError(f"invalid {argument} (); valid: a non-empty list of {', '.join(MODES)}",
                           argument=argument)
    return tuple(m for m in MODES if m in values)


def _parse_modes(argument: str, text: str) -> tuple[str, ...]:
    return BOTH_MODES if text.strip() == "both" else tuple(split_names(argument, text))


def _cumulative(argument: str, value: Any) -> str | tuple[str, ...]:
    if isinstance(value, str):
        return check_choice("cumulative order", value, ORDERS, argument=argument)
    return block_names(argument, value)


def _parse_cumulative(argument: str, text: str) -> str | list[str]:
    return text if text in ORDERS else split_names(argument, text)


@dataclass(frozen=True)
class AblationPlan(Options):
    """Which ablations to evaluate.

    ``modes``: a list of :data:`MODES` (``None``: identity and mean when calibration images are given, else
    ``identity``; ``both`` on the command line is identity and mean); ``blocks`` / ``stage``: one set ablated as
    one; ``per_stage``: each stage's blocks together; ``each_block``: every block alone (``None``: when no set is
    chosen, or when ``cumulative`` orders by single-block results); ``cumulative``: an order of :data:`ORDERS` or
    a list of blocks, removed one after another. Block names are gate names: ``SE_2_1`` the block's channel
    gate, ``SE_2_1.spatial`` CBAM's spatial gate after it. ``gates``: which gates the sweeps take (every block
    alone, ``stage``, ``per_stage``, a cumulative order by name): ``channel``, ``spatial`` (CBAM's) or ``all``.
    """

    modes: Annotated[tuple[str, ...] | None, Items(
        item=Choice(choices=MODES), rule=_modes, parser=_parse_modes, example="identity,mean", item_name="mode",
        flags=("--mode",), metavar="identity|mean|constant|both",
        help="identity: gate = 1; mean: gate = its calibration mean; constant: gate = 1/2; both: identity,mean "
             "[default: both with calibration images, else identity]")] = None
    blocks: Annotated[tuple[str, ...] | None, dataclasses.replace(BLOCKS, help="ablate these blocks as one set")] = None
    stage: Annotated[int | None, Int(1, metavar="S", help="ablate this stage's blocks as one set")] = None
    per_stage: Annotated[bool, Bool(flags=("--per-stage",), help="each stage's blocks together")] = False
    each_block: Annotated[bool | None, Bool(flags=("--each-block/--no-each-block",),
                                            help="every block alone [default: unless a set is given]")] = None
    cumulative: Annotated[str | tuple[str, ...] | None, Custom(
        checker=_cumulative, parser=_parse_cumulative,
        own_error=True, metavar="ORDER", description=f"one of {', '.join(ORDERS)}, or a list of block names",
        help="remove blocks one after another: kl, top1, network, reverse, or SE_a,SE_b,...")] = None
    gates: Annotated[str, Choice(
        choices=GATES, what="gate set", metavar="channel|spatial|all",
        help="the gates the sweeps (every block alone, --stage, --per-stage, a cumulative order) take: channel, "
             "CBAM's spatial (named SE_s_b.spatial) or all")] = "channel"

    def validate(self) -> None:
        if self.cumulative in ("kl", "top1") and self.each_block is False:
            raise SeprobeError(f"cumulative {self.cumulative!r} orders blocks by their single-block results; valid: "
                               "keep every block alone in the sweep, or order network / reverse / a block list",
                               argument="cumulative")
        if not self.single and self.blocks is None and self.stage is None and not self.per_stage \
                and self.cumulative is None:
            raise SeprobeError("nothing to ablate; valid: every block alone (the default), blocks, stage, per_stage "
                               "or cumulative", argument="each_block")
        if self.gates != "channel" and not self.single and self.stage is None and not self.per_stage \
                and not isinstance(self.cumulative, str):
            raise SeprobeError(f"gates {self.gates!r} chooses the gates of the sweeps (every block alone, stage, "
                               "per_stage, a cumulative order by name), and none is asked; valid: name the spatial "
                               "gates in blocks (such as SE_2_1.spatial), or a sweep", argument="gates")

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
        return BOTH_MODES if calibrated else ("identity",)

    def chosen_set(self, blocks: Sequence[SEBlockInfo]) -> tuple[str, ...] | None:
        """The set of ``blocks`` / ``stage`` as block names in network order (``None``: neither given)."""
        if self.blocks is not None:
            return in_network_order(blocks, self.blocks)
        if self.stage is not None:
            return stage_blocks(blocks, self.stage, self.gates)
        return None

    def evaluations(self, blocks: Sequence[SEBlockInfo], modes: Sequence[str]) -> list[Ablation]:
        """The ablations of the first phase (all but the cumulative curve), for each mode."""
        chosen = self.chosen_set(blocks)
        plan = []
        for mode in modes:
            if self.single:
                plan += [Ablation(name, "block", mode, (name,)) for name in gate_names(blocks, self.gates)]
            if self.blocks is not None:
                plan.append(Ablation("+".join(chosen), "set", mode, chosen))
            if self.stage is not None:
                plan.append(Ablation(f"stage {self.stage}{_STAGE_LABEL[self.gates]}", "set", mode, chosen))
            if self.per_stage:
                plan += [Ablation(f"stage {s}{_STAGE_LABEL[self.gates]}", "stage", mode,
                                  stage_blocks(blocks, s, self.gates)) for s in _stages(blocks, self.gates)]
        return plan

    def check(self, blocks: Sequence[SEBlockInfo]) -> None:
        """Every block or stage named is one of the network's, and the network has the gates ``gates`` takes."""
        if self.gates != "channel" and not any(b.spatial_name for b in blocks):
            raise SeprobeError(f"invalid gates {self.gates!r}: no block of this network has a spatial gate (only "
                               "CBAM's have one); valid: gates 'channel' (the channel gates), or a network with "
                               "CBAM's spatial gate (attention 'cbam')", argument="gates")
        self.chosen_set(blocks)
        if self.cumulative is not None and not isinstance(self.cumulative, str):
            in_network_order(blocks, self.cumulative, argument="cumulative")


def gate_names(blocks: Sequence[SEBlockInfo], gates: str = "all") -> list[str]:
    """The names of the gates of ``blocks`` that ``gates`` (:data:`GATES`) takes, in network order: a block's
    channel gate under the block's name, then its spatial gate (CBAM's) under ``<block>.spatial``."""
    names = []
    for b in blocks:
        if gates in ("channel", "all"):
            names.append(b.name)
        if gates in ("spatial", "all") and b.spatial_name:
            names.append(b.spatial_name)
    return names


def in_network_order(blocks: Sequence[SEBlockInfo], names: Sequence[str], argument: str = "blocks") -> tuple[str, ...]:
    """``names``, each a gate of the network (a block's name, or ``<block>.spatial`` for CBAM's spatial gate), in
    network order."""
    known = gate_names(blocks)
    plain = {b.name for b in blocks}
    for n in names:
        if n not in known:
            base = n.removesuffix(SPATIAL_SUFFIX)
            if n != base and base in plain:
                raise SeprobeError(f"invalid block {n!r} in {argument}: {base} has no spatial gate (only CBAM's "
                                   f"have one); valid: {', '.join(known)}", argument=argument)
            raise SeprobeError(f"unknown block {n!r}; valid: {', '.join(known)}", argument=argument)
    return tuple(n for n in known if n in names)


def _stages(blocks: Sequence[SEBlockInfo], gates: str) -> list[int]:
    """The stages with a gate that ``gates`` takes."""
    return sorted({b.stage for b in blocks if gates != "spatial" or b.spatial_name})


def stage_blocks(blocks: Sequence[SEBlockInfo], stage: int, gates: str = "channel") -> tuple[str, ...]:
    """The gates ``gates`` takes of the blocks of ``stage``, in network order."""
    found = tuple(gate_names([b for b in blocks if b.stage == stage], gates))
    if not found:
        valid = ", ".join(map(str, _stages(blocks, gates)))
        raise SeprobeError(f"no SE block in stage {stage}; valid: {valid}", argument="stage")
    return found


def cumulative_order(blocks: Sequence[SEBlockInfo], singles: pd.DataFrame | None, mode: str,
                     by: str | Sequence[str], gates: str = "channel") -> list[str]:
    """The gates (those ``gates`` takes) in the order the cumulative curve removes them: a given list as it is;
    ``kl`` / ``top1``: least important first, by the single-block mean KL or top-1 change of ``mode`` (ties in
    network order); ``network`` / ``reverse``."""
    if not isinstance(by, str):
        return list(by)
    check_choice("cumulative order", by, ORDERS, argument="cumulative")
    names = gate_names(blocks, gates)
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


@dataclass(frozen=True)
class CalibrationSource(Options):
    """Where the ``mean`` mode's calibration images come from: ``calibration_per_class`` images of every class
    taken out of the evaluation data (first in path order), or a separate folder ``calibration_data`` (with its
    ``calibration_labels`` file, and ``calibration_samples_per_class`` of each class), which must not share an
    image with the evaluation set unless ``allow_overlap``; ``calibration_views`` crops of each image."""

    calibration_per_class: Annotated[int | None, Int(
        1, flags=("--calibration",), metavar="N",
        help="calibration: N images per class taken out of --data (ablate's mean mode, prune's scores)")] = None
    calibration_data: Annotated[str | os.PathLike | None, PathText(
        metavar="DIR", help="calibration: separate images")] = None
    calibration_labels: Annotated[str | os.PathLike | None, PathText(
        metavar="FILE", help="labels of --calibration-data")] = None
    calibration_samples_per_class: Annotated[int | None, Int(
        1, metavar="N", help="images per class of --calibration-data")] = None
    calibration_views: Annotated[int, Int(1, metavar="K", help="views per calibration image")] = 1
    allow_overlap: Annotated[bool, Bool(flags=("--allow-overlap",),
                                        help="calibration may share evaluation images")] = False

    def validate(self) -> None:
        if self.calibration_per_class is not None and self.calibration_data is not None:
            raise SeprobeError("calibration_per_class (images per class) and calibration_data (a folder) both "
                               "given; valid: one of them", argument="calibration_per_class")
        for name in ("calibration_labels", "calibration_samples_per_class"):
            if getattr(self, name) is not None and self.calibration_data is None:
                raise SeprobeError(f"{name} without calibration_data; valid: both, or neither", argument=name)
        if self.calibration_per_class is None and self.calibration_data is None:
            raise SeprobeError("no calibration images; valid: calibration_per_class (images per class taken out "
                               "of the data) or calibration_data (a folder)", argument="calibration_per_class")

    @property
    def images(self) -> ImageSource | None:
        """The separate set, if one is given (read with :meth:`~seprobe.data.images.ImageSource.read`)."""
        if self.calibration_data is None:
            return None
        from ..data.images import ImageSource

        return ImageSource(self.calibration_data, self.calibration_labels, self.calibration_samples_per_class,
                           arguments=("calibration_data", "calibration_labels"))


@dataclass(frozen=True)
class Resampling(Options):
    """How the paired bootstrap resamples: ``bootstrap`` resamples of the images, drawn from ``seed`` (numpy's
    generators take any integer >= 0)."""

    bootstrap: Annotated[int, Int(1, metavar="N", help="paired-bootstrap resamples")] = BOOTSTRAP
    seed: Annotated[int, Int(0, metavar="N", help="bootstrap seed")] = 0
