"""The calibration of the ``mean`` ablation: ``E[s_c]``, the per-channel mean of every gate over calibration
images that the evaluation does not see.

:class:`~seprobe.probe.ablation_plan.CalibrationSource` says where the images come from, checked once:
``calibration_per_class`` images of every class taken out of the evaluation data (first in path order), or a
separate set (``calibration_data``), which must not share an image with the evaluation set unless
``allow_overlap``; ``calibration_views`` crops of each. The mean is over every
calibration view alike (not a mean of class means): an estimate of ``E[s_c]`` on the data the network sees.
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
    """The per-channel mean of every gate over the calibration images (the ``mean`` mode's replacement), and
    what those images were."""

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
    (:func:`~seprobe.probe.activations.collect`)."""
    if not images.paths:
        raise SeprobeError("no calibration image; valid: calibration_per_class >= 1 or a calibration_data folder "
                           "with images", argument="calibration_per_class")
    run = collect(network, images, loader, views=views, blocks=[b.name for b in blocks], progress=progress,
                  seed=seed)
    all_group = run.stats.all_group
    return {b.name: torch.from_numpy(run.stats.blocks[b.name].mean[all_group].copy()).float() for b in blocks}
