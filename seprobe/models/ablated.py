"""Export an ablated SE network as a smaller network, and load it back (``seprobe ablate --export``).

An ``identity`` block (``s = 1``) is removed: its SE module becomes ``nn.Identity``. A ``mean`` block
(``s_c = E[s_c]``, a constant per-channel scale) or a ``constant`` one (``s_c = 1/2``) is folded into the adjacent
linear layer where the architecture allows (the block's :attr:`~seprobe.models.blocks.SEBlockInfo.fold`, see
:func:`~seprobe.models.blocks.fold_target`), and its SE module removed; anywhere else the block becomes a
:class:`ChannelScale` module (``C`` parameters, one multiply per element).

CBAM's spatial gate (``<block>.spatial``) is exported on its own: ``identity`` (``M_s = 1``) removes it (the
:class:`~seprobe.models.se_block.SpatialGate` becomes ``nn.Identity``); ``mean`` (its one calibration mean) and
``constant`` (1/2) leave one number at every position, a :class:`ChannelScale` of one parameter in its place
(broadcast over the channels). It is not folded: in the residual branch the channel gate between it and the
BatchNorm before reads the map's input, so a scale moves past the channel gate only when that is frozen too.

The checkpoint records how to rebuild the architecture (see :func:`export_ablated`), and :func:`load_ablated`
rebuilds it: the base model from its name and knobs, the same module surgery, then the state dict, loaded with
``weights_only=True`` and strictly.

A pruned network (``seprobe prune``, :func:`export_pruned`) is written the same way, in format
:data:`PRUNED_FORMAT`, with its channel surgery as plain data (``"pruning"``:
:mod:`~seprobe.models.pruning.record`): the rebuild cuts the base model's channels first, then applies any block
surgery (an ablation exported from a pruned network carries its record too). So every command that reads
``--weights`` reads a pruned network, ``seprobe train`` fine-tunes it (and saves it in the same format), and it can
be pruned again.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..choices import CONSTANT_GATE, EXPORT_MODES
from ..errors import SeprobeError, check_choice
from ..io import atomic_write
from .blocks import FoldTarget, SEBlockInfo
from .checkpoints import load_failure
from .heads import replace_head
from .pruning import apply_pruning, pruning_record
from .sources import build_architecture

FORMAT = "seprobe-ablated/1"
PRUNED_FORMAT = "seprobe-pruned/1"
#: the formats of a network file that says how to rebuild its architecture
FORMATS = (FORMAT, PRUNED_FORMAT)

class ChannelScale(nn.Module):
    """``x_c * scale_c``: a ``mean``- or ``constant``-ablated SE block that could not be folded (Eq. 4 with a
    constant ``s``), or, with one channel, a frozen CBAM spatial gate (one scale for the whole map, broadcast).
    Counted as SE's scale (one multiply per element), as the block it replaces was."""

    frozen_se_scale = True

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.view(1, -1, *([1] * (x.dim() - 2)))

    def extra_repr(self) -> str:
        return f"channels={self.scale.numel()}"


def _fold(model: nn.Module, target: FoldTarget, scale: torch.Tensor) -> None:
    module = model.get_submodule(target.path)
    with torch.no_grad():
        if target.kind == "bn":
            s = scale.to(module.weight)
            module.weight.mul_(s)
            module.bias.mul_(s)
        else:
            s = scale.to(module.weight)
            module.weight.mul_(s.view(1, -1, *([1] * (module.weight.dim() - 2))))


def apply_surgery(model: nn.Module, removed: Sequence[str], scaled: Mapping[str, int]) -> nn.Module:
    """Replace the SE modules at ``removed`` by ``nn.Identity`` and those at ``scaled`` by ``ChannelScale(C)``,
    in place (the architecture of an exported checkpoint, before its state dict is loaded)."""
    for path in removed:
        model.set_submodule(path, nn.Identity())
    for path, channels in scaled.items():
        model.set_submodule(path, ChannelScale(int(channels)))
    return model


@dataclass
class Export:
    """What :func:`export_ablated` did, block by block (``how``: removed / folded into PATH / scale module)."""

    model: nn.Module
    how: dict[str, str]
    removed: list[str]
    scaled: dict[str, int]


def ablated_copy(model: nn.Module, gates: Sequence[SEBlockInfo], modes: Mapping[str, str],
                 means: Mapping[str, torch.Tensor] | None = None) -> Export:
    """A copy of ``model`` with the gates of ``modes`` (gate name -> ``identity`` / ``mean`` / ``constant``: a
    block's channel gate by the block's name, CBAM's spatial gate by ``<block>.spatial``) removed, folded or
    replaced by a scale module; ``model`` is left as it is."""
    by_name = {g.name: g for g in gates}
    spatial = {g.spatial_name: g for g in gates if g.spatial_name}
    for name, mode in modes.items():
        if name not in by_name and name not in spatial:
            raise SeprobeError(f"unknown block {name!r}; valid: {', '.join([*by_name, *spatial])}")
        check_choice(f"ablation mode of {name}", mode, EXPORT_MODES, argument="export_mode")
        if mode == "mean" and (means is None or name not in means):
            raise SeprobeError(f"no calibration mean for {name}; valid: calibrate before exporting a mean block")
    if not modes:
        raise SeprobeError("empty block set to export; valid: one or more SE blocks")
    model = copy.deepcopy(model).eval()
    how, removed, scaled, values = {}, [], {}, {}
    for name, mode in modes.items():
        if name in spatial:
            g = spatial[name]
            if mode == "identity":
                removed.append(g.spatial_path)
                how[name] = "spatial gate removed (identity)"
            else:
                scaled[g.spatial_path] = 1
                values[g.spatial_path] = means[name] if mode == "mean" else torch.full((1,), CONSTANT_GATE)
                how[name] = f"spatial {mode} kept as a one-parameter scale module"
            continue
        g = by_name[name]
        value = means[name] if mode == "mean" else torch.full((g.channels,), CONSTANT_GATE)
        if mode == "identity":
            removed.append(g.path)
            how[name] = "removed (identity)"
        elif g.fold is not None:
            _fold(model, g.fold, value)
            removed.append(g.path)
            how[name] = f"{mode} folded into {g.fold.path}"
        else:
            scaled[g.path] = g.channels
            values[g.path] = value
            how[name] = f"{mode} kept as a per-channel scale module"
    apply_surgery(model, removed, scaled)
    with torch.no_grad():
        for path, value in values.items():
            model.get_submodule(path).scale.copy_(value)
    return Export(model, how, removed, scaled)


def export_ablated(model: nn.Module, gates: Sequence[SEBlockInfo], modes: Mapping[str, str],
                   means: Mapping[str, torch.Tensor] | None, path: str | os.PathLike, *, model_name: str,
                   knobs: Mapping[str, Any] | None = None, preprocessing: Any = None) -> Export:
    """Write the ablated network to ``path`` (atomically) as::

        {"format": "seprobe-ablated/1", "model": "timm:tf_mobilenetv3_small_100", "knobs": {...},
         "removed": [SE module paths now nn.Identity], "scaled": {SE module path: channels},
         "blocks": {"SE_5_2": "mean folded into blocks.4.1.conv_pwl", ...},
         "preprocessing": {...}, "state_dict": {...}}

    (and ``"num_classes": K`` once training gave it a new K-way head, :func:`retrained`). ``model_name`` is the
    model name seprobe builds (a registered name, ``timm:NAME`` or ``torchvision:NAME``) and ``knobs`` its knobs
    (seprobe models).
    """
    build_architecture(model_name, dict(knobs or {}), device="meta")  # fail now on a name that could not be rebuilt
    export = ablated_copy(model, gates, modes, means)
    payload = _payload(FORMAT, export.model, model_name, knobs, preprocessing, removed=list(export.removed),
                       scaled=dict(export.scaled), blocks=dict(export.how))
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    return export


def export_pruned(model: nn.Module, path: str | os.PathLike, *, model_name: str, knobs: Mapping[str, Any] | None = None,
                  preprocessing: Any = None, num_classes: int | None = None) -> dict:
    """Write the pruned network ``model`` (:func:`~seprobe.models.pruning.prune_channels`' result, which carries
    its record) to ``path``, atomically, as::

        {"format": "seprobe-pruned/1", "model": "se_resnet50", "knobs": {...},
         "pruning": {"format": "seprobe-pruning/1", "base_widths": {...}, "kept": {...}},
         "removed": [], "scaled": {}, "blocks": {}, "preprocessing": {...}, "state_dict": {...}}

    (``"num_classes"`` when the base network had been given a new head). The architecture is rebuilt from the
    payload (on ``meta``) and must take the state dict strictly before the file is written; the payload's header
    (without the weights) is returned."""
    if pruning_record(model) is None:
        raise SeprobeError("the network was not pruned (no pruning record); valid: a network from prune_channels")
    payload = _payload(PRUNED_FORMAT, model, model_name, knobs, preprocessing)
    if num_classes is not None:
        payload["num_classes"] = int(num_classes)
    rebuilt = rebuild_architecture(payload, device="meta")
    try:
        rebuilt.load_state_dict(payload["state_dict"], strict=True, assign=True)
    except RuntimeError as e:
        raise SeprobeError(f"the pruned network does not rebuild from its record: {str(e).splitlines()[0]}") from None
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    return {k: v for k, v in payload.items() if k != "state_dict"}


def _payload(fmt: str, model: nn.Module, model_name: str, knobs: Mapping[str, Any] | None, preprocessing: Any,
             removed: Sequence[str] = (), scaled: Mapping[str, int] | None = None,
             blocks: Mapping[str, str] | None = None) -> dict:
    payload = {"format": fmt, "model": model_name, "knobs": dict(knobs or {}), "removed": list(removed),
               "scaled": dict(scaled or {}), "blocks": dict(blocks or {}),
               "preprocessing": asdict(preprocessing) if preprocessing is not None else None,
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    record = pruning_record(model)
    if record is not None:
        payload["pruning"] = record
    return payload


def rebuild_architecture(header: Mapping[str, Any], device: str | None = None) -> nn.Module:
    """The architecture a network file's ``header`` describes, before its weights: the base model from its name
    and knobs, its channels cut (``pruning``), its blocks removed or replaced (``removed``, ``scaled``), a new head
    (``num_classes``)."""
    model = build_architecture(header["model"], header["knobs"], device=device)
    if header.get("pruning") is not None:
        apply_pruning(model, header["pruning"])
    apply_surgery(model, header["removed"], header["scaled"])
    if header.get("num_classes") is not None:
        replace_head(model, header["num_classes"])
    return model


def is_ablated(obj: Any) -> bool:
    """Whether a loaded checkpoint object is an exported ablated network, or a training checkpoint of a network
    trained from one (:func:`as_export`)."""
    return as_export(obj) is not None


def as_export(obj: Any) -> dict | None:
    """``obj`` as an export's record: itself, or, for a training checkpoint of a network trained from an export
    (its weights under ``model``, the export's header kept in ``record.meta.export``, :func:`export_header`),
    that header around those weights; ``None`` for anything else."""
    if not isinstance(obj, Mapping):
        return None
    if obj.get("format") in FORMATS:
        return dict(obj)
    record = obj.get("record")
    meta = record.get("meta") if isinstance(record, Mapping) else None
    header = meta.get("export") if isinstance(meta, Mapping) else None
    if isinstance(header, Mapping) and header.get("format") in FORMATS and isinstance(obj.get("model"), Mapping):
        return {**header, "state_dict": obj["model"]}
    return None


_FIELDS = {"model": str, "knobs": Mapping, "removed": list, "scaled": Mapping, "blocks": Mapping,
           "state_dict": Mapping}


def checked_export(obj: dict, path: str | os.PathLike) -> dict:
    """``obj`` (an export's record, :func:`as_export`) if it holds every field a network is rebuilt from, with
    its type; a one-line error naming the first that is missing or wrong otherwise."""
    for name, kind in _FIELDS.items():
        if not isinstance(obj.get(name), kind):
            found = "missing" if name not in obj else f"a {type(obj[name]).__name__}"
            raise SeprobeError(f"{path}: not a valid {obj.get('format')} file: field {name!r} is {found}; valid: a "
                               "file written by seprobe ablate's export or seprobe prune, unchanged")
    if obj.get("preprocessing") is not None and not isinstance(obj["preprocessing"], Mapping):
        raise SeprobeError(f"{path}: not a valid {obj.get('format')} file: field 'preprocessing' is a "
                           f"{type(obj['preprocessing']).__name__}; valid: a file written by seprobe, unchanged")
    return obj


@dataclass
class AblatedModel:
    model: nn.Module
    model_name: str  # the registered (or timm: / torchvision:) name of the base architecture
    knobs: dict[str, Any]
    blocks: dict[str, str]
    preprocessing: dict[str, Any] | None
    pruning: dict[str, Any] | None = None  # the channel surgery of a pruned network


def load_ablated(path: str | os.PathLike) -> AblatedModel:
    """Rebuild an exported ablated network: the base model, the recorded surgery, then its state dict."""
    if not Path(path).is_file():
        raise SeprobeError(f"checkpoint {str(path)!r} does not exist; valid: a file exported by seprobe ablate")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated files, code objects refused by weights_only
        raise SeprobeError(f"cannot read checkpoint {str(path)!r}: {load_failure(e)}") from None
    if not is_ablated(obj):
        found = obj.get("format") if isinstance(obj, Mapping) else type(obj).__name__
        raise SeprobeError(f"{path}: not an ablated or pruned network (format {found!r}); valid: a file written "
                           f"by seprobe ablate's export or seprobe prune (format {' or '.join(map(repr, FORMATS))})")
    obj = checked_export(as_export(obj), path)
    model = rebuild_architecture(obj)
    try:
        model.load_state_dict(obj["state_dict"], strict=True)
    except RuntimeError as e:
        raise SeprobeError(f"{path}: the state dict does not fit {obj['model']} after the recorded surgery: "
                           f"{str(e).splitlines()[0]}") from None
    return AblatedModel(model.eval(), obj["model"], dict(obj["knobs"]), dict(obj["blocks"]), obj["preprocessing"],
                        obj.get("pruning"))


def export_header(path: str | os.PathLike, num_classes: int | None = None) -> dict:
    """The record of the export at ``path`` without its weights (plain data), with the size of a new head when
    training gave it a ``num_classes``-way one: what a network trained from it is saved with, so that it loads
    as the export does (:func:`retrained`, and the training checkpoint's record, :func:`as_export`)."""
    obj = checked_export(as_export(torch.load(path, map_location="cpu", weights_only=True, mmap=True)), path)
    header = {k: v for k, v in obj.items() if k != "state_dict"}
    if num_classes is not None:
        header["num_classes"] = num_classes
    return header


def retrained(header: dict):
    """How to save the weights of a network trained from an export (its :func:`export_header`): a function of
    the trained state dict giving the export's record with those weights."""
    return lambda state_dict: {**header, "state_dict": state_dict}


def is_ablated_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a checkpoint written by :func:`export_ablated` (for the model-loading code)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # mmap: no tensor is read
    except Exception:  # not a torch file, or one weights_only refuses: not ours
        return False
    return is_ablated(obj)
