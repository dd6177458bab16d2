"""Where an architecture comes from: seprobe's zoo (``se_resnet50``), timm (``timm:NAME[.tag]``) or torchvision
(``torchvision:NAME``). The only module that reads the prefix; everything above asks it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import nn

from ..data.images import Preprocessing
from ..errors import SeprobeError, suggest
from .checkpoints import pretrained_download
from .registry import ModelSpec, get_spec, list_models

TIMM, TORCHVISION = "timm:", "torchvision:"
#: pretrained downloads of each library come from this host (for the offline check)
HOSTS = {TIMM: "huggingface.co", TORCHVISION: "download.pytorch.org"}


def library(name: str) -> str | None:
    """``"timm"`` or ``"torchvision"`` for a foreign model name, ``None`` for an seprobe one."""
    for prefix in (TIMM, TORCHVISION):
        if name.startswith(prefix):
            return prefix[:-1]
    return None


def is_foreign(name: str) -> bool:
    """A timm or torchvision model rather than an seprobe one."""
    return library(name) is not None


def _bare(name: str) -> str:
    return name.partition(":")[2]


def _timm():
    try:
        import timm
    except ImportError:
        raise SeprobeError("timm: models need timm; valid: pip install 'seprobe[timm]'") from None
    return timm


def check_model_name(name: str) -> str:
    """``name`` if it names a model seprobe can build; else an error with the closest names."""
    if not isinstance(name, str):
        raise SeprobeError(f"invalid model {name!r} ({type(name).__name__}); valid: a model name (a string)")
    lib = library(name)
    if lib == "timm":
        base = _bare(name).partition(".")[0]  # a pretrained tag: tf_mobilenetv3_small_100.in1k
        names = _timm().list_models()
        if base not in names:
            raise SeprobeError(f"unknown timm model {base!r}{suggest(base, names)} (valid: a name from "
                               "timm.list_models(), e.g. timm:tf_mobilenetv3_small_100[.tag])")
    elif lib == "torchvision":
        import torchvision

        names = torchvision.models.list_models()
        if _bare(name) not in names:
            raise SeprobeError(f"unknown torchvision model {_bare(name)!r}{suggest(_bare(name), names)} (valid: "
                               "e.g. torchvision:mobilenet_v3_small, efficientnet_b0, regnet_y_400mf)")
    elif name not in list_models():
        raise SeprobeError(f"unknown model {name!r}{suggest(name, list_models())} (valid: `seprobe models`, "
                           "timm:NAME or torchvision:NAME)")
    return name


def build_architecture(name: str, knobs: Mapping[str, Any] | None = None, *, pretrained: bool = False,
                       device: str | None = None, spec: ModelSpec | None = None) -> nn.Module:
    """The network ``name`` names, untrained unless ``pretrained`` (a foreign model's library weights,
    downloaded: online users); ``knobs`` reach seprobe models only; ``device="meta"`` builds an seprobe model
    without memory; ``spec``: its registry entry, when the caller has it."""
    lib = library(name)
    if lib is None:
        return (spec or get_spec(name)).create(device, **dict(knobs or {}))
    if knobs:
        raise SeprobeError(f"model knobs ({', '.join(knobs)}) apply to seprobe models, not {name!r}; valid: "
                           "leave them out for timm: and torchvision: models")
    if lib == "timm":
        timm = _timm()

        def build(pretrained=pretrained):
            return timm.create_model(_bare(name), pretrained=pretrained)
    else:
        import torchvision

        def build(pretrained=pretrained):
            return torchvision.models.get_model(_bare(name), weights="DEFAULT" if pretrained else None)
    if not pretrained:
        return build()
    return pretrained_download(build, f"the pretrained weights of {name}", host=HOSTS[f"{lib}:"])


def evaluation_preprocessing(name: str, model: nn.Module, spec: ModelSpec | None = None) -> Preprocessing:
    """The evaluation transform ``name`` is published with: timm's data config, torchvision's weight
    transforms (ImageNet's default without them); for seprobe models, their registry entry's, else resize to
    ``input_size / 0.875`` and centre-crop ``input_size`` (ImageNet's usual evaluation)."""
    lib = library(name)
    if lib == "timm":
        from timm.data import resolve_data_config

        cfg = resolve_data_config({}, model=model)
        crop = cfg["input_size"][-1]
        return Preprocessing(resize=math.floor(crop / cfg["crop_pct"]), crop=crop, mean=tuple(cfg["mean"]),
                             std=tuple(cfg["std"]), interpolation=cfg["interpolation"])
    if lib == "torchvision":
        import torchvision

        try:
            t = torchvision.models.get_model_weights(_bare(name)).DEFAULT.transforms()
        except (ValueError, AttributeError):  # a model torchvision has no weights for
            return Preprocessing()
        return Preprocessing(resize=t.resize_size[0], crop=t.crop_size[0], mean=tuple(t.mean), std=tuple(t.std),
                             interpolation=t.interpolation.value)
    spec = spec or get_spec(name)
    if spec.evaluation is not None:
        return spec.evaluation
    return Preprocessing(resize=round(spec.input_size / 0.875), crop=spec.input_size)
