"""Load a trained SE network for analysis: seprobe's, timm's (``timm:NAME``) or torchvision's
(``torchvision:NAME``), with its weights and its own evaluation preprocessing.

``weights``: a checkpoint path (read with ``weights_only=True``, any layout seprobe knows), ``"timm"`` or
``"torchvision"`` (the library's pretrained download: online users), or ``"random"`` (explicitly: the figures
then mean nothing).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import SeprobeError
from ..models.checkpoints import TIMM_EQUIVALENTS, build_from_timm, load_weights
from ..models.registry import build_model, get_spec
from .images import Preprocessing

PREFIXES = ("timm:", "torchvision:")


@dataclass
class LoadedModel:
    model: nn.Module
    name: str
    weights: str
    preprocessing: Preprocessing
    random: bool


def weights_kind(weights: str | None) -> str:
    """``file``, ``timm``, ``torchvision`` or ``random``; a clear error for anything else."""
    if weights is None:
        raise SeprobeError("no --weights given; valid: a checkpoint path, 'timm' or 'torchvision' (pretrained, "
                           "downloaded), or 'random' (untrained: the figures then mean nothing)")
    if weights in ("timm", "torchvision", "random"):
        return weights
    if not os.path.isfile(weights):
        raise SeprobeError(f"weights {weights!r}: no such file; valid: a checkpoint path, 'timm', 'torchvision' "
                           "or 'random'")
    return "file"


def load_model(spec: str, weights: str | None, **knobs: Any) -> LoadedModel:
    """The model, weights loaded, in eval mode; ``knobs`` apply to seprobe models only."""
    kind = weights_kind(weights)
    if knobs and spec.startswith(PREFIXES):
        raise SeprobeError(f"model knobs ({', '.join(knobs)}) apply to seprobe models, not {spec!r}; valid: "
                           "leave them out for timm: and torchvision: models")
    if spec.startswith("timm:"):
        return _timm(spec.removeprefix("timm:"), weights, kind)
    if spec.startswith("torchvision:"):
        return _torchvision(spec.removeprefix("torchvision:"), weights, kind)
    if kind == "torchvision":
        raise SeprobeError(f"--weights torchvision applies to torchvision:NAME models, not {spec!r}; valid: "
                           "a checkpoint path, 'timm' or 'random'")
    if kind == "timm":
        model = build_model(spec, **knobs)
        timm_name = _timm_equivalent(spec, model)
        model = build_from_timm(timm_name, pretrained=True, **knobs)
    else:
        model = build_model(spec, **knobs)
        if kind == "file":
            load_weights(model, weights)
    size = get_spec(spec).input_size  # resize to size / 0.875 and centre-crop: ImageNet's usual evaluation
    return LoadedModel(model.eval(), spec, weights, Preprocessing(resize=round(size / 0.875), crop=size),
                       kind == "random")


def _timm_equivalent(spec: str, model: nn.Module) -> str:
    for timm_name, (name, arch) in TIMM_EQUIVALENTS.items():
        if name == spec and arch["stride_at"] == model.stride_at and arch["stem_pool"] == model.stem_pool:
            return timm_name
    raise SeprobeError(f"timm publishes no weights for {spec} with stride_at={model.stride_at}, "
                       f"stem_pool={model.stem_pool}; valid: {', '.join(sorted(TIMM_EQUIVALENTS))}")


def _timm(name: str, weights: str, kind: str) -> LoadedModel:
    try:
        import timm
        from timm.data import resolve_data_config
    except ImportError:
        raise SeprobeError("timm: models need timm; valid: pip install 'seprobe[timm]'") from None
    if kind == "torchvision":
        raise SeprobeError("--weights torchvision applies to torchvision:NAME models; valid: a path, timm, random")
    if name not in timm.list_models():
        raise SeprobeError(f"unknown timm model {name!r}; valid: a name from timm.list_models(), e.g. "
                           "tf_mobilenetv3_small_100")
    model = timm.create_model(name, pretrained=kind == "timm")
    if kind == "file":
        load_weights(model, weights, layout="seprobe")  # timm's own key names, loaded strictly
    cfg = resolve_data_config({}, model=model)
    crop = cfg["input_size"][-1]
    pre = Preprocessing(resize=math.floor(crop / cfg["crop_pct"]), crop=crop, mean=tuple(cfg["mean"]),
                        std=tuple(cfg["std"]), interpolation=cfg["interpolation"])
    return LoadedModel(model.eval(), f"timm:{name}", weights, pre, kind == "random")


def _torchvision(name: str, weights: str, kind: str) -> LoadedModel:
    import torchvision

    if name not in torchvision.models.list_models():
        raise SeprobeError(f"unknown torchvision model {name!r}; valid: e.g. mobilenet_v3_small, efficientnet_b0, "
                           "regnet_y_400mf")
    if kind == "timm":
        raise SeprobeError("--weights timm applies to timm:NAME and seprobe models; valid: a path, torchvision, "
                           "random")
    model = torchvision.models.get_model(name, weights="DEFAULT" if kind == "torchvision" else None)
    if kind == "file":
        load_weights(model, weights, layout="seprobe")
    pre = Preprocessing()
    if kind == "torchvision":
        t = torchvision.models.get_model_weights(name).DEFAULT.transforms()
        pre = Preprocessing(resize=t.resize_size[0], crop=t.crop_size[0], mean=tuple(t.mean), std=tuple(t.std),
                            interpolation=t.interpolation.value)
    return LoadedModel(model.eval(), f"torchvision:{name}", weights, pre, kind == "random")
