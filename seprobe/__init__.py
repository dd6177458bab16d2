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
from typing import TYPE_CHECKING

from .errors import SeprobeError
from .version import __version__

_LAZY = {
    "SEBlockInfo": "seprobe.models.blocks",
    "se_blocks": "seprobe.models.blocks",
    "find_blocks": "seprobe.models.blocks",
    "SEConfig": "seprobe.models.se_config",
    "SqueezeExcite": "seprobe.models.se_block",
    "build_model": "seprobe.models.registry",
    "list_models": "seprobe.models.registry",
    "plain_counterpart": "seprobe.models.registry",
    "ModelSource": "seprobe.models.factory",
    "Network": "seprobe.models.factory",
    "get_network": "seprobe.models.factory",
    "load_model": "seprobe.models.factory",
    "ImageSource": "seprobe.data.images",
    "Overrides": "seprobe.data.overrides",
    "Loader": "seprobe.probe.evaluation",
    "AblationPlan": "seprobe.probe.ablation_plan",
    "CalibrationSource": "seprobe.probe.ablation_plan",
    "FlopConvention": "seprobe.cost.flops",
    "TimingSetup": "seprobe.cost.timing",
    "time_models": "seprobe.cost.timing",
    "complexity": "seprobe.api",
    "ablate": "seprobe.api",
    "activations": "seprobe.api",
    "evaluate": "seprobe.api",
    "train": "seprobe.api",
    "split_holdout": "seprobe.api",
    "prune": "seprobe.api",
    "PrunePlan": "seprobe.pruning.plan",
    "Recipe": "seprobe.training.recipe",
    "run_studies": "seprobe.studies.regenerate",
    "reports": "seprobe.studies.regenerate",
}

__all__ = [
    "AblationPlan",
    "CalibrationSource",
    "FlopConvention",
    "ImageSource",
    "Loader",
    "ModelSource",
    "PrunePlan",
    "Recipe",
    "Network",
    "Overrides",
    "SEBlockInfo",
    "SEConfig",
    "SeprobeError",
    "SqueezeExcite",
    "TimingSetup",
    "__version__",
    "ablate",
    "activations",
    "build_model",
    "complexity",
    "evaluate",
    "find_blocks",
    "get_network",
    "list_models",
    "load_model",
    "plain_counterpart",
    "prune",
    "reports",
    "run_studies",
    "se_blocks",
    "split_holdout",
    "time_models",
    "train",
]

if TYPE_CHECKING:
    from .api import ablate, activations, complexity, evaluate, split_holdout, train
    from .cost.flops import FlopConvention
    from .cost.timing import TimingSetup, time_models
    from .data.images import ImageSource
    from .data.overrides import Overrides
    from .models.blocks import SEBlockInfo, find_blocks, se_blocks
    from .models.factory import ModelSource, Network, get_network, load_model
    from .models.registry import build_model, list_models, plain_counterpart
    from .models.se_block import SqueezeExcite
    from .models.se_config import SEConfig
    from .probe.ablation_plan import AblationPlan
    from .probe.calibration import CalibrationSource
    from .probe.evaluation import Loader
    from .studies.regenerate import reports, run_studies
    from .training.recipe import Recipe


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'seprobe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
