"""seprobe: build, count, time and look inside Squeeze-and-Excitation networks.

The package is laid out as the paper is: ``seprobe.models`` (the SE block and the networks that carry it),
``seprobe.cost`` (multiply-adds, parameters, time), ``seprobe.probe`` (gates of trained networks over labelled
images) and ``seprobe.studies`` (the paper's tables as studies). The functions below are the Python face of the
commands (``seprobe.complexity`` is ``seprobe complexity``, ``seprobe.ablate`` is ``seprobe ablate``, and so
on); names load on first use, so that ``import seprobe`` (and the command line's ``--help``) does not import
torch.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from .errors import SeprobeError

try:
    __version__ = version("seprobe")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "SEBlockInfo": "seprobe.models.inventory",
    "se_blocks": "seprobe.models.inventory",
    "SEConfig": "seprobe.models.se_config",
    "SqueezeExcite": "seprobe.models.se_block",
    "build_model": "seprobe.models.registry",
    "list_models": "seprobe.models.registry",
    "plain_counterpart": "seprobe.models.registry",
    "complexity": "seprobe.api",
    "ablate": "seprobe.api",
    "activations": "seprobe.api",
    "evaluate": "seprobe.api",
    "run_studies": "seprobe.api",
    "load_model": "seprobe.probe.loading",
}

__all__ = [
    "SEBlockInfo",
    "SEConfig",
    "SeprobeError",
    "SqueezeExcite",
    "__version__",
    "ablate",
    "activations",
    "build_model",
    "complexity",
    "evaluate",
    "list_models",
    "load_model",
    "plain_counterpart",
    "run_studies",
    "se_blocks",
]

if TYPE_CHECKING:
    from .api import ablate, activations, complexity, evaluate, run_studies
    from .models.inventory import SEBlockInfo, se_blocks
    from .models.registry import build_model, list_models, plain_counterpart
    from .models.se_block import SqueezeExcite
    from .models.se_config import SEConfig
    from .probe.loading import load_model


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'seprobe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
