"""The ``seprobe`` command line: parses options, builds the option objects, calls :mod:`seprobe.api`, prints.

Every error a user can cause is one line on stderr (``seprobe: error: ...``) and exit code 2: a bad option
value, a missing input, a malformed file. The library's errors name Python arguments (``batch_size``); here they
name the flag (``--batch-size``, :data:`FLAGS`). Ctrl-C and SIGTERM print ``seprobe: interrupted`` and exit 130,
with no output half-written. Only ``typer`` and the torch-free modules load before an option has been checked,
so ``--help``, ``--version`` and usage errors answer at once.

Options that several commands take are declared once, in groups (:class:`OptionGroup`: the model knobs, the
inputs, the loader, the preprocessing overrides); :func:`with_groups` adds a group's options to a command's
signature and hands the command one value per group.
"""

from __future__ import annotations

import inspect
import os
import re
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

try:  # typer >= 0.2x carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer on click
    from click import exceptions as click_errors

from . import __version__
from .choices import (
    AblationMode,
    Dtype,
    ExportMode,
    Format,
    GateName,
    Integration,
    Interpolation,
    Schedule,
    SqueezeName,
    StemPool,
    StrideAt,
)
from .defaults import BATCH_SIZE, BOOTSTRAP, CHANNELS, CLASSES, OUT
from .errors import SeprobeError

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    help="Build, count, time and look inside Squeeze-and-Excitation networks.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"seprobe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Build, count, time and look inside Squeeze-and-Excitation networks."""


def _err(message: str) -> None:
    typer.echo(message, err=True)


#: Python arguments whose flag is not their name with dashes (``batch_size`` is ``--batch-size``)
FLAGS = {
    "stages": "--se-stages", "models": "--model", "modes": "--mode", "paths": "STUDY.toml",
    "include": "--with-timing/--with-activations/--with-ablation/--with-training",
    "skip_kinds": "--with-timing/--with-activations/--with-ablation/--with-training",
}


def flag(argument: str) -> str:
    """The flag of a Python argument: ``batch_size`` -> ``--batch-size``, unless :data:`FLAGS` says otherwise."""
    return FLAGS.get(argument, "--" + argument.replace("_", "-"))


def for_the_command_line(e: SeprobeError) -> str:
    """The error's message with Python arguments named by their flags: the argument it is about (its first
    mention), and every other argument name with an underscore (no ordinary word has one)."""
    message = str(e)
    for argument in (e.argument,) if isinstance(e.argument, str) else e.argument or ():
        message = re.sub(rf"{_OUTSIDE[0]}{re.escape(argument)}{_OUTSIDE[1]}", flag(argument), message, count=1)
    return re.sub(rf"{_OUTSIDE[0]}(" + "|".join(map(re.escape, _underscored())) + rf"){_OUTSIDE[1]}",
                  lambda m: flag(m.group(1)), message)


#: an argument's name as a word of its own: not inside a longer name, a path or a quoted value
_OUTSIDE = (r"(?<![\w/.'\\-])", r"(?![\w/.'-])")


def _underscored() -> list[str]:
    """Every option of every command whose Python name has an underscore, longest first."""
    names = set()
    for fn in [c.callback for c in app.registered_commands] + [c.callback for c in study_app.registered_commands]:
        names |= {p for p in inspect.signature(fn).parameters if "_" in p}
    return sorted(names - {"fmt"}, key=len, reverse=True)


# --- option groups ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptionGroup:
    """Options several commands take, declared once: ``params`` join the command's signature, and the command
    receives ``build(values)`` as its argument ``name``."""

    name: str
    params: tuple[inspect.Parameter, ...]
    build: Callable[[dict[str, Any]], Any]


def _option(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def with_groups(*groups: OptionGroup):
    """Add the options of ``groups`` to a command (after its own) and pass each group's value as one argument."""

    def decorate(fn):
        sig = inspect.signature(fn, eval_str=True)  # typer reads the evaluated annotations
        own = [p for p in sig.parameters.values() if p.name not in {g.name for g in groups}]

        def command(**values):
            for g in sorted(groups, key=lambda g: g.name == "inputs"):  # the inputs' defaults are read last
                values[g.name] = g.build({p.name: values.pop(p.name) for p in g.params})
            return fn(**values)

        command.__signature__ = sig.replace(parameters=own + [p for g in groups for p in g.params])
        command.__annotations__ = {p.name: p.annotation for p in command.__signature__.parameters.values()}
        command.__name__, command.__doc__ = fn.__name__, fn.__doc__
        return command

    return decorate


#: command-line option -> model-zoo knob
KNOB_OPTIONS = {"reduction": "reduction", "squeeze": "squeeze", "gate": "gate", "bias": "bias", "se_stages": "stages",
                "drop_stage5": "drop_stage5", "integration": "integration", "stride_at": "stride_at",
                "stem_pool": "stem_pool", "num_classes": "num_classes"}

KNOBS = OptionGroup("knobs", (
    _option("reduction", Annotated[int | None, typer.Option(metavar="R", help="SE reduction ratio r (C // r)")]),
    _option("squeeze", Annotated[SqueezeName | None, typer.Option(help="squeeze: average (Eq. 2), max, none")]),
    _option("gate", Annotated[GateName | None, typer.Option(help="excitation gate (Eq. 3)")]),
    _option("bias", Annotated[bool | None, typer.Option("--bias/--no-bias", help="biases on the SE FCs")]),
    _option("se_stages", Annotated[str | None, typer.Option(
        "--se-stages", "--stages", metavar="S,S,...", help="stages that carry SE, e.g. 2,3,4")]),
    _option("drop_stage5", Annotated[bool | None, typer.Option("--drop-stage5", help="remove stage 5's SE blocks")]),
    _option("integration", Annotated[Integration | None, typer.Option(help="where the SE block sits (Fig. 5)")]),
    _option("stride_at", Annotated[StrideAt | None, typer.Option(help="ResNets: the conv that downsamples")]),
    _option("stem_pool", Annotated[StemPool | None, typer.Option(help="ResNets: Caffe's ceil or torchvision's pool")]),
    _option("num_classes", Annotated[int | None, typer.Option(metavar="K", help="classifier outputs (seprobe "
                                                                            "models)")]),
), lambda v: {KNOB_OPTIONS[k]: x for k, x in v.items() if x is not None})


def _triple(text: str | None, argument: str):
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise SeprobeError(f"invalid {argument} {text!r}; valid: three comma-separated numbers, e.g. 0.5,0.5,0.5",
                           argument=argument)
    return values


def _overrides(v: dict[str, Any]):
    from .data.images import Overrides

    return Overrides(v["resize"], v["crop"], _triple(v["mean"], "mean"), _triple(v["std"], "std"), v["interpolation"])


PREPROCESSING = OptionGroup("overrides", (
    _option("resize", Annotated[int | None, typer.Option(metavar="N", help="override: resize the shorter side")]),
    _option("crop", Annotated[int | None, typer.Option(metavar="N", help="override: centre crop size")]),
    _option("mean", Annotated[str | None, typer.Option(metavar="M,M,M", help="override: normalisation mean")]),
    _option("std", Annotated[str | None, typer.Option(metavar="S,S,S", help="override: normalisation std")]),
    _option("interpolation", Annotated[Interpolation | None, typer.Option(help="override: resize interpolation")]),
), _overrides)

EXAMPLE = "seprobe {command} --model timm:tf_mobilenetv3_small_100 --weights PATH.pth --data DIR{extra}"


@dataclass(frozen=True)
class Inputs:
    model: str
    weights: str
    data: Path
    labels: Path | None


def inputs_group(command: str, extra: str = "") -> OptionGroup:
    """``--model --weights --data --labels``, each from the option or else the defaults (config file,
    environment); all missing ones are named at once, with an example."""

    def build(v: dict[str, Any]) -> Inputs:
        from .config import load_defaults

        defaults = load_defaults()
        values = {k: x if x is not None else defaults.get(k) for k, x in v.items()}
        if v["model"] is not None and v["model"] != defaults.get("model") and v["weights"] is None:
            values["weights"] = None  # the default weights belong to the default model
        missing = [f"--{k}" for k in ("model", "weights", "data") if values[k] is None]
        if missing:
            raise SeprobeError(
                f"missing {', '.join(missing)}; e.g. {EXAMPLE.format(command=command, extra=extra)} (or set them once "
                "in seprobe.toml, [tool.seprobe] of pyproject.toml, or SEPROBE_MODEL / SEPROBE_WEIGHTS / SEPROBE_DATA)")
        return Inputs(values["model"], values["weights"], Path(values["data"]),
                      Path(values["labels"]) if values["labels"] else None)

    return OptionGroup("inputs", (
        _option("model", Annotated[str | None, typer.Option(
            "--model", "-m", metavar="NAME",
            help="seprobe name, timm:NAME[.tag] or torchvision:NAME [default: config]")]),
        _option("weights", Annotated[str | None, typer.Option(
            metavar="PATH|pretrained|random",
            help="checkpoint path, 'pretrained' (timm/torchvision download) or 'random' [default: config]")]),
        _option("data", Annotated[Path | None, typer.Option(
            metavar="DIR",
            help="images: wnid_name files, class folders, or a flat folder + --labels [default: config]")]),
        _option("labels", Annotated[Path | None, typer.Option(
            metavar="FILE", help="label file for a flat folder ('<file> <label>' lines)")]),
    ), build)


def loader_group(command: str) -> OptionGroup:
    """``--batch-size --device --num-workers``; the device is this rank's under torchrun."""

    def build(v: dict[str, Any]):
        from .probe.evaluation import Loader

        return Loader(v["batch_size"], _world_device(v["device"]), v["num_workers"])

    return OptionGroup("loader", (
        _option("batch_size", Annotated[int, typer.Option(metavar="N", help="images a step")], BATCH_SIZE[command]),
        _option("device", Annotated[str, typer.Option(metavar="DEVICE", help="cpu, cuda or cuda:N")], "cpu"),
        _option("num_workers", Annotated[int, typer.Option(metavar="N", help="data-loading processes")], 0),
    ), build)


FormatOpt = Annotated[Format | None, typer.Option("--format", "-f", help="print tables in this format")]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", metavar="FILE", help="write to this file (format from suffix)")
]


def emit(tables: dict, fmt: str | None, output: Path | None, command: str) -> None:
    """Result tables to stdout (``--format``) or to files (``--output``), all files together or none."""
    from .io import output_set
    from .tables import render_all, write_tables

    if output is None:
        typer.echo(render_all(tables, fmt or "table", command), nl=False)
        return
    with output_set():
        written = write_tables(tables, output, fmt, command)
    for path in written:
        _err(f"wrote {path}")


# --- commands --------------------------------------------------------------------------------------------------------


@app.command("models")
def models_cmd(fmt: FormatOpt = None, output: OutputOpt = None) -> None:
    """List every registered model with its parameter count and its counterpart without SE."""
    from .io import check_output_file
    from .models.registry import models_table

    check_output_file(output, "output")
    emit({"models": models_table()}, fmt, output, "models")


@app.command("complexity")
@with_groups(KNOBS)
def complexity_cmd(
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", metavar="NAME", help="seprobe name, timm:NAME or torchvision:NAME (repeatable)"),
    ] = None,
    input_size: Annotated[
        int | None, typer.Option(metavar="N", help="square input side (default: the model's)")
    ] = None,
    count_bn: Annotated[bool, typer.Option("--count-bn", help="count BatchNorm (fvcore: 2/element)")] = False,
    count_activations: Annotated[bool, typer.Option("--count-activations", help="count activations, gates")] = False,
    count_adds: Annotated[bool, typer.Option("--count-adds", help="count residual adds")] = False,
    count_pooling: Annotated[bool, typer.Option("--count-pooling", help="count pooling and SE squeeze adds")] = False,
    count_muls: Annotated[
        bool, typer.Option("--count-muls", help="count other elementwise products (residual scaling)")
    ] = False,
    per_block: Annotated[bool, typer.Option("--per-block", help="one row per SE block, and per stage")] = False,
    time_it: Annotated[bool, typer.Option("--time", help="measure forward and forward+backward time")] = False,
    device: Annotated[str, typer.Option(metavar="DEVICE", help="cpu, cuda or cuda:N (for --time)")] = "cpu",
    batch_size: Annotated[int, typer.Option(metavar="N", help="batch size (for --time)")] = BATCH_SIZE["complexity"],
    dtype: Annotated[Dtype, typer.Option(help="autocast dtype (for --time)")] = "float32",
    channels_last: Annotated[bool, typer.Option("--channels-last", help="channels_last memory format")] = False,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the models")] = False,
    warmup: Annotated[int, typer.Option(metavar="N", help="untimed iterations")] = 3,
    repeats: Annotated[int, typer.Option(metavar="N", help="timed iterations")] = 10,
    auto_batch: Annotated[bool, typer.Option("--auto-batch", help="halve the batch on GPU out-of-memory")] = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    knobs: dict | None = None,
) -> None:
    """Multiply-adds and parameters of SE models against the same networks without SE (and --time)."""
    from . import api
    from .io import check_output_file
    from .tables import format_for

    check_output_file(output, "output")
    if output is not None:
        format_for(output, fmt)
    if fmt == "csv" and output is None and (per_block or time_it):
        raise SeprobeError("--format csv prints one table, and --per-block / --time add more; valid: --output "
                           "FILE.csv (one file per table), or --format json")
    from .cost.timing import TimingSetup

    # checked whether or not --time is given: a nonsense value is an error either way
    timing = TimingSetup(device=device, batch_size=batch_size, dtype=dtype, channels_last=channels_last,
                         compile=compile_, warmup=warmup, repeats=repeats, auto_batch=auto_batch)
    from .cost.flops import FlopConvention

    convention = FlopConvention(bn=count_bn, activations=count_activations, adds=count_adds, pooling=count_pooling,
                                muls=count_muls)
    report = api.complexity(model or _default_model(), input_size=input_size, convention=convention,
                            per_block=per_block, time=timing if time_it else None, progress=_err, **knobs)
    for knob, names in report.ignored.items():
        _err(f"seprobe: warning: {flag(knob)} does not apply to {', '.join(names)} (no SE, or not an seprobe model): "
             "ignored there")
    if output is not None or fmt not in (None, "table"):
        emit(report.tables(with_operations=fmt != "csv" or output is not None), fmt, output, "complexity")
        if output is None:
            return
    typer.echo(report.text(), nl=False)


def _default_model() -> list[str]:
    from .config import load_defaults

    model = load_defaults().get("model")
    if model is None:
        raise SeprobeError("missing --model; e.g. seprobe complexity --model se_resnet50 (names: `seprobe models`, "
                           "timm:NAME, torchvision:NAME)")
    return [model]


study_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Run the paper's tables as studies (studies/*.toml)."
)
app.add_typer(study_app, name="study")

BudgetOpt = Annotated[
    str | None, typer.Option(metavar="NAME", help="training studies: the budget to train with (e.g. cpu, paper)")
]
ReportsOutOpt = Annotated[
    Path | None, typer.Option(metavar="DIR", help="report folder (default: reports/ beside studies/)")
]


@study_app.command("run")
def study_run_cmd(
    paths: Annotated[list[Path], typer.Argument(metavar="STUDY.toml...", help="study files, e.g. studies/stages.toml")],
    out: ReportsOutOpt = None,
    budget: BudgetOpt = None,
) -> None:
    """Run studies into reports/<name>.md and .csv (and a figure); nothing is written if any study fails."""
    from .studies.regenerate import run_studies

    _print_studies(run_studies(paths, out, budget=budget, progress=_err))


@app.command("reports")
def reports_cmd(
    studies: Annotated[Path, typer.Option(metavar="DIR", help="folder of study files")] = Path("studies"),
    out: ReportsOutOpt = None,
    with_timing: Annotated[bool, typer.Option("--with-timing", help="also run timing studies (slow)")] = False,
    with_activations: Annotated[
        bool, typer.Option("--with-activations", help="also run activations studies (real data, minutes)")
    ] = False,
    with_ablation: Annotated[
        bool, typer.Option("--with-ablation", help="also run ablation studies (real data, a few minutes)")
    ] = False,
    with_training: Annotated[
        bool, typer.Option("--with-training", help="also training studies: reports from the committed runs, training "
                                                   "only what is missing")
    ] = False,
    budget: BudgetOpt = None,
) -> None:
    """Regenerate every report from studies/ (timing, activations and ablation studies only when asked), and the
    index."""
    from .studies.regenerate import reports

    asked = {"timing": with_timing, "activations": with_activations, "ablation": with_ablation,
             "training": with_training}
    _print_studies(reports(studies, out, include=[k for k, v in asked.items() if v], budget=budget, progress=_err))


def _print_studies(done) -> None:
    for path in done.written:
        _err(f"wrote {path}")
    for w in done.warnings:
        _err(f"seprobe: warning: {w}")


def _world_device(device: str) -> str:
    """This rank's device under torchrun (the open session's), else ``device``."""
    from .distributed import current_world

    world = current_world()
    return world.device if world.distributed else device


def _session(device: str):
    """One process, or this rank of a ``torchrun`` launch (:mod:`seprobe.distributed`)."""
    from .distributed import distributed_session

    return distributed_session(device)


def _print_result(world, result) -> None:
    """The files a probe command wrote (stderr) and its result (stdout); under torchrun, rank 0 alone prints."""
    if not world.is_main:
        return
    for path in getattr(result, "written", ()):
        _err(f"wrote {path}")
    text = result.text()
    typer.echo(text, nl=not text.endswith("\n"))


def _names(text: str | None, argument: str) -> list[str] | None:
    """``"SE_5_1,SE_5_2"`` -> ``["SE_5_1", "SE_5_2"]``; a list that names nothing is an error."""
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise SeprobeError(f"invalid {argument} {text!r}; valid: comma-separated names", argument=argument)
    return names


def _probe_command(device: str, run: Callable[[], Any]) -> None:
    """Run a probe command in a (torchrun) session and print what it returns."""
    with _session(device) as world:
        result = run()
    _print_result(world, result)


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
    from . import api

    class_names = _names(classes, "classes")
    block_names = _names(blocks, "blocks")
    _probe_command(loader.device, lambda: api.activations(
        inputs.model, inputs.weights, inputs.data, labels=inputs.labels, samples_per_class=samples_per_class,
        classes=class_names, stage=stage, blocks=block_names, views=views, channels=channels,
        loader=_rank_loader(loader), all_classes_table=all_classes_table, out=out, overrides=overrides, **knobs))


def _rank_loader(loader):
    """The loader on this rank's device, once the torchrun session is open."""
    from dataclasses import replace

    return replace(loader, device=_world_device(loader.device))


@app.command("evaluate")
@with_groups(inputs_group("evaluate"), loader_group("evaluate"), PREPROCESSING, KNOBS)
def evaluate_cmd(inputs: Inputs | None = None, loader: Any = None, overrides: Any = None,
                 knobs: dict | None = None) -> None:
    """Top-1 / top-5 accuracy of a classifier on labelled images (evaluation crop): ImageNet labels for a
    1000-way classifier, or one output per class of the data."""
    from . import api

    _probe_command(loader.device, lambda: api.evaluate(
        inputs.model, inputs.weights, inputs.data, labels=inputs.labels, loader=_rank_loader(loader),
        overrides=overrides, **knobs))


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
    from . import api
    from .data.images import ImageSource
    from .probe.ablation_plan import ORDERS, AblationPlan
    from .probe.calibration import CalibrationSource

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
            plan=plan, calibration=source, loader=_rank_loader(loader), bootstrap=bootstrap, seed=seed,
            export=export, export_mode=export_mode, out=out, overrides=overrides, **knobs)
        if result.result.mean_skipped and os.environ.get("RANK", "0") == "0":
            _err("seprobe: note: --mode mean needs --calibration N or --calibration-data DIR; ran identity only")
        return result

    _probe_command(loader.device, run)


TRAIN_HELP = """Train any network on labelled images (resumable; under torchrun the ranks share the batch).

Defaults are the published recipes, chosen by the images' size. 32-pixel data (CIFAR): He et al. 2015, 164
epochs, batch 128, SGD momentum 0.9, weight decay 1e-4, learning rate 0.1 divided by 10 at 50 % and 75 % of the
steps; 4-pixel zero pad + random 32x32 crop + flip, the training set's mean/std. Larger images (ImageNet): 90
epochs, batch 256, learning rate 0.1 x batch / 256 divided by 10 at epochs 30 and 60; random resized crop + flip,
the model's evaluation preprocessing for validation. The learning rate scales with --batch-size. --out receives
checkpoint.pth, final.pth (the weights, loadable as --weights), history.csv, summary.md and curves.png/.svg."""


@app.command("train", help=TRAIN_HELP)
@with_groups(KNOBS)
def train_cmd(
    model: Annotated[str, typer.Option("--model", "-m", metavar="NAME", help="seprobe name, timm:NAME or "
                                       "torchvision:NAME")],
    weights: Annotated[str, typer.Option(metavar="PATH|pretrained|random",
                                         help="initial weights: random (seeded by --seed), pretrained, or a "
                                              "checkpoint (an exported ablated network, a checkpoint.pth)")] = "random",
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
    resume: Annotated[Path | None, typer.Option(metavar="DIR", help="continue the run in DIR (same options)")] = None,
    epochs: Annotated[int | None, typer.Option(metavar="N")] = None,
    batch_size: Annotated[int | None, typer.Option(metavar="N", help="the global batch")] = None,
    lr: Annotated[float | None, typer.Option(metavar="LR", help="peak learning rate")] = None,
    momentum: Annotated[float | None, typer.Option(metavar="M")] = None,
    weight_decay: Annotated[float | None, typer.Option(metavar="WD")] = None,
    no_decay_bn_bias: Annotated[bool | None, typer.Option(
        "--no-decay-bn-bias/--decay-bn-bias", help="no weight decay on BatchNorm and biases")] = None,
    schedule: Annotated[Schedule | None, typer.Option(help="learning-rate schedule")] = None,
    warmup_epochs: Annotated[float | None, typer.Option(metavar="E", help="linear warm-up from 0")] = None,
    label_smoothing: Annotated[float | None, typer.Option(metavar="S")] = None,
    seed: Annotated[int | None, typer.Option(metavar="N", help="data order, augmentation, initial weights")] = None,
    dtype: Annotated[Dtype | None, typer.Option(help="autocast dtype (a gradient scaler for float16)")] = None,
    channels_last: Annotated[bool | None, typer.Option("--channels-last", help="channels_last memory format")] = None,
    compile_: Annotated[bool | None, typer.Option("--compile", help="torch.compile the training step")] = None,
    sync_bn: Annotated[bool | None, typer.Option("--sync-bn", help="SyncBatchNorm (torchrun on CUDA)")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(metavar="N", help="also checkpoint every N steps")] = None,
    device: Annotated[str, typer.Option(metavar="DEVICE", help="cpu or cuda (this rank's GPU under torchrun)")
                      ] = "cpu",
    num_workers: Annotated[int, typer.Option(metavar="N", help="loader processes for large images")] = 4,
    fmt: FormatOpt = None,
    knobs: dict | None = None,
) -> None:
    from . import api

    if (out is None) == (resume is None):
        raise SeprobeError("give one of --out DIR (a new run) and --resume DIR (continue one)")
    if (data is None) == (train_data is None):
        raise SeprobeError("give one of --data DIR (with train/ and test/) and --train-data DIR with --val-data DIR")
    if train_data is not None and val_data is None:
        raise SeprobeError("--train-data needs --val-data DIR")
    if data is not None and (val_data is not None or train_labels is not None):
        raise SeprobeError("--data DIR holds train/ and test/; valid: --train-data DIR with --val-data DIR for "
                           "separate folders (and their --train-labels / --val-labels)")
    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "momentum": momentum,
             "weight_decay": weight_decay, "no_decay_bn_bias": no_decay_bn_bias, "schedule": schedule,
             "warmup_epochs": warmup_epochs, "label_smoothing": label_smoothing, "seed": seed, "dtype": dtype,
             "channels_last": channels_last, "compile": compile_, "sync_bn": sync_bn,
             "checkpoint_every": checkpoint_every}
    recipe = {k: v for k, v in given.items() if v is not None}
    with _session(device) as world:
        result = api.train(model, data or train_data, out or resume, weights=weights, val_data=val_data,
                           train_labels=train_labels, val_labels=val_labels, samples_per_class=samples_per_class,
                           val_samples_per_class=val_samples_per_class, recipe=recipe, resume=resume is not None,
                           num_workers=num_workers, **knobs)
    if not world.is_main:
        return
    if result.head:
        _err(f"seprobe: note: {result.head}")
    for path in result.written:
        _err(f"wrote {path}")
    if fmt not in (None, "table"):
        emit(result.tables(), fmt, None, "train")
    else:
        typer.echo(result.text(), nl=False)


# --- entry point -----------------------------------------------------------------------------------------------------


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM takes the same clean-up path as Ctrl-C


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, rank 0 speaks for all
    _err(f"seprobe: warning: {str(message).splitlines()[0] if str(message) else category.__name__}")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line; every failure a user can cause ends here as one line and a non-zero exit code."""
    signal.signal(signal.SIGTERM, _terminate)
    warnings.showwarning = _one_line_warning
    argv = list(argv) if argv is not None else sys.argv[1:]
    command = next((a for a in argv if not a.startswith("-")), "")
    try:
        code = app(args=argv, prog_name="seprobe", standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into this exit code
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except SeprobeError as e:
        if not getattr(e, "quiet", False):  # under torchrun, one rank speaks for all
            _err(f"seprobe: error: {for_the_command_line(e)}")
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        _err("seprobe: interrupted")
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except click_errors.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `seprobe` or `seprobe study` alone: the help
            typer.echo(e.ctx.get_help())
            sys.exit(0)
        hint = f"seprobe {command} --help" if command in app_commands() else "seprobe --help"
        _err(f"seprobe: error: {e.format_message().replace('Value error, ', '')} (see `{hint}`)")
        sys.exit(2)
    except click_errors.ClickException as e:
        _err(f"seprobe: error: {e.format_message()}")
        sys.exit(e.exit_code)


def app_commands() -> set[str]:
    return {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}


if __name__ == "__main__":
    main()
