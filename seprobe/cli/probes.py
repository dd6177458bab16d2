"""The commands over trained networks and labelled images: ``activations``, ``evaluate``, ``ablate``; each one
process, or one rank of a ``torchrun`` launch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ..choices import (
    AblationMode,
    ExportMode,
)
from ..defaults import BOOTSTRAP, CHANNELS, CLASSES, OUT
from ..errors import SeprobeError
from .app import FormatOpt, _err, app, echo, emit, session
from .options import KNOBS, PREPROCESSING, Inputs, _names, inputs_group, loader_group, with_groups


def _print_result(world, result, fmt: str | None = None, command: str = "") -> None:
    """The files a probe command wrote (stderr) and its result (stdout: its text, or its tables in ``fmt``);
    under torchrun, rank 0 alone prints."""
    if not world.is_main:
        return
    for path in getattr(result, "written", ()):
        _err(f"wrote {path}")
    if fmt not in (None, "table"):
        emit(result.tables(), fmt, None, command)
        return
    text = result.text()
    echo(text, nl=not text.endswith("\n"))


def _probe_command(device: str, run: Callable[[], Any], fmt: str | None = None, command: str = "") -> None:
    """Run a probe command in a (torchrun) session and print what it returns."""
    with session(device) as world:
        result = run()
    _print_result(world, result, fmt, command)


@app.command("activations")
@with_groups(inputs_group("activations", " --stage 5 --classes goldfish,pug"), loader_group("activations"),
             PREPROCESSING, KNOBS)
def activations_cmd(
    classes: Annotated[str, typer.Option(metavar="NAMES", help="ImageNet names, wnids or indices")] = ",".join(CLASSES),
    stage: Annotated[
        list[int] | None, typer.Option(metavar="S", help="show the blocks of this stage (repeatable)")
    ] = None,
    blocks: Annotated[
        str | None, typer.Option(metavar="SE_s_b,...", help="show these blocks, e.g. SE_5_1,SE_5_2")
    ] = None,
    samples_per_class: Annotated[int | None, typer.Option(metavar="N", help="images per class (the paper: 50)")] = None,
    views: Annotated[int, typer.Option(metavar="K", help="views per image: the evaluation crop + augmented crops")] = 1,
    channels: Annotated[
        int, typer.Option(metavar="N", help="channels sampled for the plots (the paper: 50)")
    ] = CHANNELS,
    all_classes_table: Annotated[bool, typer.Option("--all-classes-table", help="tidy table of every class")] = False,
    out: Annotated[Path, typer.Option(metavar="DIR", help="output folder")] = Path(OUT["activations"]),
    inputs: Inputs | None = None, loader: Any = None, overrides: Any = None, knobs: dict | None = None,
) -> None:
    """Class-specific excitation distributions per stage and block (the paper's Figs. 6 and 7).

    --stage and --blocks choose the blocks shown (table and figures); --se-stages and the other model knobs
    build a seprobe model and must match its checkpoint."""
    from .. import api

    class_names = _names(classes, "classes")
    block_names = _names(blocks, "blocks")
    _probe_command(loader.device, lambda: api.activations(
        inputs.model, inputs.weights, inputs.data, labels=inputs.labels, samples_per_class=samples_per_class,
        classes=class_names, stage=stage, blocks=block_names, views=views, channels=channels,
        loader=loader, all_classes_table=all_classes_table, out=out, overrides=overrides, **knobs))


@app.command("evaluate")
@with_groups(inputs_group("evaluate"), loader_group("evaluate"), PREPROCESSING, KNOBS)
def evaluate_cmd(fmt: FormatOpt = None, inputs: Inputs | None = None, loader: Any = None, overrides: Any = None,
                 knobs: dict | None = None) -> None:
    """Top-1 / top-5 accuracy of a classifier on labelled images (evaluation crop): ImageNet labels for a
    1000-way classifier, or one output per class of the data."""
    from .. import api

    _probe_command(loader.device, lambda: api.evaluate(
        inputs.model, inputs.weights, inputs.data, labels=inputs.labels, loader=loader,
        overrides=overrides, **knobs), fmt, "evaluate")


@app.command("ablate")
@with_groups(inputs_group("ablate", " --calibration 1"), loader_group("ablate"), PREPROCESSING, KNOBS)
def ablate_cmd(
    samples_per_class: Annotated[int | None, typer.Option(metavar="N", help="images per class")] = None,
    mode: Annotated[
        AblationMode | None,
        typer.Option(help="identity: gate = 1; mean: gate = its calibration mean [default: both with calibration "
                          "images, else identity]"),
    ] = None,
    blocks: Annotated[str | None, typer.Option(metavar="SE_s_b,...", help="ablate these blocks as one set")] = None,
    stage: Annotated[int | None, typer.Option(metavar="S", help="ablate this stage's blocks as one set")] = None,
    per_stage: Annotated[bool, typer.Option("--per-stage", help="each stage's blocks together")] = False,
    each_block: Annotated[
        bool | None,
        typer.Option("--each-block/--no-each-block", help="every block alone [default: unless a set is given]"),
    ] = None,
    cumulative: Annotated[
        str | None,
        typer.Option(
            metavar="ORDER", help="remove blocks one after another: kl, top1, network, reverse, or SE_a,SE_b,..."
        ),
    ] = None,
    calibration: Annotated[
        int | None, typer.Option(metavar="N", help="mean mode: N images per class taken out of --data for the means")
    ] = None,
    calibration_data: Annotated[Path | None, typer.Option(metavar="DIR", help="mean mode: separate images")] = None,
    calibration_labels: Annotated[
        Path | None, typer.Option(metavar="FILE", help="labels of --calibration-data")
    ] = None,
    calibration_views: Annotated[int, typer.Option(metavar="K", help="views per calibration image")] = 1,
    allow_overlap: Annotated[
        bool, typer.Option("--allow-overlap", help="calibration may share evaluation images")
    ] = False,
    bootstrap: Annotated[int, typer.Option(metavar="N", help="paired-bootstrap resamples")] = BOOTSTRAP,
    seed: Annotated[int, typer.Option(metavar="N", help="bootstrap seed")] = 0,
    export: Annotated[Path | None, typer.Option(metavar="FILE", help="write the network with the set ablated")] = None,
    export_mode: Annotated[ExportMode | None, typer.Option(help="the mode --export uses (with --mode both)")] = None,
    out: Annotated[Path, typer.Option(metavar="DIR", help="output folder")] = Path(OUT["ablate"]),
    inputs: Inputs | None = None, loader: Any = None, overrides: Any = None, knobs: dict | None = None,
) -> None:
    """What each SE block is worth: accuracy, agreement and KL with blocks removed (identity) or frozen to their
    mean, with paired-bootstrap intervals, and the cost each saves; --export writes the smaller network."""
    from .. import api
    from ..data.images import ImageSource
    from ..distributed import current_world
    from ..probe.ablation_plan import ORDERS, AblationPlan
    from ..probe.calibration import CalibrationSource

    plan = AblationPlan(
        modes=None if mode is None else (("identity", "mean") if mode == "both" else (mode,)),
        blocks=_names(blocks, "blocks"), stage=stage, per_stage=per_stage, each_block=each_block,
        cumulative=cumulative if cumulative in ORDERS else _names(cumulative, "cumulative"))
    source = None
    if calibration is not None or calibration_data is not None:
        images = None if calibration_data is None else ImageSource(
            calibration_data, calibration_labels, arguments=("calibration_data", "calibration_labels"))
        source = CalibrationSource(calibration, images, calibration_views, allow_overlap)
    elif calibration_labels is not None:
        raise SeprobeError("--calibration-labels without --calibration-data; valid: both, or neither")

    def run():
        result = api.ablate(
            inputs.model, inputs.weights, inputs.data, labels=inputs.labels, samples_per_class=samples_per_class,
            plan=plan, calibration=source, loader=loader, bootstrap=bootstrap, seed=seed,
            export=export, export_mode=export_mode, out=out, overrides=overrides, **knobs)
        if result.result.mean_skipped and current_world().is_main:
            _err("seprobe: note: --mode mean needs --calibration N or --calibration-data DIR; ran identity only")
        return result

    _probe_command(loader.device, run)
