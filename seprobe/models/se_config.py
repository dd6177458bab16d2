"""How a network carries SE blocks: the knobs of the paper's ablations (Tables 10-16) and the parts of SE's
successors, validated once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from ..errors import SeprobeError
from ..schema import Options
from .knobs import (
    ALL_STAGES,
    ATTENTION,
    BIAS,
    BIASED,
    DROP_STAGE5,
    ECA_KERNEL,
    EXCITATION,
    GATE,
    INTEGRATION,
    REDUCTION,
    SE_STAGES,
    SPATIAL,
    SQUEEZE,
    STAGES,
    parse_stages,
)

__all__ = ["ALL_STAGES", "ATTENTION_PRESETS", "STAGES", "SEConfig", "attach_se", "parse_stages"]

if TYPE_CHECKING:
    from torch import nn

    from .se_block import CBAM, SqueezeExcite


@dataclass(frozen=True)
class Preset:
    """A published module written down as its parts; ``title`` names it in errors."""

    title: str
    squeeze: str
    excitation: str
    spatial: str = "none"


#: The published modules (``attention=``), each as its squeeze, excitation and spatial gate:
#: SE (Hu et al., Eq. 2-3), the ECA-Net paper's SE-Var1/2/3 and ECA (Wang et al. 2020, Table 2), CBAM (Woo et al.
#: 2018: both pooled descriptors through SE's bottleneck, then its spatial gate) and SRM (Lee et al. 2019).
ATTENTION_PRESETS: dict[str, Preset] = {
    "se": Preset("SE", "avg", "bottleneck"),
    "eca": Preset("ECA", "avg", "conv1d"),
    "cbam": Preset("CBAM", "avgmax", "bottleneck", "cbam"),
    "srm": Preset("SRM", "meanstd", "srm"),
    "se_var1": Preset("SE-Var1", "avg", "none"),
    "se_var2": Preset("SE-Var2", "avg", "diagonal"),
    "se_var3": Preset("SE-Var3", "avg", "full"),
}
PARTS = ("squeeze", "excitation", "spatial")
#: why the other excitations take no bias
_NO_BIAS = {"none": "no weights", "conv1d": "ECA's 1-D convolution has none",
            "srm": "its BatchNorm gives the shift"}


@dataclass(frozen=True)
class SEConfig(Options):
    """The SE knobs of a network.

    ``stages`` are the paper's stage numbers (for a ResNet 2..5 = conv2_x..conv5_x = torchvision's layer1..layer4;
    each architecture says which it has); ``None`` is all of them. ``drop_stage5=True`` removes stage 5's blocks
    (Section 4: the parameter increase falls from ~10 % to ~4 %).

    The block's parts (:mod:`~seprobe.models.se_block`): ``squeeze``, ``excitation`` and ``spatial``, or
    ``attention``, a published module written as its parts (:data:`ATTENTION_PRESETS`); a part given with a
    preset must be the preset's. The excitation's settings apply where it has them: ``reduction`` to the
    bottleneck (default 16), ``eca_kernel`` to ECA's ``conv1d`` (default: ECA-Net's rule from ``C``; one per
    stage in the ResNets and CIFAR ResNets), ``bias`` to the bottleneck (default on) and SE-Var2/3's diagonal
    and full FCs (default off). ``None`` is "not given": once made, a config holds its resolved parts (SE's
    ``avg`` / ``bottleneck`` / ``none`` without a preset) and ``None`` for the settings its excitation lacks.
    The ``gate`` is the channel gate's non-linearity, for every excitation (Table 12's ablation).
    """

    reduction: Annotated[int | None, REDUCTION] = None
    squeeze: Annotated[str | None, SQUEEZE] = None
    gate: Annotated[str, GATE] = "sigmoid"
    bias: Annotated[bool | None, BIAS] = None
    stages: Annotated[tuple[int, ...] | None, SE_STAGES] = None
    drop_stage5: Annotated[bool, DROP_STAGE5] = False
    integration: Annotated[str, INTEGRATION] = "standard"
    attention: Annotated[str | None, ATTENTION] = None
    excitation: Annotated[str | None, EXCITATION] = None
    spatial: Annotated[str | None, SPATIAL] = None
    eca_kernel: Annotated[int | tuple[int, ...] | None, ECA_KERNEL] = None

    def validate(self) -> None:
        preset = ATTENTION_PRESETS.get(self.attention)
        parts = {}
        for part in PARTS:
            given = getattr(self, part)
            if preset is not None and given is not None and given != getattr(preset, part):
                raise SeprobeError(
                    f"invalid {part} {given!r} with attention={self.attention!r}: {preset.title} is "
                    f"{_parts(preset)}; valid: {part}={getattr(preset, part)!r} or none given, or the parts "
                    "without attention for another combination", argument=part)
            parts[part] = given or (getattr(preset, part) if preset else getattr(ATTENTION_PRESETS["se"], part))
        squeeze, excitation = parts["squeeze"], parts["excitation"]
        # what the settings are refused with: the preset by name, else the excitation given
        given = f"attention={self.attention!r}" if preset else f"excitation={excitation!r}"
        subject = f"{preset.title} (excitation {excitation!r})" if preset else "it"
        if (squeeze == "meanstd") != (excitation == "srm"):
            raise SeprobeError(
                f"invalid squeeze {squeeze!r} with excitation {excitation!r}: SRM's style integration reads the "
                "two statistics of squeeze 'meanstd', and only it does; valid: squeeze='meanstd' with "
                "excitation='srm' (attention='srm'), or neither", argument="squeeze" if self.squeeze else "excitation")
        if self.reduction is not None and excitation != "bottleneck":
            raise SeprobeError(
                f"invalid reduction {self.reduction} with {given}: {subject} has no reduction ratio (no bottleneck); "
                "valid: no reduction, or excitation 'bottleneck' (attention 'se', 'cbam')", argument="reduction")
        if self.eca_kernel is not None and excitation != "conv1d":
            raise SeprobeError(
                f"invalid eca_kernel {self.eca_kernel!r} with {given}: only ECA's 1-D convolution has a kernel; "
                "valid: no eca_kernel, or excitation 'conv1d' (attention 'eca')", argument="eca_kernel")
        if self.bias is not None and excitation not in BIASED:
            raise SeprobeError(
                f"invalid bias {self.bias} with {given}: {subject} has no bias ({_NO_BIAS[excitation]}); valid: no "
                f"bias, or excitation {', '.join(map(repr, BIASED))}", argument="bias")
        resolved = {**parts,
                    "reduction": (self.reduction or 16) if excitation == "bottleneck" else None,
                    "bias": (BIASED[excitation] if self.bias is None else self.bias) if excitation in BIASED else None}
        for name, value in resolved.items():
            object.__setattr__(self, name, value)

    def carries(self, stage: int) -> bool:
        """Whether the blocks of ``stage`` get SE."""
        return (self.stages is None or stage in self.stages) and not (self.drop_stage5 and stage == 5)

    def check_stages(self, valid: tuple[int, ...]) -> None:
        """Raise unless the chosen stages exist in an architecture whose stages are ``valid``, some carry SE, and
        a per-stage ``eca_kernel`` has one kernel per stage."""
        if self.stages is not None:
            parse_stages(self.stages, valid)
        if isinstance(self.eca_kernel, tuple) and len(self.eca_kernel) != len(valid):
            raise SeprobeError(
                f"invalid eca_kernel {list(self.eca_kernel)}: {len(self.eca_kernel)} kernels for an architecture of "
                f"{len(valid)} stages ({','.join(map(str, valid))}); valid: one odd kernel per stage, or one for all",
                argument="eca_kernel")
        if not any(self.carries(s) for s in valid):
            chosen = ",".join(map(str, self.stages if self.stages is not None else valid))
            raise SeprobeError(
                f"no stage carries SE (stages={chosen}, drop_stage5={self.drop_stage5}); valid: a non-empty subset "
                f"of {','.join(map(str, valid))}, or the model without SE", argument="stages"
            )

    def for_stage(self, stage: int, valid: tuple[int, ...]) -> SEConfig:
        """The configuration of the blocks of ``stage`` (of an architecture whose stages are ``valid``): a
        per-stage ``eca_kernel`` becomes that stage's kernel (ECA-Net's ResNet-50 is ``3, 5, 5, 7``)."""
        if not isinstance(self.eca_kernel, tuple):
            return self
        self.check_stages(valid)
        return dataclasses.replace(self, eca_kernel=self.eca_kernel[valid.index(stage)])

    def block(self, channels: int) -> SqueezeExcite | CBAM:
        """The block for a ``channels``-wide map: a :class:`~seprobe.models.se_block.SqueezeExcite`, followed by
        CBAM's spatial gate (in a :class:`~seprobe.models.se_block.CBAM`) with ``spatial="cbam"``."""
        from .se_block import CBAM, SpatialGate, SqueezeExcite

        if isinstance(self.eca_kernel, tuple):
            raise SeprobeError(
                f"invalid eca_kernel {list(self.eca_kernel)}: one kernel per stage is read by the ResNets and the "
                "CIFAR ResNets only; valid: one odd kernel for this architecture's blocks", argument="eca_kernel")
        channel = SqueezeExcite(channels, reduction=self.reduction or 16, squeeze=self.squeeze, gate=self.gate,
                                bias=self.bias, excitation=self.excitation, eca_kernel=self.eca_kernel)
        return CBAM(channel, SpatialGate()) if self.spatial == "cbam" else channel


def _parts(preset: Preset) -> str:
    return ", ".join(f"{part}={getattr(preset, part)!r}" for part in PARTS)


def attach_se(unit: nn.Module, se: SEConfig | None, *, pre: int, inner: int, out: int) -> None:
    """Give a residual unit ``unit.integration`` and ``unit.se``: the SE block on the width where the integration
    puts it (Fig. 5): the unit's input (``pre``), the branch's narrower 3x3 width (``3x3``), else its output
    (``standard``, ``post``, ``identity``); no SE block (``None``) without ``se``."""
    unit.integration = se.integration if se else None
    unit.se = se.block({"pre": pre, "3x3": inner}.get(unit.integration, out)) if se else None
