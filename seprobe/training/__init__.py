"""Training SE networks with the published recipes: :func:`train` (the engine behind ``seprobe train``).

The recipe is imported with the package (torch-free: the command line declares its options from
:class:`Recipe`'s fields); the engine and the data, which need torch, when first used.
"""

from .recipe import Recipe, default_recipe, learning_rate

__all__ = ["DataListing", "Datasets", "Recipe", "TrainData", "TrainResult", "check_start", "decode",
           "default_recipe", "learning_rate", "list_data", "load_data", "train"]


def __getattr__(name: str):
    if name in ("DataListing", "Datasets", "TrainData", "decode", "list_data", "load_data"):
        from . import data

        return getattr(data, name)
    if name in ("TrainResult", "check_start", "train"):
        from . import loop

        return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
