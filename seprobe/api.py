"""The Python face of every command: ``seprobe.complexity``, ``seprobe.activations``, ``seprobe.evaluate``,
``seprobe.run_studies`` return the data that ``seprobe complexity`` ... print. The command line only parses
options, calls these, and prints what they return.

Every argument is checked before a model is built, an image read or a file written; outputs (``out=``) are
written as one set (:func:`seprobe.io.output_set`): all of them, or none.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .devices import check_device
from .errors import SeprobeError
from .io import check_output_dir, output_set

if TYPE_CHECKING:
    import pandas as pd

    from .cost.complexity import Complexity
    from .cost.timing import TimingResult, TimingSetup
    from .probe.activations import ActivationRun
    from .probe.loading import LoadedModel

#: a side larger than this is surely a typo (a 4096x4096 image through ResNet-50 already needs ~60 GB to train)
MAX_INPUT_SIZE = 4096
SCHEMA_VERSION = 1


def check_positive(what: str, value: int | None, minimum: int = 1) -> None:
    """``value`` must be an integer >= ``minimum`` (``None`` means: not given)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SeprobeError(f"invalid {what} {value!r}; valid: an integer >= {minimum}")


# --- complexity -----------------------------------------------------------------------------------------------------


@dataclass
class ComplexityReport:
    """What ``seprobe complexity`` prints: one :class:`~seprobe.cost.complexity.Complexity` per model, the timing
    (``time=``) and the warnings about knobs that did not apply."""

    results: list[Complexity]
    per_block: bool = False
    timing: TimingResult | None = None
    warnings: list[str] = field(default_factory=list)

    def tables(self, with_operations: bool = True) -> dict[str, pd.DataFrame]:
        """The result tables by name: ``summary``, per block and per stage (``per_block``), ``operations``,
        ``timing`` and ``timing_ratios``."""
        from .cost.complexity import block_table, breakdown_table, stage_table, summary_table

        tables = {"summary": summary_table(self.results)}
        if self.per_block:
            for c in self.results:
                tables[f"blocks.{c.model}"] = block_table(c)
                tables[f"stages.{c.model}"] = stage_table(c)
        if with_operations:
            tables["operations"] = breakdown_table(self.results)
        if self.timing is not None:
            tables["timing"] = self.timing.summary
            tables["timing_ratios"] = self.timing.ratios
        return tables

    def text(self) -> str:
        """The one-screen terminal view."""
        from .cost.text import blocks_text, summary_text, timing_text

        parts = [summary_text(self.results)]
        if self.per_block:
            parts += [blocks_text(c) for c in self.results]
        if self.timing is not None:
            parts.append(timing_text(self.timing))
        return "\n".join(parts)


def split_knobs(models: Sequence[str], knobs: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The knobs that apply to each model, and a warning for each (knob, model) that does not.

    A knob that applies to none of the models is an error: it would change nothing."""
    from .models.registry import SE_KNOBS, get_spec
    from .probe.loading import is_foreign

    per_model, ignored = {}, {}
    for name in models:
        if is_foreign(name):
            applies = {}
        else:
            spec = get_spec(name)
            applies = {k: v for k, v in knobs.items() if k in spec.knobs}
            for k in knobs:
                if k not in spec.knobs and k not in SE_KNOBS:
                    raise SeprobeError(f"unknown knob {k!r} for {name}; valid: {', '.join(spec.knobs)}")
        per_model[name] = applies
        for k in knobs:
            if k not in applies:
                ignored.setdefault(k, []).append(name)
    unused = [k for k, names in ignored.items() if len(names) == len(models)]
    if unused:
        flags = ", ".join("--" + k.replace("_", "-") for k in unused)
        raise SeprobeError(f"{flags} applies to none of {', '.join(models)}; valid: SE knobs with an seprobe SE "
                           "model (se_*), architecture knobs with a model that has them")
    notes = [f"--{k.replace('_', '-')} does not apply to {', '.join(names)} (no SE, or not an seprobe model): "
             "ignored there" for k, names in ignored.items()]
    return per_model, notes


def complexity(models: str | Sequence[str], *, input_size: int | None = None, count_bn: bool = False,
               count_activations: bool = False, count_adds: bool = False, count_pooling: bool = False,
               count_muls: bool = False, per_block: bool = False, time: TimingSetup | None = None,
               progress: Callable[[str], None] = lambda msg: None, **knobs: Any) -> ComplexityReport:
    """Multiply-adds and parameters of each model against the same network without SE (``seprobe complexity``).

    ``models``: seprobe names, ``timm:NAME`` or ``torchvision:NAME``; ``knobs``: model-zoo knobs (SE knobs reach
    the seprobe SE models only, with a warning for the others); ``time``: a
    :class:`~seprobe.cost.timing.TimingSetup` to also time inference and a training step.
    """
    from .cost.complexity import measure
    from .cost.flops import FlopConvention
    from .probe.loading import check_model_name

    models = [models] if isinstance(models, str) else list(models)
    if not models:
        raise SeprobeError("no model given; valid: one or more --model NAME (see `seprobe models`)")
    for name in models:
        check_model_name(name)
    check_positive("--input-size", input_size, 1)
    if input_size is not None and input_size > MAX_INPUT_SIZE:
        raise SeprobeError(f"invalid --input-size {input_size}; valid: an integer <= {MAX_INPUT_SIZE}")
    per_model, notes = split_knobs(models, {k: v for k, v in knobs.items() if v is not None})
    if time is not None:
        _check_timing_memory(time, input_size or 224)
    convention = FlopConvention(bn=count_bn, activations=count_activations, adds=count_adds, pooling=count_pooling,
                                muls=count_muls)
    results = []
    for name in models:
        results.append(measure(name, input_size=input_size, convention=convention, **per_model[name]))
    report = ComplexityReport(results, per_block=per_block, warnings=notes)
    if time is not None:
        time.input_size = input_size or results[0].input_size
        report.timing = _time(results, time, progress)
    return report


def _check_timing_memory(setup: TimingSetup, side: int) -> None:
    """Refuse a batch whose input tensor alone would not fit in this machine's memory (a typo, surely)."""
    need = setup.batch_size * 3 * side * side * 4
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > total / 4:
        raise SeprobeError(f"invalid --batch-size {setup.batch_size} at {side}x{side}: the input alone needs "
                           f"{need / 2**30:.1f} GiB of this machine's {total / 2**30:.0f} GiB; valid: a smaller "
                           "--batch-size or --input-size")


def _time(results: list[Complexity], setup: TimingSetup, progress) -> TimingResult:
    from .cost.timing import time_models
    from .models.registry import build_model, plain_counterpart
    from .probe.loading import foreign_model, is_foreign

    models, pairs = {}, []
    for c in results:
        if is_foreign(c.model):
            models[c.model] = foreign_model(c.model)
            continue
        models[c.model] = build_model(c.model, **c.knobs)
        if c.plain_model:
            plain_name, plain_knobs = plain_counterpart(c.model, c.knobs)
            models.setdefault(plain_name, build_model(plain_name, **plain_knobs))
            pairs.append((c.model, c.plain_model))
    return time_models(models, pairs, setup, progress=progress)


# --- trained models over labelled images -------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """What the probe commands read: the model, its weights, the images and their labels."""

    model: str
    weights: str
    data: Path
    labels: Path | None = None


@dataclass(frozen=True)
class Overrides:
    """Preprocessing the user imposes on the model's own (``--resize --crop --mean --std --interpolation``)."""

    resize: int | None = None
    crop: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    interpolation: str | None = None

    def check(self) -> None:
        check_positive("--resize", self.resize)
        check_positive("--crop", self.crop)
        for what, values in (("--mean", self.mean), ("--std", self.std)):
            if values is None:
                continue
            if len(values) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise SeprobeError(f"invalid {what} {values!r}; valid: three finite numbers, e.g. 0.5,0.5,0.5")
        if self.std is not None and any(v <= 0 for v in self.std):
            raise SeprobeError(f"invalid --std {self.std!r}; valid: three numbers > 0 (it divides)")

    def apply(self, pre):
        return dataclasses.replace(pre, **{k: v for k, v in dataclasses.asdict(self).items() if v is not None})


def _check_inputs(inputs: Inputs) -> None:
    from .probe.loading import check_model_name, weights_kind

    check_model_name(inputs.model)
    weights_kind(inputs.weights)
    _check_data(inputs.data, inputs.labels)


def _check_data(data: str | os.PathLike, labels: str | os.PathLike | None, option: str = "--data",
                labels_option: str = "--labels") -> None:
    """An image folder and its optional label file exist, each of the right kind."""
    data = Path(data)
    if data.is_file():
        raise SeprobeError(f"{option} {str(data)!r} is a file; valid: a folder of images")
    if not data.is_dir():
        raise SeprobeError(f"{option} {str(data)!r} does not exist; valid: a folder of images (wnid_name files, "
                           f"class folders, or a flat folder with {labels_option})")
    if labels is not None and not Path(labels).is_file():
        what = "is a folder" if Path(labels).is_dir() else "does not exist"
        raise SeprobeError(f"{labels_option} {str(labels)!r} {what}; valid: a label file")


def _load(inputs: Inputs, overrides: Overrides, knobs: dict[str, Any]) -> LoadedModel:
    from .probe.loading import load_model

    loaded = load_model(inputs.model, inputs.weights, **knobs)
    loaded.preprocessing = overrides.apply(loaded.preprocessing)
    return loaded


@dataclass
class Evaluation:
    """Top-1 / top-5 of a classifier on labelled images (``seprobe evaluate``)."""

    model: str
    top1: float
    top5: float
    images: int
    unreadable: list[str]

    def text(self) -> str:
        skipped = f", {len(self.unreadable)} unreadable images skipped" if self.unreadable else ""
        return f"{self.model}: top-1 {self.top1:.3f}, top-5 {self.top5:.3f} on {self.images} images{skipped}"


def evaluate(model: str, weights: str, data: str | os.PathLike, *, labels: str | os.PathLike | None = None,
             batch_size: int = 50, device: str = "cpu", num_workers: int = 0,
             overrides: Overrides = Overrides(), progress: bool = True) -> Evaluation:
    """Top-1 / top-5 accuracy of an ImageNet classifier on labelled images, evaluation crop only."""
    from .probe.activations import collect
    from .probe.images import check_readable, discover

    inputs = Inputs(model, weights, Path(data), Path(labels) if labels else None)
    _check_inputs(inputs)
    _check_loader(batch_size, device, num_workers)
    overrides.check()
    images = discover(inputs.data, inputs.labels)
    if not images.imagenet:
        raise SeprobeError(f"{data}: labels are not ImageNet classes; valid: wnid-named files or folders, or --labels")
    check_readable(images)
    loaded = _load(inputs, overrides, {})
    run = collect(loaded, images, batch_size=batch_size, device=device, num_workers=num_workers, with_gates=False,
                  progress=progress)
    if not run.evaluated:
        raise SeprobeError(f"{data}: no image could be scored ({len(run.failed)} unreadable, model output "
                           f"{'not' if run.top1 is None else ''} 1000 classes); valid: readable ImageNet images")
    return Evaluation(loaded.name, run.top1, run.top5, run.evaluated, sorted(set(run.failed)))


def _check_loader(batch_size: int, device: str, num_workers: int) -> None:
    check_positive("--batch-size", batch_size)
    check_positive("--num-workers", num_workers, 0)
    check_device(device)


@dataclass
class Activations:
    """What ``seprobe activations`` computed: the run (gate statistics, accuracy), the classes and blocks shown,
    the per-block scores, and the files written (``out=``)."""

    run: ActivationRun
    classes: list[int]
    blocks: list[str]
    specificity: pd.DataFrame
    written: list[Path] = field(default_factory=list)

    def text(self) -> str:
        lines = []
        if self.run.top1 is not None:
            lines.append(f"{self.run.loaded.name}: top-1 {self.run.top1:.3f}, top-5 {self.run.top5:.3f} on "
                         f"{self.run.evaluated} images")
        lines.append(self.specificity.to_string(index=False, float_format="{:.3f}".format))
        lines += [f"Note: {note}." for note in self.run.notes]
        return "\n".join(lines) + "\n"


def activations(model: str, weights: str, data: str | os.PathLike, *, labels: str | os.PathLike | None = None,
                classes: str = "goldfish,pug,airliner,cliff", stage: Sequence[int] | None = None,
                blocks: str | None = None, samples_per_class: int | None = None, views: int = 1,
                channels: int = 50, batch_size: int = 32, device: str = "cpu", num_workers: int = 0,
                all_classes_table: bool = False, out: str | os.PathLike | None = None,
                overrides: Overrides = Overrides(), progress: bool = True, **knobs: Any) -> Activations:
    """Class-specific excitation statistics of a trained SE network (the paper's Sec. 7.2, Figs. 6 and 7).

    ``stage`` / ``blocks`` choose the blocks shown (figures and table); ``out`` writes the figures and tables
    there, all together; ``knobs`` are model-zoo knobs of seprobe models and must match the checkpoint."""
    from .distributed import current_world
    from .probe.activation_report import specificity_table, write_outputs
    from .probe.activations import choose_blocks, choose_classes, collect
    from .probe.gates import find_gates
    from .probe.images import check_readable, discover, select

    inputs = Inputs(model, weights, Path(data), Path(labels) if labels else None)
    _check_inputs(inputs)
    _check_loader(batch_size, device, num_workers)
    overrides.check()
    for what, value in (("--samples-per-class", samples_per_class), ("--views", views), ("--channels", channels)):
        check_positive(what, value)
    if out is not None:
        check_output_dir(out)
    knobs = {k: v for k, v in knobs.items() if v is not None}
    images = select(discover(inputs.data, inputs.labels), samples_per_class)
    chosen = choose_classes(images, classes)
    check_readable(images)
    loaded = _load(inputs, overrides, knobs)
    if loaded.random:
        warnings.warn("--weights random: the gate values of an untrained network mean nothing", stacklevel=2)
    shown = choose_blocks(find_gates(loaded.model, input_size=loaded.preprocessing.crop), stage, blocks)
    run = collect(loaded, images, views=views, batch_size=batch_size, device=device, num_workers=num_workers,
                  progress=progress)
    spec = specificity_table(run, chosen)  # every block in the files; the blocks shown on the screen
    result = Activations(run, chosen, shown, spec[spec["block"].isin(shown)].reset_index(drop=True))
    if out is not None and current_world().is_main:  # under torchrun, rank 0 alone writes
        with output_set():
            result.written = write_outputs(run, Path(out), chosen, shown, channels, spec, all_classes_table)
    return result


# --- studies ------------------------------------------------------------------------------------------------------


@dataclass
class StudiesRun:
    """The studies run, those skipped (with why), the reports written and the warnings raised."""

    ran: list[str]
    skipped: dict[str, str]
    written: list[Path]
    warnings: list[str]


def run_studies(paths: Sequence[str | os.PathLike], out: str | os.PathLike | None = None, *,
                skip_kinds: Sequence[str] = (), progress: Callable[[str], None] = lambda msg: None) -> StudiesRun:
    """Run studies (``studies/*.toml``) into reports: every study is validated before any runs, and the reports
    are written together only once every study has run (``out`` defaults to ``reports/`` beside ``studies/``)."""
    from .studies.reports import write_index, write_report
    from .studies.runs import run_study
    from .studies.spec import check_unique_names, load_study

    if not paths:
        raise SeprobeError("no study given; valid: study files such as studies/stages.toml")
    for p in paths:
        if Path(p).is_dir():
            raise SeprobeError(f"study {str(p)!r} is a folder; valid: a .toml study file (or `seprobe reports "
                               f"--studies {p}`)")
    studies = [load_study(Path(p)) for p in paths]
    check_unique_names(studies)
    out_dirs = {s.name: Path(out) if out is not None else s.path.resolve().parent.parent / "reports" for s in studies}
    for d in set(out_dirs.values()):
        check_output_dir(d)
    skipped, kept = {}, []
    for s in studies:
        if s.kind in skip_kinds:
            skipped[s.name] = f"add --with-{s.kind}"
        elif s.missing_inputs():
            skipped[s.name] = f"{', '.join(s.missing_inputs())} not found here"
        else:
            kept.append(s)
    for name, why in skipped.items():
        progress(f"skipping {name} ({why})")
    results = []
    for s in kept:
        progress(f"running {s.name}" + (f" ({len(s.variants)} variants)" if s.variants else ""))
        results.append(run_study(s, progress=lambda msg: progress(f"  {msg}")))
    written, warns = [], []
    with output_set():
        for r in results:
            written += write_report(r, out_dirs[r.study.name])
            warns += [f"{r.study.name}: {n}" for n in r.notes if "UNEXPLAINED" in n]
        for d in dict.fromkeys(out_dirs[r.study.name] for r in results):
            written.append(write_index(d))
    return StudiesRun([r.study.name for r in results], skipped, written, warns)



# --- ablation -----------------------------------------------------------------------------------------------------


@dataclass
class Ablations:
    """What ``seprobe ablate`` computed: the result (:class:`~seprobe.probe.ablation.AblationResult`, whose
    ``table`` has one row per evaluation), and the files written (``out=``, ``export=``)."""

    result: Any
    written: list[Path] = field(default_factory=list)

    def text(self) -> str:
        from .probe.ablation_report import display_table

        lines = [display_table(self.result).to_string(index=False)]
        lines += [f"Note: {n}." for n in self.result.notes]
        return "\n".join(lines) + "\n"


def ablate(model: str, weights: str, data: str | os.PathLike, *, labels: str | os.PathLike | None = None,
           samples_per_class: int | None = None, mode: str = "both", blocks: str | None = None,
           stage: int | None = None, per_stage: bool = False, each_block: bool | None = None,
           cumulative: str | None = None, calibration: int | None = None,
           calibration_data: str | os.PathLike | None = None, calibration_labels: str | os.PathLike | None = None,
           calibration_views: int = 1, allow_overlap: bool = False, bootstrap: int = 2000, seed: int = 0,
           export: str | os.PathLike | None = None, export_mode: str | None = None, batch_size: int = 32,
           device: str = "cpu", num_workers: int = 0, out: str | os.PathLike | None = None,
           overrides: Overrides = Overrides(), progress: bool = True, **knobs: Any) -> Ablations:
    """What each SE block is worth in a trained network (``seprobe ablate``): the network evaluated with blocks
    replaced by ``identity`` (gate = 1) or their calibration ``mean`` (a constant per-channel scale), every block
    alone by default, a set (``blocks`` / ``stage``), ``per_stage`` or ``cumulative``; ``export`` writes the
    network with one set ablated, mean blocks folded into the adjacent layer."""
    from .distributed import current_world
    from .io import check_output_file
    from .probe.ablation import ablate as run_ablation
    from .probe.ablation import check_modes, export_blocks
    from .probe.ablation_report import write_outputs
    from .probe.images import check_readable, discover, select

    inputs = Inputs(model, weights, Path(data), Path(labels) if labels else None)
    _check_inputs(inputs)
    _check_loader(batch_size, device, num_workers)
    overrides.check()
    modes = ("identity", "mean") if mode == "both" else check_modes(mode)
    for what, value in (("--samples-per-class", samples_per_class), ("--calibration-views", calibration_views),
                        ("--bootstrap", bootstrap)):
        check_positive(what, value)
    check_positive("--calibration", calibration)
    if calibration is not None and calibration_data is not None:
        raise SeprobeError("--calibration N and --calibration-data DIR both given; valid: one of them")
    if calibration_data is not None:
        _check_data(calibration_data, calibration_labels, "--calibration-data", "--calibration-labels")
    if export is not None:
        check_output_file(export, "--export")
        if blocks is None and stage is None:
            raise SeprobeError("--export needs one set of blocks; valid: --blocks SE_a,SE_b or --stage N")
        if export_mode is None and len(modes) > 1:
            raise SeprobeError("--export with --mode both needs --export-mode; valid: identity or mean")
    if out is not None:
        check_output_dir(out)
    single = each_block if each_block is not None else (
        (blocks is None and stage is None and not per_stage) or cumulative in ("kl", "top1"))
    images = select(discover(inputs.data, inputs.labels), samples_per_class)
    cal = discover(Path(calibration_data), calibration_labels) if calibration_data is not None else None
    for part in (images, cal):
        if part is not None:
            check_readable(part)
    loaded = _load(inputs, overrides, {k: v for k, v in knobs.items() if v is not None})
    result = run_ablation(loaded, images, modes=modes, single=single, blocks=blocks, stage=stage,
                          per_stage=per_stage, cumulative=cumulative.split(",") if cumulative and "," in cumulative
                          else cumulative, calibration=cal, calibration_per_class=calibration,
                          calibration_views=calibration_views, disjoint=not allow_overlap, batch_size=batch_size,
                          device=device, num_workers=num_workers, progress=progress, n_boot=bootstrap, seed=seed)
    done = Ablations(result)
    if current_world().is_main and (out is not None or export is not None):
        with output_set():
            if out is not None:
                done.written += write_outputs(result, out)
            if export is not None:
                export_blocks(result, blocks, stage, export_mode or modes[0], export, knobs=knobs)
                done.written.append(Path(export))
    return done
