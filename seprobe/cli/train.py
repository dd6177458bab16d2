"""``seprobe train``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..defaults import NUM_WORKERS
from ..errors import SeprobeError
from .app import FormatOpt, _err, app, echo, emit, session
from .options import KNOBS, RECIPE, DeviceOpt, with_groups

TRAIN_HELP = """Train any network on labelled images (resumable; under torchrun the ranks share the batch).

Defaults are the published recipes, chosen by the images' size. Small images (side <= 64: CIFAR, and Tiny
ImageNet at its own size), held in memory: He et al. 2015's CIFAR recipe, 164 epochs, batch 128, SGD momentum 0.9,
weight decay 1e-4, learning rate 0.1 divided by 10 at 50 % and 75 % of the steps; 4-pixel zero pad + random crop
+ flip. Larger images (ImageNet), or small ones with --upscale: 90 epochs, batch 256, learning rate 0.1 x batch /
256 divided by 10 at epochs 30 and 60; random resized crop + flip, the model's evaluation resize + centre crop
for validation. Images are normalised by the network's own mean/std (its evaluation preprocessing: CIFAR-10's
for the CIFAR networks, ImageNet's for the others), so that every command evaluates the weights as they were
trained. The learning rate scales with --batch-size. --out receives checkpoint.pth, final.pth (the weights,
loadable as --weights), history.csv, summary.md (the recipe, the augmentation, the data) and curves.png/.svg.
--resume DIR alone continues the run in DIR with the options it was started with (kept in its checkpoint.pth);
an option given beside it must be the same, or it is refused."""


@app.command("train", help=TRAIN_HELP)
@with_groups(KNOBS, RECIPE)
def train_cmd(
    model: Annotated[str | None, typer.Option("--model", "-m", metavar="NAME", help="seprobe name, timm:NAME or "
                                              "torchvision:NAME (a new run)")] = None,
    weights: Annotated[str | None, typer.Option(metavar="PATH|pretrained|random",
                                                help="initial weights: random (seeded by --seed; the default), "
                                                     "pretrained, or a checkpoint (an exported ablated network, a "
                                                     "checkpoint.pth)")] = None,
    data: Annotated[Path | None, typer.Option(metavar="DIR", help="DIR/train + DIR/test (or val), or CIFAR's files")
                    ] = None,
    train_data: Annotated[Path | None, typer.Option(metavar="DIR", help="training images (with --val-data)")] = None,
    val_data: Annotated[Path | None, typer.Option(metavar="DIR", help="validation images")] = None,
    train_labels: Annotated[Path | None, typer.Option(metavar="FILE", help="labels of --train-data")] = None,
    val_labels: Annotated[Path | None, typer.Option(metavar="FILE", help="labels of --val-data")] = None,
    samples_per_class: Annotated[int | None, typer.Option(metavar="N", help="first N training images per class")
                                 ] = None,
    val_samples_per_class: Annotated[int | None, typer.Option(metavar="N", help="first N validation images per "
                                                              "class")] = None,
    out: Annotated[Path | None, typer.Option(metavar="DIR", help="a new or empty folder for the run")] = None,
    resume: Annotated[Path | None, typer.Option(metavar="DIR", help="continue the run in DIR (its options; those "
                                                "given must be the same)")] = None,
    device: DeviceOpt = "cpu",
    num_workers: Annotated[int, typer.Option(metavar="N", help="loader processes for large images")
                           ] = NUM_WORKERS["train"],
    upscale: Annotated[bool | None, typer.Option("--upscale", help="small images brought to the model's input size, "
                                                 "as evaluate does (fine-tuning an ImageNet network on Tiny "
                                                 "ImageNet)")] = None,
    fmt: FormatOpt = None,
    knobs: dict | None = None,
    recipe: dict | None = None,
) -> None:
    from .. import api

    if (out is None) == (resume is None):
        raise SeprobeError("give one of --out DIR (a new run) and --resume DIR (continue one)")
    if model is None and resume is None:
        raise SeprobeError("give --model NAME for a new run (see `seprobe models`), or --resume DIR to continue one")
    if (data is None) == (train_data is None) and not (resume is not None and data is None):
        raise SeprobeError("give one of --data DIR (with train/ and test/) and --train-data DIR with --val-data DIR")
    if train_data is not None and val_data is None:
        raise SeprobeError("--train-data needs --val-data DIR")
    if data is not None and (val_data is not None or train_labels is not None):
        raise SeprobeError("--data DIR holds train/ and test/; valid: --train-data DIR with --val-data DIR for "
                           "separate folders (and their --train-labels / --val-labels)")
    with session(device) as world:
        result = api.train(model, data or train_data, out or resume, weights=weights, val_data=val_data,
                           train_labels=train_labels, val_labels=val_labels, samples_per_class=samples_per_class,
                           val_samples_per_class=val_samples_per_class, recipe=recipe, resume=resume is not None,
                           num_workers=num_workers, upscale=upscale, **knobs)
    if not world.is_main:
        return
    if result.head:
        _err(f"seprobe: note: {result.head}")
    if result.run.already_finished:
        _err(f"seprobe: note: the run in {out or resume} had finished all its epochs; nothing was trained or "
             "written")
    for path in [] if result.run.already_finished else result.written:
        _err(f"wrote {path}")
    if fmt not in (None, "table"):
        emit(result.tables(), fmt, None, "train")
    else:
        echo(result.text(), nl=False)
