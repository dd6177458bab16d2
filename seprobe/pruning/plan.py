"""What ``seprobe prune`` does, as options: the criterion that scores channels, how a target is spread over the
channel groups, and the target (a fraction of the multiply-adds, of the parameters, or of the channels to keep).

Torch-free, so that the command line checks them before torch is imported. The criteria
(:mod:`~seprobe.pruning.criteria`):

* ``gate``: the channel's mean excitation ``E[s_c]`` over the calibration images (Eq. 3's ``s``, the
  class-agnostic map), averaged over the SE blocks that scale the channel;
* ``gate_max``: its largest class mean ``max_k E[s_c | class k]``: a channel goes only when every class turns it
  down. The mean can hide a channel that one class relies on, and the paper finds the late gates class-specific
  (Sec. 7.2: in stage 4 the classes' gate distributions part);
* ``l1``: the L1 norm of the filters that write the channel (Li et al. 2017, "Pruning filters for efficient
  ConvNets"), summed over the group's writers;
* ``bn``: ``|gamma|`` of the BatchNorms that normalise it (network slimming, Liu et al. 2017), averaged;
* ``taylor``: first-order Taylor importance on the BatchNorms, ``(sum gamma dL/dgamma + beta dL/dbeta)^2`` per
  calibration batch, averaged (Molchanov et al. 2019, "Importance estimation for neural network pruning");
* ``random``: a seeded random score, the control every criterion must beat.

Allocation: ``global`` ranks every channel of every group by its score divided by its group's mean score (the
criteria's scales differ from layer to layer: an L1 norm grows with a filter's fan-in; Torch-Pruning's default
normaliser) and removes the lowest first; ``uniform`` keeps the same fraction of every group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ..choices import ALLOCATIONS, CRITERIA, PRUNE_SCOPES
from ..errors import SeprobeError
from ..schema import Choice, Int, Number, Options

#: the targets, as the fields that hold them
TARGETS = ("keep_macs", "keep_params", "keep_channels")


def _fraction(what: str) -> Number:
    return Number(0, 1, open_low=True, closed_high=True, metavar="F",
                  description="a fraction in (0, 1]", help=f"keep this fraction of the {what}")


@dataclass(frozen=True)
class PrunePlan(Options):
    """How to prune: ``criterion`` (:data:`~seprobe.choices.CRITERIA`), ``allocation`` (``global`` or
    ``uniform``), exactly one target (``keep_macs``, ``keep_params``: fractions of the unpruned network's total;
    ``keep_channels``: of the prunable channels, and with ``uniform`` of each group's), the groups that may be cut
    (``scope``: ``gated``, those an SE gate scales, the same groups for every criterion; ``all``: the inner
    widths and stems too), ``min_channels`` every group keeps, and the ``seed`` of the ``random`` criterion."""

    criterion: Annotated[str, Choice(choices=CRITERIA, metavar="|".join(CRITERIA),
                                     help="what ranks the channels")] = "gate"
    allocation: Annotated[str, Choice(choices=ALLOCATIONS, metavar="global|uniform",
                                      help="one threshold across groups, or the same fraction of each")] = "global"
    keep_macs: Annotated[float | None, _fraction("multiply-adds")] = None
    keep_params: Annotated[float | None, _fraction("parameters")] = None
    keep_channels: Annotated[float | None, _fraction("prunable channels")] = None
    scope: Annotated[str, Choice(choices=PRUNE_SCOPES, metavar="gated|all",
                                 help="the channel groups cut: those an SE gate scales, or every group")] = "gated"
    min_channels: Annotated[int, Int(1, metavar="N", help="channels every group keeps at least")] = 1
    seed: Annotated[int, Int(0, metavar="N", help="the random criterion's seed")] = 0

    def validate(self) -> None:
        given = [t for t in TARGETS if getattr(self, t) is not None]
        if len(given) != 1:
            what = f"{' and '.join(given)} both given" if given else "no target given"
            raise SeprobeError(f"{what}; valid: exactly one of {', '.join(TARGETS)} (a fraction in (0, 1])",
                               argument=tuple(given) if given else TARGETS)

    @property
    def target(self) -> tuple[str, float]:
        """(the target's field, its fraction)."""
        name = next(t for t in TARGETS if getattr(self, t) is not None)
        return name, float(getattr(self, name))
