"""The calibration of the ``mean`` ablation: ``E[s_c]``, the per-channel mean of every gate over calibration
images that the evaluation does not see.

:class:`~seprobe.probe.ablation_plan.CalibrationSource` says where the images come from, checked once:
``calibration_per_class`` images of every class taken out of the evaluation data (first in path order), or a
separate set (``calibration_data``), which must not share an image with the evaluation set unless
``allow_overlap``; ``calibration_views`` crops of each. The mean is over every
calibration view alike (not a mean of class means): an estimate of ``E[s_c]`` on the data the network sees.

CBAM's spatial gate (``<block>.spatial``) gets one number per block: ``E[M_s]``, its map's mean over every
position of every calibration view, the value its ``mean`` ablation puts at every position. One scalar rather than
a map of per-position means because (1) the spatial gate has one channel, and a channel gate's mean is per channel
and the same at every position (NoSqueeze's per-position gates included), so a scalar is the same reading of
"the gate frozen to its mean"; (2) a map's positions hold no fixed content (objects move across images; the
network is translation-equivariant up to the 7x7 convolution's zero padding), so per-position means estimate
little beyond the borders' padding, from a small calibration set, with H x W times the values to estimate;
(3) a map of means is tied to one input size, where a scalar applies at any crop, and a scalar exports as a
one-parameter scale (:func:`~seprobe.models.ablated.ablated_copy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.images import LabelledImages
from ..errors import SeprobeError, check_int
from ..models.blocks import SEBlockInfo
from ..models.factory import Network
from .ablation_plan import CalibrationSource
from .activations import collect
from .evaluation import Loader


def split(source: CalibrationSource, evaluation: LabelledImages,
          images: LabelledImages | None = None) -> tuple[LabelledImages, LabelledImages, int]:
    """(calibration images, evaluation images, images they share) of ``source``; ``images``: its separate set,
    read."""
    if source.calibration_per_class is not None:
        calibration, evaluation = split_per_class(evaluation, source.calibration_per_class)
        return calibration, evaluation, 0
    shared = overlap(evaluation, images)
    if shared and not source.allow_overlap:
        raise SeprobeError(f"the calibration and evaluation sets share {shared} images; valid: disjoint sets "
                           "(another calibration_data folder, or calibration_per_class), or allow_overlap",
                           argument="calibration_data")
    return images, evaluation, shared


@dataclass
class GateMeans:
    """The per-channel mean of every gate over the calibration images (the ``mean`` mode's replacement), by gate
    name (a spatial gate's: one value), and what those images were."""

    means: dict[str, torch.Tensor]
    source: CalibrationSource
    images: int        # calibration images
    layout: str        # of the calibration images
    evaluation: int    # evaluation images left
    overlap: int = 0   # calibration images that are also evaluation images


def split_per_class(images: LabelledImages, per_class: int) -> tuple[LabelledImages, LabelledImages]:
    """Take the first ``per_class`` images of every class (path order) out for calibration: (calibration,
    evaluation), disjoint by construction."""
    check_int("calibration_per_class", per_class)
    taken: dict[int, int] = {}
    calib, rest = [], []
    for p, lab in zip(images.paths, images.labels, strict=True):
        if taken.get(lab, 0) < per_class:
            taken[lab] = taken.get(lab, 0) + 1
            calib.append((p, lab))
        else:
            rest.append((p, lab))
    if not rest:
        most = max(taken.values())
        raise SeprobeError(f"calibration_per_class {per_class} takes every image for calibration (at most {most} "
                           "per class); valid: a smaller number, or a calibration_data folder",
                           argument="calibration_per_class")

    def part(items):
        return LabelledImages(tuple(p for p, _ in items), tuple(lab for _, lab in items), images.class_names,
                              images.imagenet, images.layout)

    return part(calib), part(rest)


def overlap(evaluation: LabelledImages, calibration: LabelledImages) -> int:
    """Images (by resolved path) in both sets."""
    return len({Path(p).resolve() for p in evaluation.paths} & {Path(p).resolve() for p in calibration.paths})


def calibrate(network: Network, blocks: Sequence[SEBlockInfo], images: LabelledImages, loader: Loader = Loader(), *,
              views: int = 1, progress: bool = True, seed: int = 0) -> dict[str, torch.Tensor]:
    """Per-channel mean of every gate over ``images`` (``views`` crops each), from the activations pass
    (:func:`~seprobe.probe.activations.collect`), by gate name: a block's channel gate (``C`` values) and its
    spatial gate, if it has one (``<block>.spatial``: one value, the map's mean over positions and images)."""
    if not images.paths:
        raise SeprobeError("no calibration image; valid: calibration_per_class >= 1 or a calibration_data folder "
                           "with images", argument="calibration_per_class")
    run = collect(network, images, loader, views=views, blocks=[b.name for b in blocks], progress=progress,
                  seed=seed)
    all_group = run.stats.all_group
    means = {b.name: torch.from_numpy(run.stats.blocks[b.name].mean[all_group].copy()).float() for b in blocks}
    for b in blocks:
        if b.spatial_name:
            means[b.spatial_name] = torch.from_numpy(run.spatial.blocks[b.name].mean[all_group].copy()).float()
    return means
