"""Structural channel pruning of SE networks (issue 27's surgery): the channel groups an SE gate scales
(:mod:`~seprobe.models.pruning.groups`), the exact cut (:mod:`~seprobe.models.pruning.surgery`), the positioned layers
it needs where channels are read by position (:mod:`~seprobe.models.pruning.channel_maps`) and the plain-data record a
pruned network is rebuilt from (:mod:`~seprobe.models.pruning.record`).

Imports torch: the command line must not import it at start-up.
"""

from .channel_maps import PositionedConv1d, ScatterShortcut
from .groups import Axis, ChannelGroup, Cut, channel_groups
from .record import pruning_record
from .surgery import apply_pruning, check_keep, prune_channels

__all__ = ["Axis", "ChannelGroup", "Cut", "PositionedConv1d", "ScatterShortcut", "apply_pruning", "channel_groups",
           "check_keep", "prune_channels", "pruning_record"]
