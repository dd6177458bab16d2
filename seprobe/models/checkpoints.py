"""Load foreign SE-ResNet checkpoints into seprobe's models by key mapping, never by running code.

Three layouts are understood:

* ``seprobe``: this package's own ``state_dict`` (also torchvision's ResNet).
* ``legacy``: timm's ``legacy_seresnet*`` / ``legacy_seresnext*`` and Cadene's ``pretrainedmodels``
  ``se_resnet*`` / ``se_resnext*``: stem in ``layer0``, SE in ``se_module``, classifier ``last_linear``.
* ``timm``: timm's ``resnet*`` / ``seresnet*`` / ``seresnext*``: torchvision's names, SE in ``se``.

Weights carry no trace of where the stride sits, so the model must be built to match (see
:data:`TIMM_EQUIVALENTS`): legacy SE-ResNets put it in the first 1x1 conv (Caffe), but legacy SE-ResNeXts,
like timm's ``seresnet*``, in the 3x3. All legacy models use Caffe's ``ceil`` stem pool.
timm's ``legacy_seresnet18/34`` are left out: their basic block applies a ReLU after ``bn2``, before SE, which
the standard residual unit (and seprobe's) does not; their keys load, their logits differ.
timm's ``seresnet18/34`` round the hidden width up to a multiple of 8
(``make_divisible``: 64 / 16 = 4 becomes 8), so they do not fit ``r = 16`` either; from ResNet-50 up,
every ``C / 16`` is already a multiple of 8 and the widths agree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import SeprobeError

LAYOUTS = ("seprobe", "legacy", "timm")

#: timm model name -> (seprobe model name, the architecture knobs that reproduce it exactly).
TIMM_EQUIVALENTS: dict[str, tuple[str, dict[str, Any]]] = {}
for _depth in (18, 34, 50, 101, 152):
    if _depth >= 50:
        TIMM_EQUIVALENTS[f"legacy_seresnet{_depth}"] = (
            f"se_resnet{_depth}", {"stride_at": "1x1", "stem_pool": "ceil"})
        TIMM_EQUIVALENTS[f"seresnet{_depth}"] = (f"se_resnet{_depth}", {"stride_at": "3x3", "stem_pool": "pad"})
    TIMM_EQUIVALENTS[f"resnet{_depth}"] = (f"resnet{_depth}", {"stride_at": "3x3", "stem_pool": "pad"})
for _depth in (50, 101):
    _name = f"resnext{_depth}_32x4d"
    TIMM_EQUIVALENTS[f"legacy_se{_name}"] = (f"se_{_name}", {"stride_at": "3x3", "stem_pool": "ceil"})
    TIMM_EQUIVALENTS[f"se{_name}"] = (f"se_{_name}", {"stride_at": "3x3", "stem_pool": "pad"})
    TIMM_EQUIVALENTS[_name] = (_name, {"stride_at": "3x3", "stem_pool": "pad"})

_LEGACY_RENAMES = (
    (re.compile(r"^layer0\.(conv1|bn1)\."), r"\1."),
    (re.compile(r"\.se_module\."), ".se."),
    (re.compile(r"^last_linear\."), "fc."),
)
_WRAPPER_KEYS = ("state_dict", "model", "state_dict_ema", "model_ema")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a file, loaded with ``weights_only=True`` (a checkpoint never runs code).

    Training checkpoints that wrap it (``{"state_dict": ...}``, ``{"model": ...}``) and DataParallel's
    ``module.`` prefix are unwrapped.
    """
    if not os.path.isfile(path):
        raise SeprobeError(f"checkpoint {str(path)!r} does not exist; valid: a path to a .pth/.pt state dict")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated files, code objects refused by weights_only
        raise SeprobeError(f"cannot read checkpoint {str(path)!r}: {str(e).splitlines()[0]}") from None
    return unwrap_state_dict(obj, str(path))


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    for key in _WRAPPER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SeprobeError(f"{source} holds no state dict; valid: a mapping of parameter names to tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """``"legacy"`` (Cadene / timm legacy), ``"timm"`` or ``"seprobe"``, from the key names."""
    if any(k.startswith("layer0.") or ".se_module." in k or k.startswith("last_linear.") for k in state_dict):
        return "legacy"
    if any(".se.bn." in k for k in state_dict):
        return "timm"
    return "seprobe"  # timm's seresnet/resnet keys coincide with seprobe's and torchvision's


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], layout: str = "auto") -> dict[str, torch.Tensor]:
    """Rename the keys of a ``legacy`` / ``timm`` / ``seprobe`` state dict to seprobe's names."""
    if layout == "auto":
        layout = detect_layout(state_dict)
    if layout not in LAYOUTS:
        raise SeprobeError(f"unknown checkpoint layout {layout!r}; valid: auto, {', '.join(LAYOUTS)}")
    out = {}
    for key, value in state_dict.items():
        if layout == "legacy":
            for pattern, repl in _LEGACY_RENAMES:
                key = pattern.sub(repl, key)
        out[key] = value
    return out


def load_weights(model: nn.Module, weights: str | os.PathLike | Mapping[str, torch.Tensor],
                 layout: str = "auto") -> nn.Module:
    """Load a checkpoint (a path or a state dict, in any known layout) into ``model``, strictly.

    A missing, unexpected or mis-shaped key raises :class:`SeprobeError` naming the first offending keys.
    """
    state = read_state_dict(weights) if isinstance(weights, (str, os.PathLike)) else unwrap_state_dict(weights)
    state = convert_state_dict(state, layout)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in own.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_first(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch {_first(shapes)}")
    if problems:
        raise SeprobeError("checkpoint does not fit the model: " + "; ".join(problems)
                           + " (is it the same architecture and SE configuration?)")
    model.load_state_dict(state, strict=True)
    return model


def _first(items: list[str], n: int = 3) -> str:
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def timm_state_dict(timm_name: str, pretrained: bool = True) -> dict[str, torch.Tensor]:
    """The state dict of a timm model, downloaded from the hub when ``pretrained`` (needs ``seprobe[timm]``)."""
    try:
        import timm
    except ImportError:
        raise SeprobeError("timm is not installed; valid: pip install 'seprobe[timm]'") from None
    return timm.create_model(timm_name, pretrained=pretrained).state_dict()


def build_from_timm(timm_name: str, pretrained: bool = True, **knobs: Any) -> nn.Module:
    """The seprobe model equivalent to a timm SE-ResNet/ResNeXt, with its (pretrained) weights loaded."""
    from .registry import build_model

    if timm_name not in TIMM_EQUIVALENTS:
        raise SeprobeError(f"no seprobe equivalent of timm model {timm_name!r}; "
                           f"valid: {', '.join(sorted(TIMM_EQUIVALENTS))}")
    name, arch = TIMM_EQUIVALENTS[timm_name]
    model = build_model(name, **{**arch, **knobs})
    return load_weights(model, timm_state_dict(timm_name, pretrained=pretrained))
