"""Training SE networks with the published recipes: :func:`train` (the engine behind ``seprobe train``)."""

from .data import Datasets, TrainData, decode, list_data, load_data
from .loop import TrainResult, check_start, train
from .recipe import Recipe, default_recipe, learning_rate

__all__ = ["Datasets", "Recipe", "TrainData", "TrainResult", "check_start", "decode", "default_recipe",
           "learning_rate", "list_data", "load_data", "train"]
