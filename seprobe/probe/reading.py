"""What ``seprobe activations`` reads and shows: the classes whose gate distributions are compared, the blocks
shown (by stage or by name), the views of each image and the channels sampled for the plots (the paper's Sec. 7.2,
Figs. 6 and 7).

An option dataclass (:mod:`seprobe.schema`): the command line's options and an activations study's keys are its
fields. Torch-free, so that the command line checks it before torch is imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from ..defaults import CHANNELS, CLASSES
from ..errors import SeprobeError
from ..schema import Custom, Int, Items, Options
from .ablation_plan import BLOCKS, split_names


def _classes(argument: str, value: Any) -> tuple[str | int, ...]:
    """A non-empty list of class names, wnids or indices (each resolved against the images later)."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not value or not all(
            isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)) for v in value):
        raise SeprobeError(f"invalid {argument} {value!r}; valid: a non-empty list of class names, wnids or indices, "
                           "e.g. ['goldfish', 'pug']", argument=argument)
    return tuple(value)


@dataclass(frozen=True)
class GateReading(Options):
    """``classes``: the classes compared (ImageNet names, wnids or indices; folder names for other trees);
    ``stage`` / ``blocks``: the blocks shown (``None``: the paper's set where the model has it, else every block);
    ``views``: views per image (the evaluation crop, then augmented crops); ``channels``: channels sampled for the
    plots."""

    classes: Annotated[tuple[str | int, ...], Custom(
        checker=_classes, parser=split_names, own_error=True, metavar="NAMES",
        description="a string such as \"goldfish,pug\" or an array of names",
        help="ImageNet names, wnids or indices")] = CLASSES
    stage: Annotated[tuple[int, ...] | None, Items(
        item=Int(1), example="4,5", metavar="S", help="show the blocks of this stage (repeatable, or S,S)")] = None
    blocks: Annotated[tuple[str, ...] | None, dataclasses.replace(
        BLOCKS, help="show these blocks, e.g. SE_5_1,SE_5_2")] = None
    views: Annotated[int, Int(1, metavar="K", help="views per image: the evaluation crop + augmented crops")] = 1
    channels: Annotated[int, Int(1, metavar="N", help="channels sampled for the plots (the paper: 50)")] = CHANNELS
