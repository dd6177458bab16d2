"""Preprocessing imposed on a model's own (``--resize``, ``--crop``, ``--mean``, ``--std``,
``--interpolation``): an option dataclass (:mod:`seprobe.schema`), torch-free so that the command line checks it
before torch is imported."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from ..choices import INTERPOLATIONS
from ..errors import SeprobeError
from ..schema import Choice, Int, Items, Number, Options

if TYPE_CHECKING:
    from .images import Preprocessing


def _three(argument: str, values: tuple) -> tuple[float, float, float]:
    if len(values) != 3:
        raise SeprobeError(f"invalid {argument} {values!r}; valid: three finite numbers, e.g. (0.5, 0.5, 0.5)",
                           argument=argument)
    return tuple(float(v) for v in values)


#: one number per RGB channel
_CHANNEL = Number(low=-math.inf, description="a finite number")


@dataclass(frozen=True)
class Overrides(Options):
    """Preprocessing imposed on the model's own: any of ``resize``, ``crop``, ``mean``, ``std``,
    ``interpolation`` (``None``: the model's)."""

    resize: Annotated[int | None, Int(1, metavar="N", help="override: resize the shorter side")] = None
    crop: Annotated[int | None, Int(1, metavar="N", help="override: centre crop size")] = None
    mean: Annotated[tuple[float, float, float] | None, Items(
        item=_CHANNEL, rule=_three, example="0.5,0.5,0.5", metavar="M,M,M",
        help="override: normalisation mean")] = None
    std: Annotated[tuple[float, float, float] | None, Items(
        item=Number(low=0.0, open_low=True, description="a finite number > 0 (it divides)"), rule=_three,
        example="0.5,0.5,0.5", metavar="S,S,S", help="override: normalisation std")] = None
    interpolation: Annotated[str | None, Choice(choices=INTERPOLATIONS, what="interpolation",
                                                help="override: resize interpolation")] = None

    def apply(self, pre: Preprocessing) -> Preprocessing:
        return dataclasses.replace(pre, **{k: v for k, v in dataclasses.asdict(self).items() if v is not None})
