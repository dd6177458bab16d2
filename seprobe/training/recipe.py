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
from typing import Annotated

from ..choices import SCHEDULES
from ..errors import SeprobeError, check_int
from ..schema import CHANNELS_LAST, COMPILE, DTYPE, Bool, Choice, Int, Items, Number, Options

#: ``onecycle``: torch's ``OneCycleLR`` defaults (rise over 30 % of the steps from lr / 25, cosine annealing to
#: lr / 25 / 1e4), without momentum cycling.
ONECYCLE_RISE, ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 0.3, 25.0, 1e4
#: The weights are float32: a learning rate, weight decay, factor or norm beyond its range makes every update inf
FLOAT32_MAX = 3.4028234663852886e38
#: Seeds up to 2**32 - 1 (numpy's range): ``seed * 1_000_003 + epoch`` (the data order's seed) then stays within
#: torch's 64-bit generator seeds for any number of epochs a run could train
SEED_MAX = 2**32 - 1
#: Side (pixels) up to which data counts as small (CIFAR, Tiny ImageNet): the CIFAR recipe and in-memory data.
SMALL_SIDE = 64


def _milestones(name: str, values: tuple) -> tuple:
    if list(values) != sorted(set(values)):
        raise SeprobeError(f"invalid {name} {values!r}; valid: increasing fractions in (0, 1)", argument=name)
    return values


@dataclass(frozen=True)
class Recipe(Options):
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

    epochs: Annotated[int, Int(1, metavar="N")] = 164
    batch_size: Annotated[int, Int(1, metavar="N", help="the global batch")] = 128
    lr: Annotated[float, Number(0, FLOAT32_MAX, open_low=True, metavar="LR", help="peak learning rate")] = 0.1
    momentum: Annotated[float, Number(0, 1, metavar="M")] = 0.9
    weight_decay: Annotated[float, Number(0, FLOAT32_MAX, metavar="WD")] = 1e-4
    no_decay_bn_bias: Annotated[bool, Bool(flags=("--no-decay-bn-bias/--decay-bn-bias",),
                                           help="no weight decay on BatchNorm and biases")] = False
    schedule: Annotated[str, Choice(choices=SCHEDULES, help="learning-rate schedule")] = "step"
    milestones: Annotated[tuple[float, ...], Items(
        item=Number(0, 1, open_low=True), rule=_milestones, example="0.5,0.75", item_name="milestone",
        metavar="F,F,...",
        help="fractions of the steps where the step schedule multiplies lr by gamma")] = (0.5, 0.75)
    gamma: Annotated[float, Number(0, FLOAT32_MAX, open_low=True, metavar="G",
                                   help="the step schedule's factor")] = 0.1
    warmup_epochs: Annotated[float, Number(0, metavar="E", help="linear warm-up from 0")] = 0.0
    label_smoothing: Annotated[float, Number(0, 1, metavar="S")] = 0.0
    seed: Annotated[int, Int(0, SEED_MAX, metavar="N", help="data order, augmentation, initial weights")] = 0
    dtype: Annotated[str, DTYPE] = "float32"
    channels_last: Annotated[bool, CHANNELS_LAST] = False
    compile: Annotated[bool, COMPILE] = False
    sync_bn: Annotated[bool, Bool(flags=("--sync-bn",), help="SyncBatchNorm (torchrun on CUDA)")] = False
    freeze_bn: Annotated[bool, Bool(flags=("--freeze-bn",), help="BatchNorm kept in eval mode (fine-tuning; "
                                                                   "weights with BN folded away)")] = False
    clip_grad_norm: Annotated[float | None, Number(0, FLOAT32_MAX, open_low=True, metavar="NORM",
                                                   help="clip the gradients' global norm")] = None
    checkpoint_every: Annotated[int | None, Int(1, metavar="N", help="also checkpoint every N steps")] = None

    def validate(self) -> None:
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


def _onecycle(peak: float, step: int, total: int) -> float:
    """Step ``step`` of torch's ``OneCycleLR`` over ``total`` steps, read from a scheduler set to that step."""
    import torch

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=peak)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, peak, total_steps=total, pct_start=ONECYCLE_RISE, div_factor=ONECYCLE_DIV,
        final_div_factor=ONECYCLE_FINAL_DIV, cycle_momentum=False)
    optimizer.step()  # no gradient, so nothing moves; torch then takes the scheduler's step as in order
    schedule.last_epoch = step - 1
    schedule.step()
    return float(schedule.get_last_lr()[0])
