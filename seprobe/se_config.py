"""How a network carries SE blocks: the knobs of the paper's ablations (Tables 10-16), validated once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import SeprobeError, check_choice
from .se_block import GATES, SQUEEZES, SqueezeExcite

STAGES = (2, 3, 4, 5)
#: Where the block sits in a residual unit (paper Fig. 5 and Table 15):
#: ``standard`` on the residual branch before the sum; ``pre`` on the unit's input, feeding the residual
#: branch only; ``post`` after the sum (and its ReLU); ``identity`` on the identity branch; ``3x3`` inside the
#: residual branch after the 3x3 convolution, on the narrower width.
INTEGRATIONS = ("standard", "pre", "post", "identity", "3x3")


def parse_stages(stages: Iterable[int] | str) -> tuple[int, ...]:
    """``(2, 3, 4, 5)`` from an iterable of ints or a comma-separated string such as ``"2,3,4"``."""
    if isinstance(stages, str):
        try:
            stages = [int(s) for s in stages.split(",") if s.strip()]
        except ValueError:
            raise SeprobeError(
                f"invalid stages {stages!r}; valid: a comma-separated subset of 2,3,4,5"
            ) from None
    out = tuple(sorted(set(stages)))
    for s in out:
        if s not in STAGES:
            raise SeprobeError(f"invalid stage {s!r}; valid: a subset of 2, 3, 4, 5 (conv2_x..conv5_x)")
    return out


@dataclass(frozen=True)
class SEConfig:
    """The SE knobs of a network.

    ``stages`` are the paper's stage numbers (2..5 = conv2_x..conv5_x = torchvision's layer1..layer4);
    ``drop_stage5=True`` removes stage 5's blocks (Section 4: the parameter increase falls from ~10 % to ~4 %).
    """

    reduction: int = 16
    squeeze: str = "avg"
    gate: str = "sigmoid"
    bias: bool = True
    stages: tuple[int, ...] = STAGES
    drop_stage5: bool = False
    integration: str = "standard"

    def __post_init__(self):
        r = self.reduction
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise SeprobeError(f"invalid reduction ratio {r!r}; valid: an integer r >= 1")
        check_choice("squeeze", self.squeeze, SQUEEZES)
        check_choice("excitation gate", self.gate, GATES)
        check_choice("integration", self.integration, INTEGRATIONS)
        object.__setattr__(self, "stages", parse_stages(self.stages))
        if not self.active_stages:
            raise SeprobeError(
                f"no stage carries SE (stages={','.join(map(str, self.stages)) or 'none'}, "
                f"drop_stage5={self.drop_stage5}); valid: a non-empty subset of 2,3,4,5, or the model without SE"
            )

    @property
    def active_stages(self) -> tuple[int, ...]:
        return tuple(s for s in self.stages if not (self.drop_stage5 and s == 5))

    def block(self, channels: int) -> SqueezeExcite:
        return SqueezeExcite(
            channels, reduction=self.reduction, squeeze=self.squeeze, gate=self.gate, bias=self.bias
        )
