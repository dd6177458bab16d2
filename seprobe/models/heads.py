"""The classifier of a network: how many classes it has, and a new one for other data.

seprobe's models and timm's take ``num_classes``; torchvision's and checkpoints of any of them end in a linear
layer (``fc``, ``classifier[-1]``, timm's ``get_classifier()``). A new head is that layer replaced by one of
the same input width, initialised as ``nn.Linear`` is (the caller's random state decides it).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import SeprobeError


def classifier_path(model: nn.Module) -> str:
    """The module path of the last linear layer: the classifier of every network seprobe builds or loads."""
    if hasattr(model, "get_classifier"):  # timm
        head = model.get_classifier()
        for path, module in model.named_modules():
            if module is head and isinstance(module, nn.Linear):
                return path
    paths = [path for path, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not paths:
        raise SeprobeError(f"{type(model).__name__} has no linear classifier; valid: a classification network")
    return paths[-1]


def num_outputs(model: nn.Module) -> int:
    return model.get_submodule(classifier_path(model)).out_features


def topk_hits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: the predicted class, whether it is the label (top-1), and whether the label is among the five
    highest logits (top-5; all of them when there are fewer), on the device of ``labels``."""
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices.to(labels.device)
    truth = labels.unsqueeze(1)
    return top5[:, 0], (top5[:, :1] == truth).any(1), (top5 == truth).any(1)


def replace_head(model: nn.Module, num_classes: int) -> str:
    """Give ``model`` a new ``num_classes``-way classifier (in place); its path."""
    path = classifier_path(model)
    old = model.get_submodule(path)
    model.set_submodule(path, nn.Linear(old.in_features, num_classes, bias=old.bias is not None,
                                        device=old.weight.device, dtype=old.weight.dtype))
    return path
