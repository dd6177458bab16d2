"""The SE knobs of the paper's ablations (Tables 10-16) and of SE's successors (the block's parts: squeeze,
excitation, spatial gate; the published modules as presets of them), declared once:
:class:`~seprobe.models.se_config.SEConfig`'s fields, the checks :class:`~seprobe.models.se_block.SqueezeExcite`
applies when built alone, the command line's options and the study files' keys. Torch-free, so that the command
line reads them without importing torch."""

from __future__ import annotations

from collections.abc import Iterable

from ..choices import ATTENTIONS, EXCITATIONS, GATES, INTEGRATIONS, SPATIALS, SQUEEZES
from ..errors import SeprobeError
from ..schema import Bool, Choice, Custom, Int

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


def _check_stages(name: str, value) -> tuple[int, ...]:
    return parse_stages(value)


def _stage_text(name: str, text: str) -> tuple[int, ...]:
    """``--se-stages 2,3,4`` -> ``(2, 3, 4)`` (the models check the numbers)."""
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise SeprobeError(f"invalid stages {text!r}; valid: comma-separated stage numbers, e.g. 2,3,4",
                           argument=name) from None


#: the excitations with weights that can take biases, and whether they do by default (SE's Caffe models: yes;
#: SE-Var2's ``w * z`` and SE-Var3's ``W z``, as the ECA-Net paper writes and counts them: no)
BIASED = {"bottleneck": True, "diagonal": False, "full": False}


def _is_kernel(k) -> bool:
    return isinstance(k, int) and not isinstance(k, bool) and k >= 1 and k % 2 == 1


_KERNELS = "an odd integer k >= 1, or one per stage of the architecture such as [3, 5, 5, 7]"


def _check_kernel(name: str, value):
    """One odd kernel size for every block, or a tuple of them, one per stage (the ECA-Net code's ``--ksize``)."""
    if isinstance(value, (list, tuple)) and value and all(_is_kernel(k) for k in value):
        return tuple(value)
    if _is_kernel(value):
        return value
    raise SeprobeError(f"invalid {name} {value!r}; valid: {_KERNELS}", argument=name)


def _kernel_text(name: str, text: str):
    """``--eca-kernel 5`` -> 5; ``--eca-kernel 3,5,5,7`` -> (3, 5, 5, 7) (the check follows)."""
    try:
        kernels = tuple(int(k) for k in text.split(",") if k.strip())
    except ValueError:
        raise SeprobeError(f"invalid {name} {text!r}; valid: an odd integer, or comma-separated ones per stage "
                           "such as 3,5,5,7", argument=name) from None
    return kernels[0] if len(kernels) == 1 and "," not in text else kernels


REDUCTION = Int(1, what="reduction ratio", description="an integer r >= 1", metavar="R",
                help="SE reduction ratio r (C // r; bottleneck excitations only)")
SQUEEZE = Choice(choices=SQUEEZES, help="squeeze: average (Eq. 2), max, none, avgmax (CBAM), meanstd (SRM)")
EXCITATION = Choice(choices=EXCITATIONS, help="excitation: SE's bottleneck, SE-Var1/2/3 (none, diagonal, full), "
                                              "ECA's conv1d, SRM's style integration (srm)")
SPATIAL = Choice(choices=SPATIALS, what="spatial gate", help="a spatial gate after the channel gate (CBAM's)")
ATTENTION = Choice(choices=ATTENTIONS, what="attention module",
                   help="a published module, as its squeeze, excitation and spatial gate")
ECA_KERNEL = Custom(checker=_check_kernel, parser=_kernel_text, metavar="K|K,K,...", description=_KERNELS,
                    own_error=True, help="ECA's 1-D kernel: one, or one per stage (default: ECA-Net's rule from C)")
GATE = Choice(choices=GATES, what="excitation gate", help="excitation gate (Eq. 3)")
BIAS = Bool(flags=("--bias/--no-bias",), help="biases on the SE FCs (default: SE's yes, SE-Var2/3's no)")
SE_STAGES = Custom(checker=_check_stages, parser=_stage_text, flags=("--se-stages", "--stages"), metavar="S,S,...",
                   description="an array of stage numbers such as [2, 3]", help="stages that carry SE, e.g. 2,3,4")
DROP_STAGE5 = Bool(flags=("--drop-stage5",), help="remove stage 5's SE blocks")
INTEGRATION = Choice(choices=INTEGRATIONS, help="where the SE block sits (Fig. 5)")
