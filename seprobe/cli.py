"""The ``seprobe`` command line: parses options, calls a function of :mod:`seprobe.api`, prints what it returns.

Every error a user can cause is one line on stderr (``seprobe: error: ...``) and exit code 2: a bad option
value, a missing input, a malformed file. Ctrl-C and SIGTERM print ``seprobe: interrupted`` and exit 130, with
no output half-written. Only ``typer`` and the torch-free modules load before an option has been checked, so
``--help``, ``--version`` and usage errors answer at once.
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Annotated

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
    Gate,
    Integration,
    Interpolation,
    Squeeze,
    StemPool,
    StrideAt,
)
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


# --- options shared by several commands ------------------------------------------------------------------------------

ReductionOpt = Annotated[
    int | None, typer.Option(min=1, metavar="R", help="SE reduction ratio r (hidden width C // r)")
]
SqueezeOpt = Annotated[Squeeze | None, typer.Option(help="squeeze: average pool (Eq. 2), max pool, none")]
GateOpt = Annotated[Gate | None, typer.Option(help="excitation gate (Eq. 3)")]
BiasOpt = Annotated[bool | None, typer.Option("--bias/--no-bias", help="biases on the SE FCs")]
SEStagesOpt = Annotated[
    str | None, typer.Option("--se-stages", metavar="S,S,...", help="stages that carry SE, e.g. 2,3,4")
]
DropStage5Opt = Annotated[bool | None, typer.Option("--drop-stage5", help="remove stage 5's SE blocks")]
IntegrationOpt = Annotated[Integration | None, typer.Option(help="where the SE block sits (Fig. 5)")]
StrideOpt = Annotated[StrideAt | None, typer.Option(help="ResNets: the conv that downsamples")]
StemPoolOpt = Annotated[StemPool | None, typer.Option(help="ResNets: Caffe's ceil or torchvision's padded pool")]
FormatOpt = Annotated[Format | None, typer.Option("--format", "-f", help="print tables in this format")]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", metavar="FILE", help="write to this file (format from suffix)")
]


#: command-line option -> model-zoo knob
KNOB_OPTIONS = {
    "reduction": "reduction",
    "squeeze": "squeeze",
    "gate": "gate",
    "bias": "bias",
    "se_stages": "stages",
    "drop_stage5": "drop_stage5",
    "integration": "integration",
    "stride_at": "stride_at",
    "stem_pool": "stem_pool",
}


def model_knobs(options: dict) -> dict:
    """The model-zoo knobs among a command's options (``locals()``); those left at None are not knobs."""
    return {knob: options[opt] for opt, knob in KNOB_OPTIONS.items() if options.get(opt) is not None}


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


@app.command("models")
def models_cmd(fmt: FormatOpt = None, output: OutputOpt = None) -> None:
    """List every registered model with its parameter count and its counterpart without SE."""
    from .io import check_output_file
    from .models.registry import models_table

    check_output_file(output)
    emit({"models": models_table()}, fmt, output, "models")


@app.command("complexity")
def complexity_cmd(
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", metavar="NAME", help="seprobe name, timm:NAME or torchvision:NAME (repeatable)"),
    ] = None,
    reduction: ReductionOpt = None,
    squeeze: SqueezeOpt = None,
    gate: GateOpt = None,
    bias: BiasOpt = None,
    se_stages: Annotated[
        str | None, typer.Option("--se-stages", "--stages", metavar="S,S,...", help="stages that carry SE, e.g. 2,3,4")
    ] = None,
    drop_stage5: DropStage5Opt = None,
    integration: IntegrationOpt = None,
    stride_at: StrideOpt = None,
    stem_pool: StemPoolOpt = None,
    input_size: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="square input side (default: the model's)")
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
    batch_size: Annotated[int, typer.Option(min=1, metavar="N", help="batch size (for --time)")] = 32,
    dtype: Annotated[Dtype, typer.Option(help="autocast dtype (for --time)")] = "float32",
    channels_last: Annotated[bool, typer.Option("--channels-last", help="channels_last memory format")] = False,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the models")] = False,
    warmup: Annotated[int, typer.Option(min=0, metavar="N", help="untimed iterations")] = 3,
    repeats: Annotated[int, typer.Option(min=1, metavar="N", help="timed iterations")] = 10,
    auto_batch: Annotated[bool, typer.Option("--auto-batch", help="halve the batch on GPU out-of-memory")] = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
) -> None:
    """Multiply-adds and parameters of SE models against the same networks without SE (and --time)."""
    options = dict(locals())
    from . import api
    from .io import check_output_file
    from .tables import format_for

    check_output_file(output)
    if output is not None:
        format_for(output, fmt)
    if compile_ and warmup < 1:
        raise SeprobeError(f"invalid --warmup {warmup} with --compile: the first call compiles; valid: >= 1")
    if fmt == "csv" and output is None and (per_block or time_it):
        raise SeprobeError(
            "--format csv prints one table, and --per-block / --time add more; valid: --output "
            "FILE.csv (one file per table), or --format json"
        )
    models = model or _defaults_model()
    knobs = model_knobs(options)
    timing = None
    if time_it:
        from .cost.timing import TimingSetup

        timing = TimingSetup(
            device=device,
            batch_size=batch_size,
            dtype=dtype,
            channels_last=channels_last,
            compile=compile_,
            warmup=warmup,
            repeats=repeats,
            auto_batch=auto_batch,
        )
    report = api.complexity(
        models,
        input_size=input_size,
        count_bn=count_bn,
        count_activations=count_activations,
        count_adds=count_adds,
        count_pooling=count_pooling,
        count_muls=count_muls,
        per_block=per_block,
        time=timing,
        progress=_err,
        **knobs,
    )
    for w in report.warnings:
        _err(f"seprobe: warning: {w}")
    if output is not None or fmt not in (None, "table"):
        emit(report.tables(with_operations=fmt != "csv" or output is not None), fmt, output, "complexity")
        if output is None:
            return
    typer.echo(report.text(), nl=False)


def _defaults_model() -> list[str]:
    from .config import load_defaults

    model = load_defaults().get("model")
    if model is None:
        raise SeprobeError(
            "missing --model; e.g. seprobe complexity --model se_resnet50 (names: `seprobe models`, "
            "timm:NAME, torchvision:NAME)"
        )
    return [model]


# --- studies ---------------------------------------------------------------------------------------------------------

study_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Run the paper's tables as studies (studies/*.toml)."
)
app.add_typer(study_app, name="study")


@study_app.command("run")
def study_run_cmd(
    paths: Annotated[list[Path], typer.Argument(metavar="STUDY.toml...", help="study files, e.g. studies/stages.toml")],
    out: Annotated[
        Path | None, typer.Option(metavar="DIR", help="report folder (default: reports/ beside studies/)")
    ] = None,
) -> None:
    """Run studies into reports/<name>.md and .csv (and a figure); nothing is written if any study fails."""
    _run_studies(paths, out)


@app.command("reports")
def reports_cmd(
    studies: Annotated[Path, typer.Option(metavar="DIR", help="folder of study files")] = Path("studies"),
    out: Annotated[
        Path | None, typer.Option(metavar="DIR", help="report folder (default: reports/ beside studies/)")
    ] = None,
    with_timing: Annotated[bool, typer.Option("--with-timing", help="also run timing studies (slow)")] = False,
    with_activations: Annotated[
        bool, typer.Option("--with-activations", help="also run activations studies (real data, minutes)")
    ] = False,
    with_ablation: Annotated[
        bool, typer.Option("--with-ablation", help="also run ablation studies (real data, a few minutes)")
    ] = False,
) -> None:
    """Regenerate every report from studies/ (timing, activations and ablation studies only when asked), and the
    index."""
    if studies.is_file():
        raise SeprobeError(
            f"--studies {str(studies)!r} is a file; valid: a folder of .toml studies (or `seprobe study run {studies}`)"
        )
    if not studies.is_dir():
        raise SeprobeError(f"--studies {str(studies)!r} does not exist; valid: a folder of .toml studies")
    paths = sorted(studies.glob("*.toml"))
    if not paths:
        raise SeprobeError(f"--studies {str(studies)!r} holds no .toml study; valid: a folder of studies")
    wanted = {"timing": with_timing, "activations": with_activations, "ablation": with_ablation}
    skip = [kind for kind, asked in wanted.items() if not asked]
    _run_studies(paths, out, skip)


def _run_studies(paths: list[Path], out: Path | None, skip_kinds=()) -> None:
    from .api import run_studies

    done = run_studies(paths, out, skip_kinds=skip_kinds, progress=_err)
    for path in done.written:
        _err(f"wrote {path}")
    for w in done.warnings:
        _err(f"seprobe: warning: {w}")
    if not done.ran:
        raise SeprobeError(
            f"no study ran ({'; '.join(f'{k} skipped: {v}' for k, v in done.skipped.items())}); valid: the "
            "flags or inputs named there"
        )


# --- trained networks over labelled images ---------------------------------------------------------------------------

ModelSpecOpt = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", metavar="NAME", help="seprobe name, timm:NAME[.tag] or torchvision:NAME [default: config]"
    ),
]
WeightsOpt = Annotated[
    str | None,
    typer.Option(
        metavar="PATH|pretrained|random",
        help="checkpoint path, 'pretrained' (timm/torchvision download) or 'random' [default: config]",
    ),
]
DataOpt = Annotated[
    Path | None,
    typer.Option(
        metavar="DIR", help="images: wnid_name files, class folders, or a flat folder + --labels [default: config]"
    ),
]
LabelsOpt = Annotated[
    Path | None, typer.Option(metavar="FILE", help="label file for a flat folder ('<file> <label>' lines)")
]
ResizeOpt = Annotated[int | None, typer.Option(min=1, metavar="N", help="override: resize the shorter side to this")]
CropOpt = Annotated[int | None, typer.Option(min=1, metavar="N", help="override: centre crop size")]
MeanOpt = Annotated[str | None, typer.Option(metavar="M,M,M", help="override: normalisation mean, e.g. 0.5,0.5,0.5")]
StdOpt = Annotated[str | None, typer.Option(metavar="S,S,S", help="override: normalisation std, e.g. 0.5,0.5,0.5")]
InterpOpt = Annotated[Interpolation | None, typer.Option(help="override: resize interpolation")]
DeviceOpt = Annotated[str, typer.Option(metavar="DEVICE", help="cpu, cuda or cuda:N")]
WorkersOpt = Annotated[int, typer.Option(min=0, metavar="N", help="data-loading processes")]

EXAMPLE = "seprobe {command} --model timm:tf_mobilenetv3_small_100 --weights PATH.pth --data DIR{extra}"


def _inputs(command: str, model, weights, data, labels, extra: str = ""):
    """The inputs, from the options or else the defaults (config file, environment); all missing ones at once."""
    from .api import Inputs
    from .config import load_defaults

    defaults = load_defaults()
    given = {"model": model, "weights": weights, "data": data, "labels": labels}
    values = {k: v if v is not None else defaults.get(k) for k, v in given.items()}
    if model is not None and model != defaults.get("model") and weights is None:
        values["weights"] = None  # the default weights belong to the default model
    missing = [f"--{k}" for k in ("model", "weights", "data") if values[k] is None]
    if missing:
        raise SeprobeError(
            f"missing {', '.join(missing)}; e.g. {EXAMPLE.format(command=command, extra=extra)} (or set them once in "
            "seprobe.toml, [tool.seprobe] of pyproject.toml, or SEPROBE_MODEL / SEPROBE_WEIGHTS / SEPROBE_DATA)"
        )
    return Inputs(
        values["model"], values["weights"], Path(values["data"]), Path(values["labels"]) if values["labels"] else None
    )


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


def _triple(text: str | None, what: str):
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise SeprobeError(f"invalid --{what} {text!r}; valid: three comma-separated numbers, e.g. 0.5,0.5,0.5")
    return values


def _overrides(resize, crop, mean, std, interpolation):
    from .api import Overrides

    o = Overrides(resize, crop, _triple(mean, "mean"), _triple(std, "std"), interpolation)
    o.check()
    return o


@app.command("activations")
def activations_cmd(
    model: ModelSpecOpt = None,
    weights: WeightsOpt = None,
    data: DataOpt = None,
    labels: LabelsOpt = None,
    classes: Annotated[
        str, typer.Option(metavar="NAMES", help="ImageNet names, wnids or indices")
    ] = "goldfish,pug,airliner,cliff",
    stage: Annotated[
        list[int] | None, typer.Option(metavar="S", help="show the blocks of this stage (repeatable)")
    ] = None,
    blocks: Annotated[
        str | None, typer.Option(metavar="SE_s_b,...", help="show these blocks, e.g. SE_5_1,SE_5_2")
    ] = None,
    samples_per_class: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="images per class (the paper: 50)")
    ] = None,
    views: Annotated[
        int, typer.Option(min=1, metavar="K", help="views per image: the evaluation crop + augmented crops")
    ] = 1,
    channels: Annotated[
        int, typer.Option(min=1, metavar="N", help="channels sampled for the plots (the paper: 50)")
    ] = 50,
    batch_size: Annotated[int, typer.Option(min=1, metavar="N")] = 32,
    device: DeviceOpt = "cpu",
    num_workers: WorkersOpt = 0,
    all_classes_table: Annotated[bool, typer.Option("--all-classes-table", help="tidy table of every class")] = False,
    out: Annotated[Path, typer.Option(metavar="DIR", help="output folder")] = Path("activations"),
    resize: ResizeOpt = None,
    crop: CropOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    interpolation: InterpOpt = None,
    reduction: ReductionOpt = None,
    squeeze: SqueezeOpt = None,
    gate: GateOpt = None,
    bias: BiasOpt = None,
    se_stages: SEStagesOpt = None,
    drop_stage5: DropStage5Opt = None,
    integration: IntegrationOpt = None,
    stride_at: StrideOpt = None,
    stem_pool: StemPoolOpt = None,
) -> None:
    """Class-specific excitation distributions per stage and block (the paper's Figs. 6 and 7).

    --stage and --blocks choose the blocks shown (table and figures); --se-stages and the other model knobs
    build a seprobe model and must match its checkpoint."""
    options = dict(locals())
    from . import api
    inputs = _inputs("activations", model, weights, data, labels, " --stage 5 --classes goldfish,pug")
    overrides = _overrides(resize, crop, mean, std, interpolation)
    knobs = model_knobs(options)
    with _session(device) as world:
        result = api.activations(
            inputs.model,
            inputs.weights,
            inputs.data,
            labels=inputs.labels,
            classes=classes,
            stage=stage,
            blocks=blocks,
            samples_per_class=samples_per_class,
            views=views,
            channels=channels,
            batch_size=batch_size,
            device=world.device,
            num_workers=num_workers,
            all_classes_table=all_classes_table,
            out=out,
            overrides=overrides,
            **knobs,
        )
    _print_result(world, result)


@app.command("evaluate")
def evaluate_cmd(
    model: ModelSpecOpt = None,
    weights: WeightsOpt = None,
    data: DataOpt = None,
    labels: LabelsOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, metavar="N")] = 50,
    device: DeviceOpt = "cpu",
    num_workers: WorkersOpt = 0,
    resize: ResizeOpt = None,
    crop: CropOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    interpolation: InterpOpt = None,
) -> None:
    """Top-1 / top-5 accuracy of an ImageNet classifier on labelled images (evaluation crop)."""
    from . import api

    inputs = _inputs("evaluate", model, weights, data, labels)
    overrides = _overrides(resize, crop, mean, std, interpolation)
    with _session(device) as world:
        result = api.evaluate(
            inputs.model,
            inputs.weights,
            inputs.data,
            labels=inputs.labels,
            batch_size=batch_size,
            device=world.device,
            num_workers=num_workers,
            overrides=overrides,
        )
    _print_result(world, result)


@app.command("ablate")
def ablate_cmd(
    model: ModelSpecOpt = None,
    weights: WeightsOpt = None,
    data: DataOpt = None,
    labels: LabelsOpt = None,
    samples_per_class: Annotated[int | None, typer.Option(min=1, metavar="N", help="images per class")] = None,
    mode: Annotated[AblationMode, typer.Option(help="identity: gate = 1; mean: gate = its calibration mean")] = "both",
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
        int | None,
        typer.Option(min=1, metavar="N", help="mean mode: N images per class taken out of --data for the means"),
    ] = None,
    calibration_data: Annotated[Path | None, typer.Option(metavar="DIR", help="mean mode: separate images")] = None,
    calibration_labels: Annotated[
        Path | None, typer.Option(metavar="FILE", help="labels of --calibration-data")
    ] = None,
    calibration_views: Annotated[int, typer.Option(min=1, metavar="K", help="views per calibration image")] = 1,
    allow_overlap: Annotated[
        bool, typer.Option("--allow-overlap", help="calibration may share evaluation images")
    ] = False,
    bootstrap: Annotated[int, typer.Option(min=1, metavar="N", help="paired-bootstrap resamples")] = 2000,
    seed: Annotated[int, typer.Option(metavar="N", help="bootstrap seed")] = 0,
    export: Annotated[Path | None, typer.Option(metavar="FILE", help="write the network with the set ablated")] = None,
    export_mode: Annotated[ExportMode | None, typer.Option(help="the mode --export uses (with --mode both)")] = None,
    batch_size: Annotated[int, typer.Option(min=1, metavar="N")] = 32,
    device: DeviceOpt = "cpu",
    num_workers: WorkersOpt = 0,
    out: Annotated[Path, typer.Option(metavar="DIR", help="output folder")] = Path("ablation"),
    resize: ResizeOpt = None,
    crop: CropOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    interpolation: InterpOpt = None,
    reduction: ReductionOpt = None,
    squeeze: SqueezeOpt = None,
    gate: GateOpt = None,
    bias: BiasOpt = None,
    se_stages: SEStagesOpt = None,
    drop_stage5: DropStage5Opt = None,
    integration: IntegrationOpt = None,
    stride_at: StrideOpt = None,
    stem_pool: StemPoolOpt = None,
) -> None:
    """What each SE block is worth: accuracy, agreement and KL with blocks removed (identity) or frozen to their
    mean, with paired-bootstrap intervals, and the cost each saves; --export writes the smaller network."""
    options = dict(locals())
    from . import api

    inputs = _inputs("ablate", model, weights, data, labels, " --calibration 1")
    overrides = _overrides(resize, crop, mean, std, interpolation)
    with _session(device) as world:
        result = api.ablate(
            inputs.model,
            inputs.weights,
            inputs.data,
            labels=inputs.labels,
            samples_per_class=samples_per_class,
            mode=mode,
            blocks=blocks,
            stage=stage,
            per_stage=per_stage,
            each_block=each_block,
            cumulative=cumulative,
            calibration=calibration,
            calibration_data=calibration_data,
            calibration_labels=calibration_labels,
            calibration_views=calibration_views,
            allow_overlap=allow_overlap,
            bootstrap=bootstrap,
            seed=seed,
            export=export,
            export_mode=export_mode,
            batch_size=batch_size,
            device=world.device,
            num_workers=num_workers,
            out=out,
            overrides=overrides,
            **model_knobs(options),
        )
    _print_result(world, result)


# --- entry point -----------------------------------------------------------------------------------------------------


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM takes the same clean-up path as Ctrl-C


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, rank 0 speaks for all
    _err(f"seprobe: warning: {str(message).splitlines()[0] if str(message) else category.__name__}")


def main(argv: list[str] | None = None) -> None:
    """Run the command line; every failure a user can cause ends here as one line and a non-zero exit code."""
    signal.signal(signal.SIGTERM, _terminate)
    warnings.showwarning = _one_line_warning
    command = next((a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("-")), "")
    try:
        code = app(args=argv, prog_name="seprobe", standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into this exit code
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except SeprobeError as e:
        if not getattr(e, "quiet", False):  # under torchrun, one rank speaks for all
            _err(f"seprobe: error: {e}")
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
