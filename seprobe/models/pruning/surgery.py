"""Structural pruning that is exact: a smaller network that computes what the original computes with the pruned
channels set to zero.

:func:`prune_channels` keeps, for each :class:`~seprobe.models.pruning.groups.ChannelGroup` named, the channels listed
and cuts every tensor of the group (:attr:`~seprobe.models.pruning.groups.ChannelGroup.cuts`: conv weights, BatchNorm
affine terms and running statistics, SE FC weights and biases, the head's columns); option-A shortcuts and ECA's
convolutions are replaced by their positioned versions (:mod:`~seprobe.models.pruning.channel_maps`). Why it is exact:
a channel that is zero everywhere it is written (each BatchNorm's output, each shortcut's) contributes nothing
to any layer that reads it (a conv's or the head's sum, an SE block's squeeze ``z_c = 0`` and so its FCs) and
stays zero through the ReLUs and the residual sums; removing its rows, columns and statistics removes exactly
those zero terms. An SE block keeps its hidden width ``C / r`` (its first FC loses input columns only), so every
kept gate ``s_c`` (Eq. 3) is the same number. Only the order of the float additions changes. In a MobileNetV3 a
group's channels feed nothing but a depthwise convolution (which reads channel ``c`` alone) until ``u`` (the
BatchNorm after it), so zeroing them there is the same as zeroing them everywhere they are written.

What it is exact to is the channel zeroed where it is *written* (``u_c = 0``), not a zero gate: a channel whose
gate ``s_c`` is 0 adds nothing to the stream, but its descriptor ``z_c`` still enters ``W1`` and so every other
channel's gate; pruning it removes that too. A channel is free to prune when ``u_c = 0``, or when ``s_c = 0``
and ``W1``'s column ``c`` is zero in every block of its group where the SE block's output is all that reads ``u``
(the ``standard``, ``post`` and ``3x3`` integrations; a stream's other writers, a projection, option A or the stem,
zeroed too where no SE block scales them): not in ``pre`` and ``identity``, where ``x~`` is one of two paths the
channel takes (:mod:`~seprobe.models.pruning.groups`). The tests construct each.
"""

from __future__ import annotations

import copy
import numbers
from collections import defaultdict
from collections.abc import Iterable, Mapping
from itertools import pairwise
from typing import Any

import torch
from torch import nn

from ...errors import SeprobeError, suggest
from ..se_block import SqueezeExcite
from .channel_maps import PositionedConv1d, ScatterShortcut
from .groups import ChannelGroup, channel_groups
from .record import ATTRIBUTE, check_record, composed


def prune_channels(model: nn.Module, keep: Mapping[str, Iterable[int]]) -> nn.Module:
    """A new, smaller copy of ``model`` keeping, for each group named in ``keep`` (group name -> sorted indices of
    the channels kept), only those channels; groups not named keep all theirs, and ``model`` is left as it is.

    The copy records the surgery (:func:`~seprobe.models.pruning.record.pruning_record`, composed with any earlier
    one), and its SE blocks are found by :func:`~seprobe.models.blocks.se_blocks` (a timm model's by
    :func:`~seprobe.models.blocks.find_blocks`) with their new widths."""
    groups = {g.name: g for g in channel_groups(model)}
    keep = check_keep(groups, keep)
    pruned = copy.deepcopy(model)
    _cut(pruned, groups, keep)
    setattr(pruned, ATTRIBUTE, composed(getattr(model, ATTRIBUTE, None), _widths(groups), keep))
    return pruned


def apply_pruning(base: nn.Module, record: Mapping[str, Any]) -> nn.Module:
    """Cut ``base``, the unpruned architecture, as ``record`` says (:mod:`~seprobe.models.pruning.record`), in place:
    the architecture of a pruned network, ready for its state dict."""
    groups = {g.name: g for g in channel_groups(base)}
    keep = check_keep(groups, check_record(record, _widths(groups)))
    _cut(base, groups, keep)
    setattr(base, ATTRIBUTE, composed(None, _widths(groups), keep))
    return base


def check_keep(groups: Mapping[str, ChannelGroup], keep: Any) -> dict[str, list[int]]:
    """``keep`` as group name -> list of channel indices, each group's a non-empty, strictly increasing list in
    ``0 .. width - 1``; groups that keep every channel are left out (nothing to cut)."""
    if not isinstance(keep, Mapping):
        raise SeprobeError(f"invalid keep {_what(keep)}; valid: a mapping of channel group names to the sorted "
                           "indices of the channels kept", argument="keep")
    checked = {}
    for name, indices in keep.items():
        if name not in groups:
            raise SeprobeError(f"unknown channel group {name!r}{suggest(str(name), groups)}; valid: "
                               f"{', '.join(groups)}", argument="keep")
        width = groups[name].width
        kept = _indices(name, indices, width)
        if len(kept) < width:
            checked[name] = kept
    return checked


def _indices(name: str, indices: Any, width: int) -> list[int]:
    valid = f"1 to {width} sorted, distinct channel indices in 0..{width - 1}"
    if isinstance(indices, torch.Tensor):
        indices = indices.tolist()
    if isinstance(indices, (str, bytes)) or not isinstance(indices, Iterable):
        raise SeprobeError(f"invalid channels kept of group {name!r}: {_what(indices)}; valid: {valid}",
                           argument="keep")
    kept = list(indices)
    if not kept:
        raise SeprobeError(f"invalid channels kept of group {name!r}: none (0 of {width}) would cut the network "
                           f"in two; valid: {valid}", argument="keep")
    for i in kept:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise SeprobeError(f"invalid channel index {i!r} in group {name!r}: {_what(i)}; valid: {valid}",
                               argument="keep")
        if not 0 <= i < width:
            raise SeprobeError(f"invalid channel index {i} in group {name!r} of {width} channels; valid: {valid}",
                               argument="keep")
    for before, after in pairwise(kept):
        if after <= before:
            raise SeprobeError(f"invalid channels kept of group {name!r}: {after} after {before}; valid: {valid}",
                               argument="keep")
    return [int(i) for i in kept]


def _what(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _widths(groups: Mapping[str, ChannelGroup]) -> dict[str, int]:
    return {name: g.width for name, g in groups.items()}


def _cut(model: nn.Module, groups: Mapping[str, ChannelGroup], keep: Mapping[str, list[int]]) -> None:
    """Cut ``model`` in place: the tensors of each group in ``keep``, then the layers' sizes, then the maps."""
    touched = set()
    maps: dict[str, dict[str, tuple[list[int], int]]] = defaultdict(dict)
    for name, kept in keep.items():
        group = groups[name]
        for cut in group.cuts:
            _index(model.get_submodule(cut.path), cut.tensor, cut.dim, kept)
            touched.add(cut.path)
        for axis in group.axes:
            maps[axis.path][axis.role] = kept, group.width
        for path in group.se_paths:
            se = model.get_submodule(path)
            if not isinstance(se, SqueezeExcite):
                continue  # timm's SqueezeExcite: its widths are its convolutions' (cut), its hidden width stays
            se.channels = len(kept)
            if se.excitation != "bottleneck":
                se.hidden_channels = len(kept)  # the convention where there is no reduction: C
    for path in touched:
        _resize(model.get_submodule(path))
    device = next(model.parameters()).device  # an option-A shortcut has no tensor to say where it is
    for path, roles in maps.items():
        model.set_submodule(path, _positioned(model.get_submodule(path), roles).to(device))


def _index(module: nn.Module, tensor: str, dim: int, kept: list[int]) -> None:
    old = getattr(module, tensor)
    new = old.detach().index_select(dim, torch.tensor(kept, dtype=torch.long, device=old.device))
    setattr(module, tensor, nn.Parameter(new, requires_grad=old.requires_grad) if isinstance(old, nn.Parameter)
            else new)


def _resize(module: nn.Module) -> None:
    """A layer's size attributes, from its cut tensors."""
    if isinstance(module, nn.modules.conv._ConvNd):
        out = module.weight.shape[0]
        if module.groups > 1:  # depthwise (SE-Var2's FC, SRM's channel-wise FC): one channel per group
            module.groups = module.in_channels = out
        else:
            module.in_channels = module.weight.shape[1]
        module.out_channels = out
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        stats = module.running_mean if module.running_mean is not None else module.weight
        module.num_features = stats.shape[0]
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape


def _positioned(module: nn.Module, roles: Mapping[str, tuple[list[int], int]]) -> nn.Module:
    """The positioned replacement of a shortcut or ECA convolution, given (kept channels, width) of each side
    that is cut."""
    if "positions" in roles:
        kept, width = roles["positions"]
        return PositionedConv1d.of(module, width).pruned(kept)
    side = {role: kept for role, (kept, _) in roles.items()}
    return ScatterShortcut.of(module).pruned(side.get("input"), side.get("output"))
