"""Training SE networks with the published recipes: :func:`train` (the engine behind ``seprobe train``)."""

from .data import Datasets, TrainData, load_data
from .loop import TrainResult, train
from .recipe import Recipe, default_recipe, learning_rate

__all__ = ["Datasets", "Recipe", "TrainData", "TrainResult", "default_recipe", "learning_rate", "load_data",
           "train"]
