"""The ``seprobe`` command line: parses options, calls a function that returns data, prints it.

Bad input (a :class:`~seprobe.errors.SeprobeError`) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import SeprobeError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Build, count, time and look inside Squeeze-and-Excitation networks.",
)


@app.callback()
def _root() -> None:
    """Build, count, time and look inside Squeeze-and-Excitation networks."""


ReductionOpt = Annotated[int | None, typer.Option(help="SE reduction ratio r")]
SqueezeOpt = Annotated[str | None, typer.Option(help="avg|max|none")]
GateOpt = Annotated[str | None, typer.Option(help="sigmoid|tanh|relu|hardsigmoid")]
BiasOpt = Annotated[bool | None, typer.Option("--bias/--no-bias", help="biases on the SE FCs")]
StagesOpt = Annotated[str | None, typer.Option(help="stages with SE, e.g. 2,3,4")]
DropStage5Opt = Annotated[bool | None, typer.Option("--drop-stage5", help="remove stage 5's SE")]
IntegrationOpt = Annotated[str | None, typer.Option(help="standard|pre|post|identity|3x3")]
StrideOpt = Annotated[str | None, typer.Option(help="1x1|3x3: where downsampling strides")]
StemPoolOpt = Annotated[str | None, typer.Option(help="ceil|pad: the stem max-pool (Caffe or torchvision)")]


def knob_dict(**options) -> dict:
    """The model-zoo knobs the user gave (options left at None are not knobs)."""
    return {k: v for k, v in options.items() if v is not None}


FormatOpt = Annotated[str | None, typer.Option("--format", "-f", help="table|csv|json|markdown")]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="write to this file (atomically)")]


def emit(tables: dict, fmt: str | None, output: Path | None) -> None:
    """Result tables: printed one after another (``--format``, a table by default), or written atomically to
    ``output`` (the first) and ``<stem>.<table><suffix>`` beside it (the others), in the format its suffix says."""
    from .tables import render, write_table

    for i, (name, df) in enumerate(tables.items()):
        if output is not None:
            path = output if i == 0 else output.with_name(f"{output.stem}.{name}{output.suffix}")
            typer.echo(f"wrote {write_table(df, path, fmt)}", err=True)
        else:
            heading = f"# {name}\n" if fmt == "markdown" and len(tables) > 1 else ""
            typer.echo(("" if i == 0 else "\n") + heading
                       + render(df, fmt or "table"), nl=False)


@app.command("models")
def models_cmd(fmt: FormatOpt = None, output: OutputOpt = None) -> None:
    """List every registered model with its parameter count and its counterpart without SE."""
    from .models.registry import models_table

    emit({"models": models_table()}, fmt, output)


@app.command("complexity")
def complexity_cmd(
    model: Annotated[list[str], typer.Option("--model", "-m", help="registered model name (repeatable)")],
    reduction: ReductionOpt = None,
    squeeze: SqueezeOpt = None,
    gate: GateOpt = None,
    bias: BiasOpt = None,
    stages: StagesOpt = None,
    drop_stage5: DropStage5Opt = None,
    integration: IntegrationOpt = None,
    stride_at: StrideOpt = None,
    stem_pool: StemPoolOpt = None,
    input_size: Annotated[int | None, typer.Option(help="square input side (default: the model's, 224 or 299)")] = None,
    count_bn: Annotated[bool, typer.Option("--count-bn", help="count BatchNorm (fvcore: 2/element)")] = False,
    count_activations: Annotated[bool, typer.Option("--count-activations", help="count activations, gates")] = False,
    count_adds: Annotated[bool, typer.Option("--count-adds", help="count residual adds")] = False,
    count_pooling: Annotated[bool, typer.Option("--count-pooling", help="count pooling and SE squeeze adds")] = False,
    per_block: Annotated[bool, typer.Option("--per-block", help="one row per SE block, and per stage")] = False,
    time_it: Annotated[bool, typer.Option("--time", help="measure forward and forward+backward time")] = False,
    device: Annotated[str, typer.Option(help="cpu|cuda (for --time)")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="batch size (for --time)")] = 32,
    dtype: Annotated[str, typer.Option(help="float32|bfloat16|float16 (autocast)")] = "float32",
    channels_last: Annotated[bool, typer.Option("--channels-last")] = False,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the models")] = False,
    warmup: Annotated[int, typer.Option(help="untimed iterations")] = 3,
    repeats: Annotated[int, typer.Option(help="timed iterations")] = 10,
    auto_batch: Annotated[bool, typer.Option("--auto-batch", help="halve the batch on GPU out-of-memory")] = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
) -> None:
    """Multiply-adds and parameters of SE models against the same networks without SE (and --time)."""
    from .cost.complexity import block_table, breakdown_table, measure, stage_table, summary_table
    from .cost.flops import FlopConvention
    from .models.registry import applicable_knobs

    knobs = knob_dict(reduction=reduction, squeeze=squeeze, gate=gate, bias=bias, stages=stages,
                      drop_stage5=drop_stage5, integration=integration, stride_at=stride_at, stem_pool=stem_pool)
    convention = FlopConvention(bn=count_bn, activations=count_activations, adds=count_adds, pooling=count_pooling)
    results = [measure(name, input_size=input_size, convention=convention, **applicable_knobs(name, knobs))
               for name in model]
    timing = None
    if time_it:
        from .cost.timing import TimingSetup

        setup = TimingSetup(device=device, batch_size=batch_size, input_size=input_size or results[0].input_size,
                            dtype=dtype, channels_last=channels_last, compile=compile_, warmup=warmup,
                            repeats=repeats, auto_batch=auto_batch)
        timing = _time(results, setup)
    if output is not None or (fmt and fmt != "table"):
        tables = {"summary": summary_table(results)}
        if per_block:
            for c in results:
                tables[f"blocks.{c.model}"] = block_table(c)
                tables[f"stages.{c.model}"] = stage_table(c)
        tables["operations"] = breakdown_table(results)
        if timing is not None:
            tables["timing"] = timing.summary
            tables["timing_ratios"] = timing.ratios
        emit(tables, fmt, output)
        if output is None:
            return
    from .cost.text import blocks_text, summary_text, timing_text

    typer.echo(summary_text(results), nl=False)
    if per_block:
        for c in results:
            typer.echo("\n" + blocks_text(c), nl=False)
    if timing is not None:
        typer.echo("\n" + timing_text(timing), nl=False)


def _time(results, setup):
    from .cost.timing import time_models
    from .models.registry import build_model, plain_counterpart

    models, pairs = {}, []
    for c in results:
        models[c.model] = build_model(c.model, **c.knobs)
        if c.plain_model:
            plain_name, plain_knobs = plain_counterpart(c.model, c.knobs)
            models.setdefault(plain_name, build_model(plain_name, **plain_knobs))
            pairs.append((c.model, c.plain_model))
    return time_models(models, pairs, setup, progress=lambda msg: typer.echo(msg, err=True))


study_app = typer.Typer(no_args_is_help=True, help="Run the paper's tables as studies (studies/*.toml).")
app.add_typer(study_app, name="study")


@study_app.command("run")
def study_run_cmd(
    paths: Annotated[list[Path], typer.Argument(help="study files, e.g. studies/stages.toml")],
    out: Annotated[Path | None, typer.Option(help="report folder (default: reports/ beside studies/)")] = None,
) -> None:
    """Run studies into reports/<name>.md and .csv (and a figure); nothing is written if any study fails."""
    _run_studies(paths, out)


@app.command("reports")
def reports_cmd(
    studies: Annotated[Path, typer.Option(help="folder of study files")] = Path("studies"),
    out: Annotated[Path | None, typer.Option(help="report folder (default: reports/ beside studies/)")] = None,
    with_timing: Annotated[bool, typer.Option("--with-timing", help="also run timing studies (slow)")] = False,
    with_activations: Annotated[bool, typer.Option("--with-activations",
                                                   help="also run activations studies (real data, minutes)")] = False,
) -> None:
    """Regenerate every report from studies/ (timing and activations studies only when asked), and the index."""
    if not studies.is_dir():
        raise SeprobeError(f"study folder {str(studies)!r} does not exist; valid: a folder of .toml studies")
    skip = {k for k, wanted in (("timing", with_timing), ("activations", with_activations)) if not wanted}
    _run_studies(sorted(studies.glob("*.toml")), out, skip_kinds=skip)


def _run_studies(paths: list[Path], out: Path | None, skip_kinds: set[str] = frozenset()) -> None:
    from .studies.reports import write_index, write_report
    from .studies.runs import run_study
    from .studies.spec import load_study

    studies = [load_study(p) for p in paths]  # validate them all before running any
    kept = []
    for s in studies:
        if s.kind in skip_kinds:
            typer.echo(f"skipping {s.name} ({s.kind}): add --with-{s.kind}", err=True)
        elif s.missing_inputs():
            typer.echo(f"skipping {s.name}: {', '.join(s.missing_inputs())} not found here", err=True)
        else:
            kept.append(s)
    studies = kept
    results = []
    for s in studies:
        typer.echo(f"running {s.name}" + (f" ({len(s.variants)} variants)" if s.variants else ""), err=True)
        results.append(run_study(s, progress=lambda msg: typer.echo(f"  {msg}", err=True)))
    for r in results:  # written only once every study has run
        out_dir = out or r.study.path.parent.parent / "reports"
        for path in write_report(r, out_dir):
            typer.echo(f"wrote {path}", err=True)
        unexplained = [n for n in r.notes if "UNEXPLAINED" in n]
        for n in unexplained:
            typer.echo(f"warning: {r.study.name}: {n}", err=True)
    if results:
        typer.echo(f"wrote {write_index(out or results[0].study.path.parent.parent / 'reports')}", err=True)


def _load(model, weights, knobs, resize, crop, mean, std, interpolation):
    """The trained model, with the user's preprocessing overrides applied to its own preprocessing."""
    from .probe.loading import load_model

    loaded = load_model(model, weights, **knobs)
    loaded.preprocessing = _preprocessing(loaded.preprocessing, resize, crop, mean, std, interpolation)
    return loaded


def _preprocessing(pre, resize, crop, mean, std, interpolation):
    """The model's preprocessing with the user's overrides."""
    import dataclasses


    def triple(text, what):
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) != 3:
            raise SeprobeError(f"invalid --{what} {text!r}; valid: three comma-separated numbers, e.g. 0.5,0.5,0.5")
        return values

    changes = {k: v for k, v in dict(resize=resize, crop=crop, interpolation=interpolation).items() if v is not None}
    if mean is not None:
        changes["mean"] = triple(mean, "mean")
    if std is not None:
        changes["std"] = triple(std, "std")
    return dataclasses.replace(pre, **changes)


ModelSpecOpt = Annotated[str, typer.Option("--model", "-m", help="seprobe name, timm:NAME or torchvision:NAME")]
WeightsOpt = Annotated[str | None, typer.Option(help="checkpoint path | timm | torchvision | random")]
DataOpt = Annotated[Path, typer.Option(help="images: wnid_name files, class folders, or a flat folder + --labels")]
LabelsOpt = Annotated[Path | None, typer.Option(help="label file for a flat folder ('<file> <label>' lines)")]
ResizeOpt = Annotated[int | None, typer.Option(help="override: resize the shorter side to this")]
CropOpt = Annotated[int | None, typer.Option(help="override: centre crop size")]
MeanOpt = Annotated[str | None, typer.Option(help="override: normalisation mean, e.g. 0.5,0.5,0.5")]
StdOpt = Annotated[str | None, typer.Option(help="override: normalisation std")]
InterpOpt = Annotated[str | None, typer.Option(help="override: bilinear|bicubic|nearest")]


@app.command("activations")
def activations_cmd(
    model: ModelSpecOpt,
    data: DataOpt,
    weights: WeightsOpt = None,
    labels: LabelsOpt = None,
    classes: Annotated[str, typer.Option(help="ImageNet names, wnids or indices")] = "goldfish,pug,airliner,cliff",
    stage: Annotated[list[int] | None, typer.Option(help="plot the blocks of this stage (repeatable)")] = None,
    blocks: Annotated[str | None, typer.Option(help="plot these blocks, e.g. SE_5_1,SE_5_2")] = None,
    samples_per_class: Annotated[int | None, typer.Option(help="images per class (the paper: 50)")] = None,
    views: Annotated[int, typer.Option(help="views per image: the evaluation crop + augmented crops")] = 1,
    channels: Annotated[int, typer.Option(help="channels sampled uniformly for the plots (the paper: 50)")] = 50,
    batch_size: Annotated[int, typer.Option()] = 32,
    device: Annotated[str, typer.Option()] = "cpu",
    num_workers: Annotated[int, typer.Option()] = 0,
    all_classes_table: Annotated[bool, typer.Option("--all-classes-table", help="tidy table of every class")] = False,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("activations"),
    resize: ResizeOpt = None, crop: CropOpt = None, mean: MeanOpt = None, std: StdOpt = None,
    interpolation: InterpOpt = None,
    reduction: ReductionOpt = None, squeeze: SqueezeOpt = None, gate: GateOpt = None, bias: BiasOpt = None,
    stages: StagesOpt = None, drop_stage5: DropStage5Opt = None, integration: IntegrationOpt = None,
    stride_at: StrideOpt = None, stem_pool: StemPoolOpt = None,
) -> None:
    """Class-specific excitation distributions per stage and block (the paper's Figs. 6 and 7).

    Model knobs (--reduction ... --stem-pool) apply to seprobe models, and must match the checkpoint."""
    from .probe.activation_report import specificity_table, write_outputs
    from .probe.activations import choose_blocks, choose_classes, collect
    from .probe.images import discover, select
    from .probe.loading import weights_kind

    weights_kind(weights)
    images = select(discover(data, labels), samples_per_class)
    chosen = choose_classes(images, classes)
    if channels < 1:
        raise SeprobeError(f"invalid --channels {channels}; valid: an integer >= 1")
    knobs = knob_dict(reduction=reduction, squeeze=squeeze, gate=gate, bias=bias, stages=stages,
                      drop_stage5=drop_stage5, integration=integration, stride_at=stride_at, stem_pool=stem_pool)
    loaded = _load(model, weights, knobs, resize, crop, mean, std, interpolation)
    if loaded.random:
        typer.echo("warning: --weights random: the gate values of an untrained network mean nothing", err=True)
    run = collect(loaded, images, views=views, batch_size=batch_size, device=device, num_workers=num_workers)
    shown = choose_blocks(run.gates, stage, blocks)
    spec = specificity_table(run, chosen)
    for path in write_outputs(run, out, chosen, shown, channels, spec, all_classes_table):
        typer.echo(f"wrote {path}", err=True)
    if run.top1 is not None:
        typer.echo(f"{loaded.name}: top-1 {run.top1:.3f}, top-5 {run.top5:.3f} on {run.evaluated} images")
    typer.echo(spec.to_string(index=False, float_format="{:.3f}".format))
    for note in run.notes:
        typer.echo(f"Note: {note}.")


@app.command("evaluate")
def evaluate_cmd(
    model: ModelSpecOpt,
    data: DataOpt,
    weights: WeightsOpt = None,
    labels: LabelsOpt = None,
    batch_size: Annotated[int, typer.Option()] = 50,
    device: Annotated[str, typer.Option()] = "cpu",
    num_workers: Annotated[int, typer.Option()] = 0,
    resize: ResizeOpt = None, crop: CropOpt = None, mean: MeanOpt = None, std: StdOpt = None,
    interpolation: InterpOpt = None,
) -> None:
    """Top-1 / top-5 accuracy of an ImageNet classifier on labelled images (evaluation crop)."""
    from .probe.activations import collect
    from .probe.images import discover
    from .probe.loading import weights_kind

    weights_kind(weights)
    images = discover(data, labels)
    if not images.imagenet:
        raise SeprobeError(f"{data}: labels are not ImageNet classes; valid: wnid-named files or folders, or --labels")
    loaded = _load(model, weights, {}, resize, crop, mean, std, interpolation)
    run = collect(loaded, images, batch_size=batch_size, device=device, num_workers=num_workers, with_gates=False)
    skipped = f", {len(run.failed)} unreadable images skipped" if run.failed else ""
    typer.echo(f"{loaded.name}: top-1 {run.top1:.3f}, top-5 {run.top5:.3f} on {run.evaluated} images{skipped}")


def main() -> None:
    try:
        app()
    except SeprobeError as e:
        typer.echo(f"seprobe: error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("seprobe: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
