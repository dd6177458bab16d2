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

from ..config import WEIGHT_SOURCES
from ..errors import SeprobeError, suggest
from ..models.checkpoints import build_from_timm, load_weights, pretrained_download, timm_equivalent
from ..models.registry import build_model, get_spec
from .images import Preprocessing

PREFIXES = ("timm:", "torchvision:")


def is_foreign(spec: str) -> bool:
    """A timm or torchvision model (``timm:NAME[.tag]``, ``torchvision:NAME``) rather than an seprobe one."""
    return spec.startswith(PREFIXES)


def _timm_names() -> list[str]:
    try:
        import timm
    except ImportError:
        raise SeprobeError("timm: models need timm; valid: pip install 'seprobe[timm]'") from None
    return timm.list_models()


def check_model_name(spec: str) -> str:
    """``spec`` if it names a model seprobe can build; else an error with the closest names."""
    from ..models.registry import list_models

    if spec.startswith("timm:"):
        base = spec.removeprefix("timm:").partition(".")[0]  # a pretrained tag: tf_mobilenetv3_small_100.in1k
        names = _timm_names()
        if base not in names:
            raise SeprobeError(f"unknown timm model {base!r}{suggest(base, names)} (valid: a name from "
                               "timm.list_models(), e.g. timm:tf_mobilenetv3_small_100[.tag])")
    elif spec.startswith("torchvision:"):
        import torchvision

        name = spec.removeprefix("torchvision:")
        names = torchvision.models.list_models()
        if name not in names:
            raise SeprobeError(f"unknown torchvision model {name!r}{suggest(name, names)} (valid: e.g. "
                               "torchvision:mobilenet_v3_small, efficientnet_b0, regnet_y_400mf)")
    elif spec not in list_models():
        raise SeprobeError(f"unknown model {spec!r}{suggest(spec, list_models())} (valid: `seprobe models`, "
                           "timm:NAME or torchvision:NAME)")
    return spec


def foreign_model(spec: str, pretrained: bool = False) -> nn.Module:
    """A timm or torchvision model, untrained unless ``pretrained`` (then downloaded: online users)."""
    check_model_name(spec)
    if spec.startswith("timm:"):
        import timm

        if not pretrained:
            return timm.create_model(spec.removeprefix("timm:"))
        return _download(lambda: timm.create_model(spec.removeprefix("timm:"), pretrained=True), spec)
    import torchvision

    name = spec.removeprefix("torchvision:")
    if not pretrained:
        return torchvision.models.get_model(name, weights=None)
    return _download(lambda: torchvision.models.get_model(name, weights="DEFAULT"), spec, "download.pytorch.org")


def foreign_input_size(spec: str) -> int:
    """The side a foreign model is evaluated at (its pretrained configuration's crop)."""
    return _foreign_preprocessing(spec, foreign_model(spec), pretrained=True).crop


def _download(build, spec: str, host: str = "huggingface.co"):
    """``build()``, a download of pretrained weights: offline, one clear line at once (see
    :func:`~seprobe.models.checkpoints.pretrained_download`)."""
    return pretrained_download(build, f"the pretrained weights of {spec}", host=host)


@dataclass
class LoadedModel:
    model: nn.Module
    name: str
    weights: str
    preprocessing: Preprocessing
    random: bool


def weights_kind(weights: str | None) -> str:
    """``file``, ``pretrained`` (``timm`` and ``torchvision`` are its older names) or ``random``; a clear error
    for anything else."""
    if weights is None:
        raise SeprobeError("no --weights given; valid: a checkpoint path, 'pretrained' (downloaded through timm or "
                           "torchvision), or 'random' (untrained: the figures then mean nothing)")
    if weights in WEIGHT_SOURCES:
        return weights
    if os.path.isdir(weights):
        raise SeprobeError(f"weights {weights!r} is a folder; valid: a checkpoint file, 'pretrained' or 'random'")
    if not os.path.isfile(weights):
        raise SeprobeError(f"weights {weights!r}: no such file; valid: a checkpoint path, 'timm', 'torchvision' "
                           "or 'random'")
    return "file"


#: the seed of ``--weights random``: the same untrained network in every run and on every torchrun rank
RANDOM_SEED = 0


def load_model(spec: str, weights: str | None, **knobs: Any) -> LoadedModel:
    """The model, weights loaded, in eval mode, with its own evaluation preprocessing; ``knobs`` apply to seprobe
    models only. ``weights="pretrained"`` downloads the library's weights: timm's or torchvision's for their
    models, timm's port of the official weights for the seprobe SE-ResNets/ResNeXts timm has. ``"random"`` is
    the initialisation seeded with :data:`RANDOM_SEED`, leaving the caller's random state as it was."""
    if weights == "random":
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            return _load_model(spec, weights, **knobs)
    return _load_model(spec, weights, **knobs)


def _load_model(spec: str, weights: str | None, **knobs: Any) -> LoadedModel:
    kind = weights_kind(weights)
    check_model_name(spec)
    if kind == "file":
        from .folding import is_ablated_file, load_ablated_model

        if is_ablated_file(weights):  # written by `seprobe ablate --export`: it says how to rebuild itself
            loaded = load_ablated_model(weights)
            if not loaded.name.startswith(f"{spec} "):
                raise SeprobeError(f"{weights} is an ablated {loaded.name.split(' (')[0]}, not {spec}; valid: "
                                   f"--model {loaded.name.split(' (')[0]}")
            return loaded
    pretrained = kind in ("pretrained", "timm", "torchvision")
    if is_foreign(spec):
        if knobs:
            raise SeprobeError(f"model knobs ({', '.join(knobs)}) apply to seprobe models, not {spec!r}; valid: "
                               "leave them out for timm: and torchvision: models")
        library = spec.partition(":")[0]
        if kind in ("timm", "torchvision") and kind != library:
            raise SeprobeError(f"--weights {kind} does not apply to {spec}; valid: 'pretrained' ({library}'s "
                               "weights), a checkpoint path, or 'random'")
        model = foreign_model(spec, pretrained=pretrained)
        if kind == "file":
            load_weights(model, weights, layout="seprobe")  # the library's own key names, loaded strictly
        return LoadedModel(model.eval(), spec, weights, _foreign_preprocessing(spec, model, pretrained),
                           kind == "random")
    if kind == "torchvision":
        raise SeprobeError(f"--weights torchvision applies to torchvision:NAME models, not {spec!r}; valid: "
                           "'pretrained', a checkpoint path, or 'random'")
    model = build_model(spec, **knobs)
    if pretrained:
        timm_name = timm_equivalent(spec, model)
        model = _download(lambda: build_from_timm(timm_name, pretrained=True, **knobs), spec)
    elif kind == "file":
        load_weights(model, weights)
    size = get_spec(spec).input_size  # resize to size / 0.875 and centre-crop: ImageNet's usual evaluation
    return LoadedModel(model.eval(), spec, weights, Preprocessing(resize=round(size / 0.875), crop=size),
                       kind == "random")


def _foreign_preprocessing(spec: str, model: nn.Module, pretrained: bool) -> Preprocessing:
    """timm's data config for the model; torchvision's weight transforms (or ImageNet's default without them)."""
    if spec.startswith("timm:"):
        from timm.data import resolve_data_config

        cfg = resolve_data_config({}, model=model)
        crop = cfg["input_size"][-1]
        return Preprocessing(resize=math.floor(crop / cfg["crop_pct"]), crop=crop, mean=tuple(cfg["mean"]),
                             std=tuple(cfg["std"]), interpolation=cfg["interpolation"])
    import torchvision

    try:
        t = torchvision.models.get_model_weights(spec.removeprefix("torchvision:")).DEFAULT.transforms()
    except (ValueError, AttributeError):  # a model torchvision has no weights for
        return Preprocessing()
    return Preprocessing(resize=t.resize_size[0], crop=t.crop_size[0], mean=tuple(t.mean), std=tuple(t.std),
                         interpolation=t.interpolation.value)
