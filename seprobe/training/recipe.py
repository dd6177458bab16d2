"""The training recipe: every choice that decides the weights, as one frozen, validated record.

Published defaults (:func:`default_recipe`):

* small images (side <= :data:`SMALL_SIDE`: CIFAR's 32 pixels, Tiny ImageNet's 64): He et al. 2015, Sec. 4.2,
  the recipe the SE paper's CIFAR ResNets "match": SGD with momentum 0.9, weight decay 1e-4, batch 128, learning
  rate 0.1 divided by 10 at 32k and 48k of 64k iterations, i.e. at 50 % and 75 % of training (164 epochs of 391
  steps is about 64k iterations); augmentation: 4-pixel zero padding, a random crop of the image's size and a
  horizontal flip, per-channel mean / std normalisation.
* larger images (ImageNet): He et al. 2016 / the SE paper's Sec. 6: SGD 0.9, weight decay 1e-4, batch 256,
  learning rate 0.1 (scaled by batch / 256, Goyal et al.'s linear rule), divided by 10 every 30 of 90 epochs;
  a random resized crop and a flip at training, the model's evaluation preprocessing (resize + centre crop) at
  validation.

The learning rate of each optimiser step is a pure function of the step (:func:`learning_rate`), so a resumed
run continues on exactly the same curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..choices import DTYPES, SCHEDULES
from ..errors import SeprobeError, check_choice, check_int

#: ``onecycle``: torch's ``OneCycleLR`` defaults (rise over 30 % of the steps from lr / 25, cosine annealing to
#: lr / 25 / 1e4), without momentum cycling.
ONECYCLE_RISE, ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 0.3, 25.0, 1e4
#: Side (pixels) up to which data counts as small (CIFAR, Tiny ImageNet): the CIFAR recipe and in-memory data.
SMALL_SIDE = 64


def _number(name: str, value, low: float, high: float | None = None, *, open_low: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and (high is None or value < high)
    if not ok:
        bound = f"> {low}" if open_low else f">= {low}"
        raise SeprobeError(f"invalid {name} {value!r}; valid: a finite number {bound}"
                           f"{f' and < {high}' if high is not None else ''}", argument=name)


@dataclass(frozen=True)
class Recipe:
    """How to train. ``batch_size`` is the global batch (split evenly over ranks under torchrun); ``milestones``
    are the fractions of all steps at which the ``step`` schedule multiplies the learning rate by ``gamma``;
    ``warmup_epochs`` raise it linearly from 0 first (any schedule but ``onecycle``, which has its own rise);
    ``checkpoint_every``: also write the checkpoint every that many steps (it is always written at each epoch's
    end); ``sync_bn``: SyncBatchNorm under torchrun on CUDA; ``freeze_bn``: BatchNorm layers stay in evaluation
    mode while training (batches normalised with the running statistics, which do not move; the affine
    parameters still learn), for fine-tuning with small batches or weights whose BatchNorm was folded into the
    convolutions (a pass-through BN renormalised by batch statistics is another function); ``clip_grad_norm``:
    the gradients scaled so that their global L2 norm is at most this (``torch.nn.utils.clip_grad_norm_``), for
    networks without normalisation, whose first steps can blow up."""

    epochs: int = 164
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    no_decay_bn_bias: bool = False
    schedule: str = "step"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0
    dtype: str = "float32"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False
    freeze_bn: bool = False
    clip_grad_norm: float | None = None
    checkpoint_every: int | None = None

    def __post_init__(self):
        check_int("epochs", self.epochs)
        check_int("batch_size", self.batch_size)
        _number("lr", self.lr, 0, open_low=True)
        _number("momentum", self.momentum, 0, 1)
        _number("weight_decay", self.weight_decay, 0)
        _number("gamma", self.gamma, 0, open_low=True)
        _number("warmup_epochs", self.warmup_epochs, 0)
        _number("label_smoothing", self.label_smoothing, 0, 1)
        for name in ("no_decay_bn_bias", "channels_last", "compile", "sync_bn", "freeze_bn"):
            if not isinstance(getattr(self, name), bool):
                raise SeprobeError(f"invalid {name} {getattr(self, name)!r}; valid: True or False", argument=name)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise SeprobeError(f"invalid seed {self.seed!r}; valid: an integer >= 0", argument="seed")
        check_choice("schedule", self.schedule, SCHEDULES, argument="schedule")
        check_choice("dtype", self.dtype, DTYPES, argument="dtype")
        if self.checkpoint_every is not None:
            check_int("checkpoint_every", self.checkpoint_every)
        if self.clip_grad_norm is not None:
            _number("clip_grad_norm", self.clip_grad_norm, 0, open_low=True)
        object.__setattr__(self, "milestones", tuple(self.milestones))
        for m in self.milestones:
            _number("milestone", m, 0, 1, open_low=True)
        if list(self.milestones) != sorted(set(self.milestones)):
            raise SeprobeError(f"invalid milestones {self.milestones!r}; valid: increasing fractions in (0, 1)")
        if self.warmup_epochs >= self.epochs:
            raise SeprobeError(f"invalid warmup_epochs {self.warmup_epochs}; valid: fewer than epochs "
                               f"({self.epochs})", argument="warmup_epochs")
        if self.schedule == "onecycle" and self.warmup_epochs:
            raise SeprobeError(f"invalid warmup_epochs {self.warmup_epochs} with schedule 'onecycle'; valid: 0 "
                               "(onecycle rises from lr / 25 by itself)", argument="warmup_epochs")


def default_recipe(side: int, batch_size: int | None = None, **changes) -> Recipe:
    """The published recipe for images of ``side`` pixels (see the module docstring), the learning rate scaled
    linearly with ``batch_size`` from the reference batch (128 for CIFAR, 256 for ImageNet); ``changes``
    override any other field."""
    check_int("side", side)
    small = side <= SMALL_SIDE
    reference = 128 if small else 256
    batch = reference if batch_size is None else batch_size
    check_int("batch_size", batch)
    base = dict(epochs=164, milestones=(0.5, 0.75)) if small else dict(epochs=90, milestones=(1 / 3, 2 / 3))
    return Recipe(**{**base, "batch_size": batch, "lr": 0.1 * batch / reference, **changes})


def warmup_steps(recipe: Recipe, steps_per_epoch: int) -> int:
    return round(recipe.warmup_epochs * steps_per_epoch)


def learning_rate(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of ``recipe.epochs * steps_per_epoch`` steps.

    Warm-up: step ``s < W`` uses ``lr * (s + 1) / W``. Then ``step``: ``lr * gamma ** k``, ``k`` the milestones
    ``round(m * total) <= s``; ``cosine``: ``lr / 2 * (1 + cos(pi * (s - W) / (total - W)))``; ``onecycle``: the
    curve of ``torch.optim.lr_scheduler.OneCycleLR`` with its defaults.
    """
    total = recipe.epochs * steps_per_epoch
    warm = warmup_steps(recipe, steps_per_epoch)
    if step < warm:
        return recipe.lr * (step + 1) / warm
    if recipe.schedule == "step":
        return recipe.lr * recipe.gamma ** sum(round(m * total) <= step for m in recipe.milestones)
    if recipe.schedule == "cosine":
        return recipe.lr / 2 * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))
    return _onecycle(recipe.lr, step, total)


def _cosine_between(start: float, end: float, fraction: float) -> float:
    return end + (start - end) / 2 * (1 + math.cos(math.pi * fraction))


def _onecycle(peak: float, step: int, total: int) -> float:
    low = peak / ONECYCLE_DIV
    top = float(ONECYCLE_RISE * total) - 1
    if step <= top:
        return _cosine_between(low, peak, step / top if top > 0 else 1.0)
    return _cosine_between(peak, low / ONECYCLE_FINAL_DIV, (step - top) / (total - 1 - top))
