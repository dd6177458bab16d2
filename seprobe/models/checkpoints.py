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

import contextlib
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

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
    ``module.`` prefix are unwrapped. A TorchScript archive, a payload that is not a mapping of names to dense
    tensors, or a non-finite weight raise :class:`SeprobeError` naming the file and the offending key.
    """
    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "does not exist"
        raise SeprobeError(f"checkpoint {str(path)!r} {what}; valid: a path to a .pth/.pt state dict")
    if _is_torchscript(path):
        raise SeprobeError(
            f"checkpoint {str(path)!r} is a TorchScript archive (torch.jit.save), which seprobe does not load; "
            f"valid: its state dict, saved with python -c \"import torch; torch.save(torch.jit.load('{path}')"
            f".state_dict(), 'weights.pth')\", then the weights weights.pth", argument="weights")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated files, code objects refused by weights_only
        raise SeprobeError(f"cannot read checkpoint {str(path)!r} ({load_failure(e)}); valid: a state dict or "
                           "training checkpoint saved by torch.save, readable with weights_only=True") from None
    state = unwrap_state_dict(obj, str(path))
    check_finite(state, str(path))
    return state


#: torch.load's advice around a refusal: to load the file with ``weights_only=False``, which would run the code a
#: hostile file holds, or to allow its classes; never repeated to a user
_ADVICE = re.compile(r"weights_only|safe_globals|trusted source|trust the source|arbitrary code|can still be loaded"
                     r"|documentation of torch\.load|^Weights only load failed", re.IGNORECASE)


def load_failure(e: BaseException) -> str:
    """Why ``torch.load`` could not read a file, in one line: the first sentence of its error that is not advice
    (:data:`_ADVICE`), else what ``weights_only`` refuses in general."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # torch emboldens its advice for terminals
    sentences = [s.strip(" \t") for line in text.splitlines() for s in re.split(r"(?<=\.)\s+", line)]
    reason = next((s for s in sentences if s and not _ADVICE.search(s)), None)
    if reason is None:
        reason = "it holds objects other than tensors and plain values" if "Weights only" in str(e) else ""
    return f"{type(e).__name__}: {reason}" if reason else type(e).__name__


def _is_torchscript(path: str | os.PathLike) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder (``torch.save`` zips hold ``data.pkl`` only)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in name or name.startswith("code/") for name in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    for key in _WRAPPER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise SeprobeError(f"{source} holds {_what(obj)}, not a state dict; valid: a mapping of parameter names "
                           "to tensors (torch.save(model.state_dict(), path))")
    for k, v in obj.items():
        if not isinstance(k, str):
            raise SeprobeError(f"{source}: key {k!r} is {_what(k)}; valid: a state dict, whose keys are parameter "
                               "names (strings)")
        if not isinstance(v, torch.Tensor):
            raise SeprobeError(f"{source}: {k!r} holds {_what(v)}; valid: a state dict, whose values are tensors")
        if v.layout != torch.strided:
            raise SeprobeError(f"{source}: {k!r} is a {v.layout} tensor; valid: dense tensors (convert it with "
                               ".to_dense() before saving)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _what(obj: Any) -> str:
    name = type(obj).__name__
    return "None" if obj is None else f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def check_finite(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise :class:`SeprobeError` naming the first floating-point tensor that holds NaN or inf: such weights
    make every gate and logit NaN."""
    for k, v in state.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            bad = int((~torch.isfinite(v)).sum())
            raise SeprobeError(f"{source}: {k!r} holds {bad} non-finite values (NaN or inf) of {v.numel()}; "
                               "valid: a checkpoint with finite weights (a diverged training run?)")


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
    if isinstance(weights, (str, os.PathLike)):
        state = read_state_dict(weights)
    else:
        state = unwrap_state_dict(weights)
        check_finite(state)
    state = convert_state_dict(state, layout)
    problems = fit_problems(state, model.state_dict())
    if problems:
        raise SeprobeError(f"checkpoint does not fit the model: {problems} (is it the same architecture and SE "
                           "configuration?)")
    model.load_state_dict(state, strict=True)
    return model


def fit_problems(state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]) -> str | None:
    """What keeps ``state`` from loading strictly into a model whose state dict is ``own`` (its missing,
    unexpected and mis-shaped keys, the first of each), or None."""
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
    return "; ".join(problems) or None


def _first(items: list[str], n: int = 3) -> str:
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def timm_state_dict(timm_name: str, pretrained: bool = True) -> dict[str, torch.Tensor]:
    """The state dict of a timm model, downloaded from the hub when ``pretrained`` (needs ``seprobe[timm]``)."""
    try:
        import timm
    except ImportError:
        raise SeprobeError("timm is not installed; valid: pip install 'seprobe[timm]'") from None
    if not pretrained:
        return timm.create_model(timm_name).state_dict()
    return pretrained_download(lambda: timm.create_model(timm_name, pretrained=True),
                               f"timm's pretrained {timm_name}").state_dict()


def timm_equivalent(name: str, model: nn.Module) -> str:
    """The timm model whose published weights fit seprobe's ``name`` as ``model`` is built (its stride and stem
    pool), or a :class:`SeprobeError` saying which seprobe models have one."""
    candidates = {t: arch for t, (n, arch) in TIMM_EQUIVALENTS.items() if n == name}
    if not candidates:
        have = sorted({n for n, _ in TIMM_EQUIVALENTS.values()})
        raise SeprobeError(f"timm publishes no weights for {name}; valid: weights from a FILE or random, or a "
                           f"model with timm weights: {', '.join(have)}", argument="weights")
    built = {"stride_at": getattr(model, "stride_at", None), "stem_pool": getattr(model, "stem_pool", None)}
    for timm_name, arch in candidates.items():
        if arch == built:
            return timm_name
    fits = "; ".join(f"{t}: stride_at={a['stride_at']}, stem_pool={a['stem_pool']}" for t, a in candidates.items())
    raise SeprobeError(f"timm publishes no weights for {name} with stride_at={built['stride_at']}, "
                       f"stem_pool={built['stem_pool']}; valid: {fits}")


def build_from_timm(timm_name: str, pretrained: bool = True, **knobs: Any) -> nn.Module:
    """The seprobe model equivalent to a timm SE-ResNet/ResNeXt, with its (pretrained) weights loaded."""
    from .registry import build_model

    if timm_name not in TIMM_EQUIVALENTS:
        raise SeprobeError(f"no seprobe equivalent of timm model {timm_name!r}; "
                           f"valid: {', '.join(sorted(TIMM_EQUIVALENTS))}")
    name, arch = TIMM_EQUIVALENTS[timm_name]
    model = build_model(name, **{**arch, **knobs})
    return load_weights(model, timm_state_dict(timm_name, pretrained=pretrained))


# Pretrained downloads (timm: the Hugging Face hub; torchvision: download.pytorch.org) retry and time out for
# about a minute without a network, then end in a urllib/requests traceback. pretrained_download fails in
# seconds and in one line instead.

T = TypeVar("T")
PROBE_SECONDS = 5.0


def pretrained_download(fn: Callable[[], T], what: str, host: str = "huggingface.co",
                        timeout: float = PROBE_SECONDS) -> T:
    """Call ``fn`` (a download, e.g. ``lambda: timm.create_model(name, pretrained=True)``) and turn a network
    failure into one :class:`SeprobeError` naming ``what``.

    Without a route to ``host`` (tried for ``timeout`` seconds; skipped behind an HTTPS proxy), ``fn`` runs in
    the Hugging Face hub's offline mode and with a short socket timeout, so a cached file still loads and a
    missing one fails at once instead of after the hub's retries.
    """
    if _behind_proxy() or _reachable(host, timeout):
        try:
            return fn()
        except Exception as e:
            if not _network_error(e):
                raise
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise SeprobeError(f"cannot download {what}: {reason}; valid: a local checkpoint path "
                               "as the weights", argument="weights") from None
    try:
        with _offline(timeout):
            return fn()
    except Exception as e:
        if not _network_error(e):
            raise
        raise SeprobeError(f"cannot download {what}: {host} cannot be reached (offline?) and it is not in the "
                           "local cache; valid: a local checkpoint path as the weights", argument="weights") from None


def _behind_proxy() -> bool:
    return any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"))


def _reachable(host: str, timeout: float) -> bool:
    """Whether a TCP connection to ``host``:443 opens within ``timeout`` seconds (name lookup included, which
    has no timeout of its own: it runs in a thread that is abandoned when late)."""
    import socket
    import threading

    result = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


@contextlib.contextmanager
def _offline(timeout: float):
    """The Hugging Face hub in offline mode (cache only) and a short default socket timeout (torch.hub)."""
    import socket

    old_env, old_timeout = os.environ.get("HF_HUB_OFFLINE"), socket.getdefaulttimeout()
    constants = sys.modules.get("huggingface_hub.constants")
    old_flag = getattr(constants, "HF_HUB_OFFLINE", None)
    os.environ["HF_HUB_OFFLINE"] = "1"
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    socket.setdefaulttimeout(timeout)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old_timeout)
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env
        if constants is not None:
            constants.HF_HUB_OFFLINE = old_flag


def _network_error(e: BaseException) -> bool:
    """Connection, HTTP and cache-miss errors of urllib, requests, httpx and the Hugging Face hub."""
    module = type(e).__module__.split(".")[0]
    return isinstance(e, (OSError, ConnectionError, TimeoutError)) or module in (
        "huggingface_hub", "urllib", "urllib3", "requests", "httpx")
