"""One optimiser step and one evaluation pass: the computation of training, without bookkeeping.

SGD with momentum on parameter groups (:func:`param_groups`), the learning rate set per step, optional autocast
(bfloat16, or float16 with a ``GradScaler``), channels-last inputs, label-smoothed cross-entropy, the gradients'
global norm clipped (``clip_grad_norm``).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..devices import autocast_dtype
from ..models.heads import topk_hits
from .recipe import Recipe

#: Modules whose parameters count as normalisation (no weight decay with ``no_decay_bn_bias``).
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module, weight_decay: float, no_decay_bn_bias: bool) -> list[dict]:
    """One group with ``weight_decay`` and, with ``no_decay_bn_bias``, a second without it holding every
    normalisation layer's parameters and every bias (Goyal et al. 2017, "no bias decay")."""
    if not no_decay_bn_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    plain, exempt, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (exempt if isinstance(module, NORMS) or name == "bias" else plain).append(p)
    return [{"params": plain, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]


class Stepper:
    """The training step of ``runner`` (the model, possibly wrapped by DDP / compile) for ``recipe``."""

    def __init__(self, net: nn.Module, runner: nn.Module, recipe: Recipe, device: torch.device):
        self.net, self.runner, self.device = net, runner, device
        self.dtype = autocast_dtype(recipe.dtype)
        self.channels_last = recipe.channels_last
        self.optimizer = torch.optim.SGD(param_groups(net, recipe.weight_decay, recipe.no_decay_bn_bias),
                                         lr=recipe.lr, momentum=recipe.momentum)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self.loss = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        self.clip = recipe.clip_grad_norm

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step at ``lr``; returns the batch's mean loss and its number of top-1 hits (device tensors,
        not synchronised)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self.autocast():
            logits = self.runner(self.prepare(x))
            loss = self.loss(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.clip is not None:
            self.scaler.unscale_(self.optimizer)  # the norm of the true gradients (float16: scaled until here)
            nn.utils.clip_grad_norm_(self.net.parameters(), self.clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), (logits.detach().argmax(1) == y).sum()

    @torch.no_grad()
    def evaluate(self, batches) -> tuple[int, int, int]:
        """(top-1 hits, top-5 hits, images) of ``net`` in eval mode over ``batches`` of (x, y)."""
        self.net.eval()
        hits1 = hits5 = seen = 0
        for x, y in batches:
            with self.autocast():
                logits = self.net(self.prepare(x))
            _, hit1, hit5 = topk_hits(logits, y)
            hits1 += int(hit1.sum())
            hits5 += int(hit5.sum())
            seen += len(y)
        return hits1, hits5, seen
