"""The architecture knobs every registered model takes (besides the SE knobs of
:class:`~seprobe.models.se_config.SEConfig`), declared once: the models check them with these specs, and the
command line's options and the study files' keys derive from :class:`ArchConfig`'s fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ..choices import STEM_POOLS, STRIDES
from ..schema import Choice, Int, Options

NUM_CLASSES = Int(1, metavar="K", help="classifier outputs (seprobe models)")
STRIDE_AT = Choice(choices=STRIDES, what="stride placement", help="ResNets: the conv that downsamples")
STEM_POOL = Choice(choices=STEM_POOLS, what="stem pool", help="ResNets: Caffe's ceil or torchvision's pool")


@dataclass(frozen=True)
class ArchConfig(Options):
    """``None``: the model's own default (1000 classes for ImageNet models, 10 for the CIFAR ones; each
    family's stride placement and stem pool, :mod:`~seprobe.models.resnet`)."""

    num_classes: Annotated[int | None, NUM_CLASSES] = None
    stride_at: Annotated[str | None, STRIDE_AT] = None
    stem_pool: Annotated[str | None, STEM_POOL] = None
