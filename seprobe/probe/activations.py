"""Collect the excitation values of a trained SE network over labelled images (the paper's Sec. 7.2).

Forward hooks on the gate modules read ``s`` (Eq. 3) for every image and stream it into
:class:`~seprobe.probe.gate_stats.GateStats`; the same pass scores the model's top-1 / top-5 on the evaluation crops.
A block with CBAM's spatial gate has its map ``M_s`` (``N x 1 x H x W``) read too, every position of every image a
value (:attr:`ActivationRun.spatial`, a ``GateStats`` with ``positions=True``: mean, standard deviation, minimum and
maximum over positions and images, per class, merged across ranks as the channel gates' are).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..data.imagenet_classes import resolve_class
from ..data.images import LabelledImages
from ..errors import SeprobeError, check_int
from ..models.blocks import SEBlockInfo, gate_range
from ..models.factory import Network
from .evaluation import ImagePass, Loader, score, scored
from .gate_stats import GateStats
from .hooks import GateHooks

if TYPE_CHECKING:
    import pandas as pd

#: The blocks of the paper's Fig. 6: the last block of stages 2-4 (just before downsampling), and stage 5.
PAPER_BLOCKS = ("SE_2_3", "SE_3_4", "SE_4_6", "SE_5_1", "SE_5_2", "SE_5_3")


def choose_classes(images: LabelledImages, classes: Sequence[str | int]) -> list[int]:
    """The label indices of ``classes`` (ImageNet names, wnids or indices; folder names for other trees), in
    the order given, duplicates dropped; each must have images."""
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise SeprobeError(f"invalid classes {classes!r}; valid: a list of class names, e.g. ['goldfish', 'pug']",
                           argument="classes")
    chosen: list[int] = []
    for item in classes:
        if images.imagenet:
            index = resolve_class(item)
        elif item in images.class_names:
            index = images.class_names.index(item)
        else:
            raise SeprobeError(f"unknown class {item!r}; valid: {', '.join(images.class_names[:20])}",
                               argument="classes")
        if index not in chosen:
            chosen.append(index)
    if not chosen:
        raise SeprobeError("no class given; valid: one or more class names, wnids or indices, e.g. goldfish, pug",
                           argument="classes")
    present = set(images.labels)
    for c in chosen:
        if c not in present:
            raise SeprobeError(f"no image of class {images.class_names[c]!r} in the data; valid: classes present "
                               "in the data", argument="classes")
    return chosen


def choose_blocks(blocks: Sequence[SEBlockInfo], stages: Sequence[int] | None = None,
                  names: Sequence[str] | None = None) -> list[str]:
    """The blocks to show: ``names``, else those of ``stages``, else the paper's set where the model has all of
    it, else every block. An empty list of names or stages is an error, like an unknown one."""
    known = [b.name for b in blocks]
    if names is not None:
        if isinstance(names, str) or not names:
            raise SeprobeError(f"invalid blocks {names!r}; valid: a non-empty list of block names from "
                               f"{', '.join(known)}", argument="blocks")
        for n in names:
            if n not in known:
                raise SeprobeError(f"unknown block {n!r}; valid: {', '.join(known)}", argument="blocks")
        return list(dict.fromkeys(names))
    if stages is not None:
        shown = [b.name for b in blocks if b.stage in stages]
        if not shown:
            valid = ", ".join(map(str, sorted({b.stage for b in blocks})))
            raise SeprobeError(f"no SE block in stage {', '.join(map(str, stages)) or '(none given)'}; valid: "
                               f"{valid}", argument="stage")
        return shown
    return list(PAPER_BLOCKS) if set(PAPER_BLOCKS) <= set(known) else known


@dataclass
class ActivationRun:
    """What one pass over the images measured: the gate statistics of ``blocks`` and the accuracy."""

    network: Network
    blocks: list[SEBlockInfo]
    images: LabelledImages
    views: int
    stats: GateStats
    evaluated: int = 0
    top1: float | None = None
    top5: float | None = None
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    per_position: bool = False  # NoSqueeze gates, averaged over positions
    spatial: GateStats | None = None  # CBAM's spatial maps, by block name (None: no block of ``blocks`` has one)


def collect(network: Network, images: LabelledImages, loader: Loader = Loader(), *, views: int = 1,
            blocks: Sequence[str] | None = None, progress: bool = True, seed: int = 0,
            with_gates: bool = True) -> ActivationRun:
    """One pass over ``images`` (``views`` crops each): gate statistics of every SE block (or of ``blocks``),
    and accuracy (``with_gates=False``: accuracy only, for any classifier); the spatial maps' statistics of the
    blocks with CBAM's spatial gate (:attr:`ActivationRun.spatial`).

    Under torchrun each rank takes its own contiguous share of the batches on its own device
    (:class:`~seprobe.probe.evaluation.ImagePass`), and the statistics, counts and failures are combined, so every
    rank returns the run of one process over all the images.
    """
    check_int("views", views)
    chosen = _chosen_blocks(network, blocks) if with_gates else []
    images_pass = ImagePass(images, network.preprocessing, loader, views=views, seed=seed, progress=progress,
                            desc="gates" if with_gates else "accuracy")
    model = network.model.to(images_pass.device).eval()
    stats = GateStats({b.name: (b.channels, *gate_range(model, b)) for b in chosen}, len(images.class_names))
    mapped = [b for b in chosen if b.spatial_name]
    # a spatial gate is a sigmoid (SpatialGate): its values lie in [0, 1]
    spatial = GateStats({b.name: (1, 0.0, 1.0) for b in mapped}, len(images.class_names),
                        positions=True) if mapped else None
    run = ActivationRun(network, chosen, images, views, stats, spatial=spatial)
    correct1 = correct5 = evaluated = 0
    start = time.perf_counter()
    with GateHooks(model, chosen) as hooks, torch.inference_mode():
        for batch in images_pass:
            logits = model(batch.x)
            for b in chosen:  # in network order: the first non-finite block is named
                stats.update(b.name, hooks.values[b.name], batch.labels)
                if b.spatial_name:
                    spatial.update(b.name, hooks.values[b.spatial_name], batch.labels)
            images_pass.check_finite(logits, batch, network.name)
            if scored(images, logits.shape[1]):
                first = (batch.index % views) == 0  # accuracy on the evaluation crop only
                _, hit1, hit5 = score(logits[first.to(logits.device)], batch.labels[first])
                correct1, correct5 = correct1 + int(hit1.sum()), correct5 + int(hit5.sum())
                evaluated += int(first.sum())
        per_position = any(v.dim() > 2 and v.shape[-1] > 1 for name, v in hooks.values.items()
                           if name in hooks.blocks)
    world = images_pass.world
    stats.merge_ranks(world)
    if spatial is not None:
        spatial.merge_ranks(world)
    correct1, correct5, run.evaluated = world.sum(correct1, correct5, evaluated)
    images_pass.finish()
    run.failed = images_pass.failed
    run.seconds = time.perf_counter() - start
    run.per_position = per_position
    if run.evaluated:
        run.top1, run.top5 = correct1 / run.evaluated, correct5 / run.evaluated
    return run


def _chosen_blocks(network: Network, blocks: Sequence[str] | None) -> list[SEBlockInfo]:
    if not network.blocks:
        raise SeprobeError(f"{network.name} has no SE block that seprobe can find; valid: a model with SE "
                           "(seprobe se_*, timm SEModule/SqueezeExcite, torchvision SqueezeExcitation)")
    if blocks is None:
        return list(network.blocks)
    wanted = [network.block(name).name for name in blocks]
    return [b for b in network.blocks if b.name in wanted]


def specificity_table(run: ActivationRun, classes: list[int]) -> pd.DataFrame:
    """Per block: how class-specific its gates are (:meth:`~seprobe.probe.gate_stats.GateStats.class_specificity`
    and the other scores of the activations summary), and how far each class in ``classes`` lies from the rest."""
    import pandas as pd

    rows = []
    for g in run.blocks:
        b = run.stats.blocks[g.name]
        overall_mean, overall_std = b.mean[run.stats.all_group], b.std()[run.stats.all_group]
        row = {"block": g.name, "stage": g.stage, "channels": g.channels,
               "class_specificity": run.stats.class_specificity(g.name),
               "between_class_std": run.stats.between_class_std(g.name),
               "share_above_0.9": run.stats.fraction_above(g.name, 0.9),
               "mean_gate": float(overall_mean.mean()), "mean_channel_std": float(np.nanmean(overall_std))}
        for c in classes:
            # how far the class's mean gates lie from the all-classes means, in all-classes standard deviations
            with np.errstate(invalid="ignore", divide="ignore"):
                z = np.abs(b.mean[c] - overall_mean) / overall_std
            row[f"deviation_{run.images.class_names[c]}"] = float(np.nanmean(z)) if np.isfinite(z).any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
