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
from .sources import build_architecture

FORMAT = "seprobe-ablated/1"

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
    payload = {"format": FORMAT, "model": model_name, "knobs": dict(knobs or {}), "removed": list(export.removed),
               "scaled": dict(export.scaled), "blocks": dict(export.how),
               "preprocessing": asdict(preprocessing) if preprocessing is not None else None,
               "state_dict": {k: v.detach().cpu().clone() for k, v in export.model.state_dict().items()}}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    return export


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
    if obj.get("format") == FORMAT:
        return dict(obj)
    record = obj.get("record")
    meta = record.get("meta") if isinstance(record, Mapping) else None
    header = meta.get("export") if isinstance(meta, Mapping) else None
    if isinstance(header, Mapping) and header.get("format") == FORMAT and isinstance(obj.get("model"), Mapping):
        return {**header, "state_dict": obj["model"]}
    return None


@dataclass
class AblatedModel:
    model: nn.Module
    model_name: str  # the registered (or timm: / torchvision:) name of the base architecture
    knobs: dict[str, Any]
    blocks: dict[str, str]
    preprocessing: dict[str, Any] | None


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
        raise SeprobeError(f"{path}: not an ablated network (format {found!r}); valid: a file written by "
                           f"seprobe ablate's export (format {FORMAT!r})")
    obj = as_export(obj)
    model = apply_surgery(build_architecture(obj["model"], obj["knobs"]), obj["removed"], obj["scaled"])
    if obj.get("num_classes") is not None:
        replace_head(model, obj["num_classes"])
    try:
        model.load_state_dict(obj["state_dict"], strict=True)
    except RuntimeError as e:
        raise SeprobeError(f"{path}: the state dict does not fit {obj['model']} after the recorded surgery: "
                           f"{str(e).splitlines()[0]}") from None
    return AblatedModel(model.eval(), obj["model"], dict(obj["knobs"]), dict(obj["blocks"]), obj["preprocessing"])


def export_header(path: str | os.PathLike, num_classes: int | None = None) -> dict:
    """The record of the export at ``path`` without its weights (plain data), with the size of a new head when
    training gave it a ``num_classes``-way one: what a network trained from it is saved with, so that it loads
    as the export does (:func:`retrained`, and the training checkpoint's record, :func:`as_export`)."""
    obj = as_export(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
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
