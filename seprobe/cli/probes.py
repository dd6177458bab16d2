"""The commands over trained networks and labelled images: ``activations``, ``evaluate``, ``ablate``; each one
process, or one rank of a ``torchrun`` launch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ..choices import ExportMode
from ..defaults import OUT
from .app import FormatOpt, _err, app, echo, emit, session
from .options import (
    CALIBRATION,
    KNOBS,
    PLAN,
    PREPROCESSING,
    PRUNE_PLAN,
    READING,
    RESAMPLING,
    Inputs,
    inputs_group,
    loader_group,
    with_groups,
)


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
@with_groups(inputs_group("activations", " --stage 5 --classes goldfish,pug"), READING, loader_group("activations"),
             PREPROCESSING, KNOBS)
def activations_cmd(
    samples_per_class: Annotated[int | None, typer.Option(metavar="N", help="images per class (the paper: 50)")] = None,
    all_classes_table: Annotated[bool, typer.Option("--all-classes-table", help="tidy table of every class")] = False,
    out: Annotated[Path, typer.Option(metavar="DIR", help="output folder")] = Path(OUT["activations"]),
    inputs: Inputs | None = None, reading: Any = None, loader: Any = None, overrides: Any = None,
    knobs: dict | None = None,
) -> None:
    """Class-specific excitation distributions per stage and block (the paper's Figs. 6 and 7).

    --stage and --blocks choose the blocks shown (table and figures); --se-stages and the other model knobs
    build a seprobe model and must match its checkpoint. With CBAM, spatial.csv holds the spatial maps'
    statistics per block and class."""
    from .. import api

    _probe_command(loader.device, lambda: api.activations(
        inputs.model, inputs.weights, inputs.data, labels=inputs.labels, samples_per_class=samples_per_class,
        **reading, loader=loader, all_classes_table=all_classes_table, out=out, overrides=overrides, **knobs))


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
@with_groups(inputs_group("ablate", " --calibration 1"), PLAN, CALIBRATION, RESAMPLING, loader_group("ablate"),
             PREPROCESSING, KNOBS)
def ablate_cmd(
    samples_per_class: Annotated[int | None, typer.Option(metavar="N", help="images per class")] = None,
    export: Annotated[Path | None, typer.Option(metavar="FILE", help="write the network with the set ablated")] = None,
    export_mode: Annotated[ExportMode | None, typer.Option(help="the mode --export uses (with --mode both)")] = None,
    out: Annotated[Path, typer.Option(metavar="DIR", help="output folder")] = Path(OUT["ablate"]),
    inputs: Inputs | None = None, plan: Any = None, calibration: Any = None, resampling: dict | None = None,
    loader: Any = None, overrides: Any = None, knobs: dict | None = None,
) -> None:
    """What each SE block is worth: accuracy, agreement and KL with blocks removed (identity) or frozen to their
    mean (or to 1/2: constant), with paired-bootstrap intervals, and the cost each saves; --export writes the
    smaller network.

    CBAM's spatial gate is named BLOCK.spatial (SE_2_1.spatial) in --blocks and --cumulative; --gates spatial (or
    all) puts the spatial gates in the sweeps."""
    from .. import api
    from ..distributed import current_world

    def run():
        result = api.ablate(
            inputs.model, inputs.weights, inputs.data, labels=inputs.labels, samples_per_class=samples_per_class,
            plan=plan, calibration=calibration, loader=loader, **resampling,
            export=export, export_mode=export_mode, out=out, overrides=overrides, **knobs)
        if result.result.mean_skipped and current_world().is_main:
            _err("seprobe: note: --mode mean needs --calibration N or --calibration-data DIR; ran identity only")
        return result

    _probe_command(loader.device, run)


@app.command("prune")
@with_groups(inputs_group("prune", " --calibration 5 --criterion gate --keep-macs 0.5 --out DIR"), PRUNE_PLAN,
             CALIBRATION, loader_group("prune"), PREPROCESSING, KNOBS)
def prune_cmd(
    samples_per_class: Annotated[int | None, typer.Option(metavar="N", help="images per class")] = None,
    out: Annotated[Path, typer.Option(metavar="DIR", help="output folder: network.pth and the tables")] = Path(
        OUT["prune"]),
    fmt: FormatOpt = None, inputs: Inputs | None = None, plan: Any = None, calibration: Any = None,
    loader: Any = None, overrides: Any = None, knobs: dict | None = None,
) -> None:
    """Prune the channels an SE gate scales, ranked by the gate (gate, gate_max) or by l1, bn, taylor or random,
    to a fraction of the multiply-adds (--keep-macs), parameters (--keep-params) or channels (--keep-channels):
    an exact, smaller network (DIR/network.pth, loadable as --weights by every command, trainable by seprobe
    train and prunable again), with the accuracy before and after on the images calibration did not take.

    --calibration N takes N images per class out of --data to score the channels (gate, gate_max, taylor)."""
    from .. import api

    _probe_command(loader.device, lambda: api.prune(
        inputs.model, inputs.weights, inputs.data, plan=plan, labels=inputs.labels,
        samples_per_class=samples_per_class, calibration=calibration, loader=loader, out=out, overrides=overrides,
        **knobs), fmt, "prune")
