"""seprobe: build, count, time and look inside Squeeze-and-Excitation networks."""

from .errors import SeprobeError
from .models.inventory import SEBlockInfo, se_blocks
from .models.registry import build_model, list_models, plain_counterpart
from .models.se_block import SqueezeExcite
from .models.se_config import SEConfig

__all__ = [
    "SEBlockInfo",
    "SEConfig",
    "SeprobeError",
    "SqueezeExcite",
    "build_model",
    "list_models",
    "plain_counterpart",
    "se_blocks",
]
__version__ = "0.1.0"
