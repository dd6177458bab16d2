"""How a network carries SE blocks: the knobs of the paper's ablations (Tables 10-16), validated once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from ..choices import GATES, INTEGRATIONS, SQUEEZES
from ..errors import SeprobeError, check_choice
from .se_block import SqueezeExcite

STAGES = (2, 3, 4, 5)  # a ResNet's conv2_x..conv5_x
ALL_STAGES = (1, 2, 3, 4, 5)
#: Where the block sits in a residual unit (paper Fig. 5 and Table 15):
#: ``standard`` on the residual branch before the sum; ``pre`` on the unit's input, feeding the residual
#: branch only; ``post`` after the sum (and its ReLU); ``identity`` on the identity branch; ``3x3`` inside the
#: residual branch after the 3x3 convolution, on the narrower width.


def parse_stages(stages: Iterable[int], valid: tuple[int, ...] = ALL_STAGES) -> tuple[int, ...]:
    """``(2, 3, 4)`` from an iterable of stage numbers (a list, a tuple); a string is refused, not parsed."""
    if isinstance(stages, (str, bytes)) or not isinstance(stages, Iterable):
        raise SeprobeError(f"invalid stages {stages!r}; valid: a list of stage numbers from "
                           f"{', '.join(map(str, valid))}, e.g. {list(valid[1:])}", argument="stages")
    stages = list(stages)
    for s in stages:
        if isinstance(s, bool) or not isinstance(s, int) or s not in valid:
            raise SeprobeError(f"invalid stage {s!r} in stages; valid: a subset of {', '.join(map(str, valid))}",
                               argument="stages")
    return tuple(sorted(set(stages)))


@dataclass(frozen=True)
class SEConfig:
    """The SE knobs of a network.

    ``stages`` are the paper's stage numbers (for a ResNet 2..5 = conv2_x..conv5_x = torchvision's layer1..layer4;
    each architecture says which it has); ``None`` is all of them. ``drop_stage5=True`` removes stage 5's blocks
    (Section 4: the parameter increase falls from ~10 % to ~4 %).
    """

    reduction: int = 16
    squeeze: str = "avg"
    gate: str = "sigmoid"
    bias: bool = True
    stages: tuple[int, ...] | None = None
    drop_stage5: bool = False
    integration: str = "standard"

    def __post_init__(self):
        r = self.reduction
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise SeprobeError(f"invalid reduction ratio {r!r}; valid: an integer r >= 1", argument="reduction")
        check_choice("squeeze", self.squeeze, SQUEEZES, argument="squeeze")
        check_choice("excitation gate", self.gate, GATES, argument="gate")
        check_choice("integration", self.integration, INTEGRATIONS, argument="integration")
        if self.stages is not None:
            object.__setattr__(self, "stages", parse_stages(self.stages))

    def carries(self, stage: int) -> bool:
        """Whether the blocks of ``stage`` get SE."""
        return (self.stages is None or stage in self.stages) and not (self.drop_stage5 and stage == 5)

    def check_stages(self, valid: tuple[int, ...]) -> None:
        """Raise unless the chosen stages exist in an architecture whose stages are ``valid``, and some carry SE."""
        if self.stages is not None:
            parse_stages(self.stages, valid)
        if not any(self.carries(s) for s in valid):
            chosen = ",".join(map(str, self.stages if self.stages is not None else valid))
            raise SeprobeError(
                f"no stage carries SE (stages={chosen}, drop_stage5={self.drop_stage5}); valid: a non-empty subset "
                f"of {','.join(map(str, valid))}, or the model without SE", argument="stages"
            )

    def block(self, channels: int) -> SqueezeExcite:
        return SqueezeExcite(
            channels, reduction=self.reduction, squeeze=self.squeeze, gate=self.gate, bias=self.bias
        )


def attach_se(unit: nn.Module, se: SEConfig | None, *, pre: int, inner: int, out: int) -> None:
    """Give a residual unit ``unit.integration`` and ``unit.se``: the SE block on the width where the integration
    puts it (Fig. 5): the unit's input (``pre``), the branch's narrower 3x3 width (``3x3``), else its output
    (``standard``, ``post``, ``identity``); no SE block (``None``) without ``se``."""
    unit.integration = se.integration if se else None
    unit.se = se.block({"pre": pre, "3x3": inner}.get(unit.integration, out)) if se else None
