"""How a network carries SE blocks: the knobs of the paper's ablations (Tables 10-16), validated once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from ..errors import SeprobeError
from ..schema import Options
from .knobs import ALL_STAGES, BIAS, DROP_STAGE5, GATE, INTEGRATION, REDUCTION, SE_STAGES, SQUEEZE, STAGES, parse_stages

__all__ = ["ALL_STAGES", "STAGES", "SEConfig", "attach_se", "parse_stages"]

if TYPE_CHECKING:
    from torch import nn

    from .se_block import SqueezeExcite


@dataclass(frozen=True)
class SEConfig(Options):
    """The SE knobs of a network.

    ``stages`` are the paper's stage numbers (for a ResNet 2..5 = conv2_x..conv5_x = torchvision's layer1..layer4;
    each architecture says which it has); ``None`` is all of them. ``drop_stage5=True`` removes stage 5's blocks
    (Section 4: the parameter increase falls from ~10 % to ~4 %).
    """

    reduction: Annotated[int, REDUCTION] = 16
    squeeze: Annotated[str, SQUEEZE] = "avg"
    gate: Annotated[str, GATE] = "sigmoid"
    bias: Annotated[bool, BIAS] = True
    stages: Annotated[tuple[int, ...] | None, SE_STAGES] = None
    drop_stage5: Annotated[bool, DROP_STAGE5] = False
    integration: Annotated[str, INTEGRATION] = "standard"

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
        from .se_block import SqueezeExcite

        return SqueezeExcite(
            channels, reduction=self.reduction, squeeze=self.squeeze, gate=self.gate, bias=self.bias
        )


def attach_se(unit: nn.Module, se: SEConfig | None, *, pre: int, inner: int, out: int) -> None:
    """Give a residual unit ``unit.integration`` and ``unit.se``: the SE block on the width where the integration
    puts it (Fig. 5): the unit's input (``pre``), the branch's narrower 3x3 width (``3x3``), else its output
    (``standard``, ``post``, ``identity``); no SE block (``None``) without ``se``."""
    unit.integration = se.integration if se else None
    unit.se = se.block({"pre": pre, "3x3": inner}.get(unit.integration, out)) if se else None
