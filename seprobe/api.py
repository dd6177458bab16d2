"""The Python face of every command: ``seprobe.complexity``, ``seprobe.evaluate``, ``seprobe.activations``
and ``seprobe.ablate`` return the data that ``seprobe complexity`` ... print (the studies' functions are in
:mod:`seprobe.studies.regenerate`). The command line only parses options, builds the option objects, calls these,
and prints what they return.

Arguments are Python values (lists of block and class names, option dataclasses such as
:class:`~seprobe.probe.evaluation.Loader` and :class:`~seprobe.probe.ablation_plan.AblationPlan`), each checked
where it is built, before a model is built, an image read or a file written; errors name the argument.
Outputs (``out=``) are written as one set (:func:`seprobe.io.output_set`): all of them, or none.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .defaults import BATCH_SIZE, BOOTSTRAP, NUM_WORKERS
from .errors import SeprobeError, check_bool, check_int
from .io import check_output_dir, check_output_file, output_set, replaces

if TYPE_CHECKING:
    import pandas as pd

    from .cost.complexity import Complexity
    from .cost.flops import FlopConvention
    from .cost.timing import TimingResult, TimingSetup
    from .data.overrides import Overrides
    from .models.factory import ModelSource, Network
    from .probe.ablation import AblationResult
    from .probe.ablation_plan import AblationPlan
    from .probe.activations import ActivationRun
    from .probe.calibration import CalibrationSource
    from .probe.evaluation import Loader
    from .pruning.plan import PrunePlan
    from .pruning.run import PruneResult
    from .training import Recipe, TrainResult

# --- complexity -----------------------------------------------------------------------------------------------------


@dataclass
class ComplexityReport:
    """What ``seprobe complexity`` prints: one :class:`~seprobe.cost.complexity.Complexity` per model, the timing
    (``time=``) and the knobs that did not apply to some models (knob -> those models)."""

    results: list[Complexity]
    per_block: bool = False
    timing: TimingResult | None = None
    ignored: dict[str, list[str]] = field(default_factory=dict)

    def tables(self, with_operations: bool = True) -> dict[str, pd.DataFrame]:
        """The result tables by name: ``summary``, per block and per stage (``per_block``), ``operations``,
        ``timing`` and ``timing_ratios``."""
        from .report.complexity import tables

        return tables(self.results, self.per_block, self.timing, with_operations)

    def text(self) -> str:
        """The one-screen terminal view."""
        from .report.complexity import text

        return text(self.results, self.per_block, self.timing)


def complexity(models: str | ModelSource | Sequence[str | ModelSource], *, input_size: int | None = None,
               weights: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
               convention: FlopConvention | None = None,
               per_block: bool = False, time: TimingSetup | None = None,
               progress: Callable[[str], None] = lambda msg: None, **knobs: Any) -> ComplexityReport:
    """Multiply-adds and parameters of each model against the same network without SE (``seprobe complexity``).

    ``models``: seprobe names, ``timm:NAME`` or ``torchvision:NAME``, or :class:`~seprobe.models.factory.ModelSource` s
    (a network with its weights: an exported ablated or pruned one is counted as exported, against its own graph
    without SE; ``knobs`` do not reach them); ``weights``: a checkpoint for each model name (the same effect);
    ``knobs``: model-zoo knobs (SE knobs reach
    the seprobe SE models only; :attr:`ComplexityReport.ignored` says where they did not); ``convention``: what
    the total counts (:class:`~seprobe.cost.flops.FlopConvention`); ``time``: a
    :class:`~seprobe.cost.timing.TimingSetup` to also time inference and a training step.
    """
    from .cost.complexity import measure
    from .cost.settings import MAX_INPUT_SIZE, FlopConvention, TimingSetup
    from .models.factory import ModelSource

    check_bool("per_block", per_block)
    _check_arguments(convention=(convention, FlopConvention), time=(time, TimingSetup))
    if not callable(progress):
        raise SeprobeError(f"invalid progress {progress!r}; valid: a function of one message", argument="progress")
    if not isinstance(models, (str, ModelSource, list, tuple)):
        raise SeprobeError(f"invalid models {models!r} ({type(models).__name__}); valid: a model name, a "
                           "ModelSource, or a list of them", argument="models")
    models = [models] if isinstance(models, (str, ModelSource)) else list(models)
    if not models:
        raise SeprobeError("no model given; valid: one or more model names (see `seprobe models`)", argument="models")
    knobs = {k: v for k, v in knobs.items() if v is not None}
    if knobs and any(isinstance(m, ModelSource) for m in models):
        raise SeprobeError(f"knobs ({', '.join(knobs)}) given with a ModelSource, which has its own; valid: the "
                           "knobs in the ModelSource, or model names", argument=next(iter(knobs)))
    sources = [m if isinstance(m, ModelSource) else ModelSource.applicable(m, knobs) for m in models]
    if weights is not None:
        if not isinstance(weights, (str, os.PathLike, list, tuple)):
            raise SeprobeError(f"invalid weights {weights!r} ({type(weights).__name__}); valid: a checkpoint path, "
                               "'pretrained' or 'random', or a list of them (one per model)", argument="weights")
        given = [weights] if isinstance(weights, (str, os.PathLike)) else list(weights)
        if len(given) != len(models) or any(isinstance(m, ModelSource) for m in models):
            raise SeprobeError(f"{len(given)} weights for {len(models)} models; valid: one checkpoint per model name "
                               "(a ModelSource has its own)", argument="weights")
        sources = [ModelSource(s.name, w, s.knobs) for s, w in zip(sources, given, strict=True)]
    check_int("input_size", input_size, 1, MAX_INPUT_SIZE)
    ignored = {k: [s.name for s in sources if k not in s.knobs] for k in knobs}
    models = [s.name for s in sources]
    unused = [k for k, names in ignored.items() if len(names) == len(models)]
    if unused:
        raise SeprobeError(f"{', '.join(unused)} applies to none of {', '.join(models)}; valid: SE knobs with an "
                           "seprobe SE model (se_*), architecture knobs with a model that has them",
                           argument=unused[0])
    if time is not None:
        time = replace(time, input_size=input_size or time.input_size)
        _check_timing_memory(time)
    results = [measure(s, input_size=input_size, convention=convention) for s in sources]
    report = ComplexityReport(results, per_block=per_block, ignored={k: v for k, v in ignored.items() if v})
    if time is not None:
        report.timing = _time(sources, replace(time, input_size=input_size or results[0].input_size), progress)
    return report


def _check_timing_memory(setup: TimingSetup) -> None:
    """Refuse a batch whose input tensor alone would not fit in this machine's memory (a typo, surely)."""
    need = setup.batch_size * 3 * setup.input_size ** 2 * 4
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > total / 4:
        raise SeprobeError(f"invalid batch_size {setup.batch_size} at {setup.input_size}x{setup.input_size}: the "
                           f"input alone needs {need / 2**30:.1f} GiB of this machine's {total / 2**30:.0f} GiB; "
                           "valid: a smaller batch_size or input_size", argument="batch_size")


def _time(sources, setup: TimingSetup, progress) -> TimingResult:
    from .cost.timing import plain_pairs, time_models

    models, pairs = plain_pairs({s.name: s for s in sources})
    return time_models(models, pairs, setup, progress=progress)


# --- trained models over labelled images -------------------------------------------------------------------------


def _check_arguments(progress: Any = True, **options: tuple[Any, type]) -> None:
    """Arguments the library would misread or fail on deep inside, refused before any work: ``progress`` a bool,
    and each option object (``loader=(value, Loader)``) an instance of its class or None (a dict is not a
    :class:`~seprobe.probe.loader.Loader`)."""
    check_bool("progress", progress)
    for argument, (value, cls) in options.items():
        if value is not None and not isinstance(value, cls):
            article = "an" if cls.__name__[0] in "AEIOU" else "a"
            raise SeprobeError(f"invalid {argument} {value!r} ({type(value).__name__}); valid: {article} "
                               f"{cls.__name__} or None", argument=argument)


def _network(source: ModelSource, overrides: Overrides | None) -> Network:
    from .models.factory import get_network

    net = get_network(source)
    if overrides is not None:
        net.preprocessing = overrides.apply(net.preprocessing)
    return net


def _sources(model, weights, data, labels, samples_per_class, knobs):
    """The model and image sources, checked (before any model is built or image decoded)."""
    from .data.images import ImageSource
    from .models.factory import ModelSource

    source = ModelSource(model, weights, knobs)
    return source, ImageSource(data, labels, samples_per_class)


@dataclass
class Evaluation:
    """Top-1 / top-5 of a classifier on labelled images (``seprobe evaluate``)."""

    model: str
    top1: float
    top5: float
    images: int
    unreadable: list[str]

    def tables(self) -> dict[str, pd.DataFrame]:
        import pandas as pd

        return {"evaluation": pd.DataFrame([{"model": self.model, "top1": self.top1, "top5": self.top5,
                                             "images": self.images, "unreadable": len(self.unreadable)}])}

    def text(self) -> str:
        skipped = f", {len(self.unreadable)} unreadable images skipped" if self.unreadable else ""
        return f"{self.model}: top-1 {self.top1:.3f}, top-5 {self.top5:.3f} on {self.images} images{skipped}"


def evaluate(model: str, weights: str | os.PathLike, data: str | os.PathLike, *,
             labels: str | os.PathLike | None = None, loader: Loader | None = None,
             overrides: Overrides | None = None, progress: bool = True, **knobs: Any) -> Evaluation:
    """Top-1 / top-5 accuracy of a classifier on labelled images, evaluation crop only: ImageNet classifiers on
    ImageNet labels, or a network with one output per class of the data (``knobs``: those of an seprobe model,
    ``num_classes`` among them)."""
    from .data.images import check_readable
    from .data.overrides import Overrides
    from .probe.activations import collect
    from .probe.evaluation import Loader

    _check_arguments(progress, loader=(loader, Loader), overrides=(overrides, Overrides))
    source, image_source = _sources(model, weights, data, labels, None, knobs)
    loader = loader or Loader(BATCH_SIZE["evaluate"])
    images = image_source.read()
    check_readable(images)
    net = _network(source, overrides)
    run = collect(net, images, loader, with_gates=False, progress=progress)
    if not run.evaluated:
        raise SeprobeError(f"{data}: no image could be scored (the model's {_outputs(net)} outputs are not the "
                           f"data's labels); valid: ImageNet images for a 1000-way classifier, or a model with "
                           "one output per class", argument="data")
    return Evaluation(net.name, run.top1, run.top5, run.evaluated, sorted(set(run.failed)))


def _outputs(net: Network) -> str:
    from .models.heads import num_outputs

    try:
        return str(num_outputs(net.model))
    except SeprobeError:
        return "?"


@dataclass
class Activations:
    """What ``seprobe activations`` computed: the run (gate statistics, accuracy), the classes and blocks shown,
    the per-block scores, and the files written (``out=``)."""

    run: ActivationRun
    classes: list[int]
    blocks: list[str]
    scores: pd.DataFrame  # every block's (:func:`~seprobe.probe.activations.specificity_table`)
    written: list[Path] = field(default_factory=list)

    @property
    def specificity(self) -> pd.DataFrame:
        """The scores of the blocks shown."""
        return self.scores[self.scores["block"].isin(self.blocks)].reset_index(drop=True)

    @property
    def spatial(self) -> pd.DataFrame | None:
        """CBAM's spatial maps per block and class (the classes compared, and all), as ``spatial.csv``;
        ``None`` for a network without a spatial gate."""
        from .report.activations import spatial_table

        return spatial_table(self.run, self.classes)

    def text(self) -> str:
        from .report.activations import text

        return text(self.run, self.specificity)


def activations(model: str, weights: str | os.PathLike, data: str | os.PathLike, *,
                labels: str | os.PathLike | None = None, samples_per_class: int | None = None,
                classes: Sequence[str | int] | None = None, stage: Sequence[int] | None = None,
                blocks: Sequence[str] | None = None, views: int | None = None, channels: int | None = None,
                loader: Loader | None = None, all_classes_table: bool = False, out: str | os.PathLike | None = None,
                overrides: Overrides | None = None, progress: bool = True, **knobs: Any) -> Activations:
    """Class-specific excitation statistics of a trained SE network (the paper's Sec. 7.2, Figs. 6 and 7).

    ``classes``, ``stage`` / ``blocks`` (the blocks shown: figures and table), ``views`` and ``channels`` are the
    fields of :class:`~seprobe.probe.reading.GateReading` (``None``: its default); ``out`` writes the figures and
    tables there, all together; ``knobs`` are model-zoo knobs of seprobe models and must match the checkpoint.
    A network with CBAM's spatial gate also has its maps read, every position of every image
    (``run.spatial``; ``spatial.csv``: per block and class, mean, std, min and max of ``M_s``)."""
    import warnings

    from .data.images import check_readable
    from .data.overrides import Overrides
    from .distributed import current_world
    from .probe.activations import choose_blocks, choose_classes, collect, specificity_table
    from .probe.evaluation import Loader
    from .probe.reading import GateReading
    from .report.activations import write_outputs

    _check_arguments(progress, loader=(loader, Loader), overrides=(overrides, Overrides))
    check_bool("all_classes_table", all_classes_table)
    given = {"classes": classes, "stage": stage, "blocks": blocks, "views": views, "channels": channels}
    reading = GateReading(**{k: v for k, v in given.items() if v is not None})
    source, image_source = _sources(model, weights, data, labels, samples_per_class, knobs)
    loader = loader or Loader(BATCH_SIZE["activations"])
    if out is not None:
        check_output_dir(out, "out")
    images = image_source.read()
    chosen = choose_classes(images, reading.classes)
    check_readable(images)
    net = _network(source, overrides)
    if net.random:
        warnings.warn("weights 'random': the gate values of an untrained network mean nothing", stacklevel=2)
    shown = choose_blocks(net.blocks, reading.stage, reading.blocks)
    run = collect(net, images, loader, views=reading.views, progress=progress)
    scores = specificity_table(run, chosen)  # every block in the files; the blocks shown on the screen
    result = Activations(run, chosen, shown, scores)
    if out is not None and current_world().is_main:  # under torchrun, rank 0 alone writes
        with output_set():
            result.written = write_outputs(run, Path(out), chosen, shown, reading.channels, scores,
                                           all_classes_table)
    return result


@dataclass
class Ablations:
    """What ``seprobe ablate`` computed: the result (:class:`~seprobe.probe.ablation.AblationResult`, whose
    ``table`` has one row per evaluation), and the files written (``out=``, ``export=``)."""

    result: AblationResult
    written: list[Path] = field(default_factory=list)

    def text(self) -> str:
        from .report.ablation import text

        return text(self.result)


def ablate(model: str, weights: str | os.PathLike, data: str | os.PathLike, *,
           labels: str | os.PathLike | None = None, samples_per_class: int | None = None,
           plan: AblationPlan | None = None, calibration: CalibrationSource | None = None,
           loader: Loader | None = None, bootstrap: int = BOOTSTRAP, seed: int = 0,
           export: str | os.PathLike | None = None, export_mode: str | None = None,
           out: str | os.PathLike | None = None, overrides: Overrides | None = None, progress: bool = True,
           **knobs: Any) -> Ablations:
    """What each SE block is worth in a trained network (``seprobe ablate``): the network evaluated with blocks
    replaced by ``identity`` (gate = 1), their calibration ``mean`` (a constant per-channel scale) or ``constant``
    (gate = 1/2), as ``plan`` says (by default every block alone, identity and mean with ``calibration``, else
    ``identity``; CBAM's spatial gates are named ``<block>.spatial``, and ``plan.gates`` puts them in the sweeps);
    ``export`` writes the network with the plan's one set (``blocks`` or ``stage``) ablated, mean and constant
    blocks folded into the adjacent layer, a spatial gate removed (identity) or kept as a one-parameter scale."""
    from .data.images import check_readable
    from .data.overrides import Overrides
    from .distributed import current_world
    from .probe.ablation import ablate as run_ablation
    from .probe.ablation import export_blocks
    from .probe.ablation_plan import AblationPlan, CalibrationSource, Resampling
    from .probe.evaluation import Loader
    from .report.ablation import write_outputs

    _check_arguments(progress, plan=(plan, AblationPlan), calibration=(calibration, CalibrationSource),
                     loader=(loader, Loader), overrides=(overrides, Overrides))
    source, image_source = _sources(model, weights, data, labels, samples_per_class, knobs)
    plan = plan or AblationPlan()
    loader = loader or Loader(BATCH_SIZE["ablate"])
    Resampling(bootstrap, seed)
    modes = plan.resolve_modes(calibration is not None)
    if export is not None:
        check_output_file(export, "export")
        if source.kind == "file" and replaces(export, source.weights):
            raise SeprobeError(f"export {str(export)!r} is the weights being ablated ({source.weights}), which the "
                               "export would replace; valid: another file", argument="export")
        if plan.blocks is None and plan.stage is None:
            raise SeprobeError("export needs one set to export; valid: blocks or stage in the plan",
                               argument=("export", "blocks", "stage"))
        if export_mode is None and len(modes) > 1:
            raise SeprobeError(f"export with modes {', '.join(modes)} needs export_mode; valid: one of them",
                               argument="export_mode")
        if export_mode is not None and export_mode not in modes:
            raise SeprobeError(f"invalid export_mode {export_mode!r}; valid: a mode the plan runs: "
                               f"{', '.join(modes)}", argument="export_mode")
    if out is not None:
        check_output_dir(out, "out")
    images = image_source.read()
    cal_images = calibration.images.read() if calibration is not None and calibration.images is not None else None
    for part in (images, cal_images):
        if part is not None:
            check_readable(part)
    net = _network(source, overrides)
    result = run_ablation(net, images, plan, loader, calibration=calibration, calibration_images=cal_images,
                          bootstrap=bootstrap, seed=seed, progress=progress)
    done = Ablations(result)
    if current_world().is_main and (out is not None or export is not None):
        with output_set():
            if out is not None:
                done.written += write_outputs(result, out)
            if export is not None:
                export_blocks(result, plan.chosen_set(result.blocks), export_mode or modes[0], export)
                done.written.append(Path(export))
    return done


# --- pruning ------------------------------------------------------------------------------------------------------


@dataclass
class Pruning:
    """What ``seprobe prune`` computed (:class:`~seprobe.pruning.run.PruneResult`) and the files it wrote."""

    result: PruneResult
    written: list[Path] = field(default_factory=list)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"summary": self.result.summary_table(), "channels": self.result.channels_table()}

    def text(self) -> str:
        return self.result.text()


def prune(model: str, weights: str | os.PathLike, data: str | os.PathLike, *, plan: PrunePlan,
          labels: str | os.PathLike | None = None, samples_per_class: int | None = None,
          calibration: CalibrationSource | None = None, loader: Loader | None = None,
          out: str | os.PathLike | None = None, overrides: Overrides | None = None, progress: bool = True,
          evaluate: bool = True, **knobs: Any) -> Pruning:
    """Prune a trained network's channels (``seprobe prune``): score them by ``plan.criterion`` (the SE gates'
    ``gate`` / ``gate_max`` on the ``calibration`` images, or ``l1``, ``bn``, ``taylor``, ``random``), keep
    ``plan``'s target (a fraction of the multiply-adds, parameters or channels) by global or uniform allocation,
    cut the network exactly (:mod:`seprobe.models.pruning`), and evaluate it before and after on the images of
    ``data`` the calibration did not take. ``out`` receives ``network.pth`` (loadable as ``weights`` by every
    command, trainable and prunable again) and the tables, all together. ``evaluate=False`` skips the two
    accuracy passes (the tables then hold no accuracy)."""
    from .data.images import check_readable
    from .data.overrides import Overrides
    from .distributed import current_world
    from .models.ablated import export_header
    from .probe.ablation_plan import CalibrationSource
    from .probe.calibration import split
    from .probe.evaluation import Loader
    from .pruning.plan import PrunePlan
    from .pruning.run import prune as run_prune
    from .report.pruning import NETWORK, write_outputs

    check_bool("evaluate", evaluate)
    _check_arguments(progress, calibration=(calibration, CalibrationSource), loader=(loader, Loader),
                     overrides=(overrides, Overrides))
    if not isinstance(plan, PrunePlan):
        raise SeprobeError(f"invalid plan {plan!r}; valid: a PrunePlan, e.g. PrunePlan(criterion='gate', "
                           "keep_macs=0.5)", argument="plan")
    source, image_source = _sources(model, weights, data, labels, samples_per_class, knobs)
    loader = loader or Loader(BATCH_SIZE["prune"])
    if out is not None:
        check_output_dir(out, "out")
        if source.kind == "file" and replaces(Path(out) / NETWORK, source.weights):
            raise SeprobeError(f"out {str(out)!r} holds the weights being pruned ({source.weights}), which the "
                               f"pruned {NETWORK} would replace; valid: another folder", argument="out")
    header = export_header(source.weights) if source.kind == "file" and _is_export(source.weights) else None
    if header is not None and (header["removed"] or header["scaled"]):
        raise SeprobeError(f"{weights} is a network with SE blocks ablated ({', '.join(header['blocks'])}); "
                           "valid: prune the network first, then ablate the pruned one", argument="weights")
    images = image_source.read()
    cal_images = calibration.images.read() if calibration is not None and calibration.images is not None else None
    for part in (images, cal_images):
        if part is not None:
            check_readable(part)
    if calibration is not None:
        cal_images, images, _ = split(calibration, images, cal_images)
    net = _network(source, overrides)
    views = calibration.calibration_views if calibration is not None else 1
    result = run_prune(net, images, plan, loader, calibration=cal_images, views=views, progress=progress,
                       evaluate=evaluate)
    done = Pruning(result)
    if out is not None and current_world().is_main:
        done.written = write_outputs(result, out, header.get("num_classes") if header else None)
    return done


def _is_export(path: str | os.PathLike) -> bool:
    from .models.ablated import is_ablated_file

    return is_ablated_file(path)


# --- training -----------------------------------------------------------------------------------------------------


@dataclass
class HoldoutSplit:
    """The two label files of one folder's split (:func:`split_holdout`), and how many images each lists."""

    train_labels: Path
    heldout_labels: Path
    train_images: int
    heldout_images: int

    @property
    def written(self) -> list[Path]:
        return [self.train_labels, self.heldout_labels]


def split_holdout(data: str | os.PathLike, out: str | os.PathLike, *, holdout_per_class: int,
                  labels: str | os.PathLike | None = None) -> HoldoutSplit:
    """Split the labelled ImageNet images of ``data`` (read with its ``labels`` file, if any) into two label
    files of that folder, written together into ``out``: ``heldout.txt``, the last ``holdout_per_class`` images
    of each class in the images' order, and ``train.txt``, the others. Each serves as ``labels`` (evaluate,
    ablate's calibration) or ``train_labels`` / ``val_labels`` (train) with ``data``, so that every command sees
    the same two parts."""
    from .data.images import ImageSource, hold_out, label_lines
    from .io import atomic_write_text

    source = ImageSource(data, labels)
    check_int("holdout_per_class", holdout_per_class)
    check_output_dir(out, "out")
    kept, held = hold_out(source.read(), holdout_per_class)
    out = Path(out)
    with output_set():
        train_file = atomic_write_text(out / "train.txt", label_lines(kept, source.folder))
        heldout_file = atomic_write_text(out / "heldout.txt", label_lines(held, source.folder))
    return HoldoutSplit(train_file, heldout_file, len(kept.paths), len(held.paths))


@dataclass
class Training:
    """What ``seprobe train`` did: the run (:class:`~seprobe.training.TrainResult`: history, paths, final and
    best epoch), the head it gave the network (``None``: kept) and the files written."""

    run: TrainResult
    model: str
    head: str | None = None

    @property
    def written(self) -> list[Path]:
        return [p for p in self.run.paths.values() if p.exists()]

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"history": self.run.history}

    def text(self) -> str:
        from .training.report import result_text

        return result_text(self.run, self.model)


def train(model: str | None = None, data: str | os.PathLike | None = None, out: str | os.PathLike | None = None, *,
          weights: str | os.PathLike | None = None, val_data: str | os.PathLike | None = None,
          train_labels: str | os.PathLike | None = None, val_labels: str | os.PathLike | None = None,
          samples_per_class: int | None = None, val_samples_per_class: int | None = None,
          recipe: Recipe | Mapping[str, Any] | None = None, resume: bool = False,
          num_workers: int = NUM_WORKERS["train"], upscale: bool | None = None,
          tags: Mapping[str, Any] | None = None, progress: bool = True, **knobs: Any) -> Training:
    """Train ``model`` (any network seprobe builds, from ``weights``: ``random`` by default, ``pretrained`` or a
    checkpoint, an exported ablated network or a ``checkpoint.pth`` of an earlier run included) on ``data`` into
    ``out`` (``seprobe train``).

    ``data``: a folder with ``train/`` and ``test/`` (or ``val/``), torchvision's CIFAR files, or, with
    ``val_data``, the training folder (label files ``train_labels`` / ``val_labels``). ``recipe``: a
    :class:`~seprobe.training.Recipe`, or a mapping of the fields to change in the published one for the data's
    image size (:func:`~seprobe.training.default_recipe`; ``None``: the published one). ``upscale``: small
    images (Tiny ImageNet) are brought to the network's input size as ``evaluate`` does, and the recipe is the
    one for large images (:class:`~seprobe.training.TrainData`). A network whose head
    does not fit the data's classes gets a new one (ImageNet classes keep a 1000-way head). ``resume``: continue
    the run in ``out`` from its record, which holds the model, knobs, weights, data folders and label files (as
    absolute paths), images per class, upscale, recipe and ``tags`` (plain values that decided the run beyond its
    options, such as a digest of its data) it was started with: ``seprobe.train(out=DIR, resume=True)`` alone
    continues it, and an option given beside it must be the record's (knobs and recipe fields given are laid over
    the record's), or the first difference is refused. Under torchrun the ranks share the global batch; rank 0
    writes."""
    from .devices import check_device
    from .distributed import current_world
    from .models.ablated import export_header, retrained
    from .models.factory import ModelSource
    from .training import Recipe, TrainData, check_start, list_data
    from .training import train as run_training

    world = current_world()
    check_device(world.device)
    check_bool("resume", resume)
    check_bool("progress", progress)
    if upscale is not None:
        check_bool("upscale", upscale)
    if out is None:
        raise SeprobeError("out is not given; valid: the folder of the run (a new or empty one, or with resume=True "
                           "the run to continue)", argument="out")
    if tags is not None and not isinstance(tags, Mapping):
        raise SeprobeError(f"invalid tags {tags!r}; valid: a mapping of plain values", argument="tags")
    given = _TrainOptions(model, weights, weights, dict(knobs), data, val_data, train_labels, val_labels,
                          samples_per_class, val_samples_per_class, upscale, _recipe_changes(recipe), tags)
    options = _resumed(given, Path(out), world) if resume else _started(given)
    source = ModelSource(options.model, options.start, options.knobs)
    recipe = options.recipe
    seed = recipe.seed if isinstance(recipe, Recipe) else recipe.get("seed", 0)
    # every recipe value and the output folder checked before any network is built or image read (the images'
    # side sets the recipe's defaults, and the rules between its fields are checked when it is built from the
    # listing); the loop checks the recipe's batch and compares the run's record with a checkpoint before it
    # decodes the images
    sync_bn = recipe.sync_bn if isinstance(recipe, Recipe) else recipe.get("sync_bn", False)
    check_start(out, resume, world, sync_bn, options.tags)
    net = _seeded_network(source, seed)
    train_data = TrainData(options.data, val=options.val_data, train_labels=options.train_labels,
                           val_labels=options.val_labels, samples_per_class=options.samples_per_class,
                           val_samples_per_class=options.val_samples_per_class, preprocessing=net.preprocessing,
                           num_workers=num_workers, normalise="model", upscale=options.upscale)
    listing = list_data(train_data)  # sizes the head; the loop decodes it after its checks
    net, head = _fit_head(net, source, listing.num_classes, seed)
    meta = {"model": source.name, "knobs": {k: list(v) if isinstance(v, tuple) else v for k, v in source.knobs.items()},
            "weights": str(options.weights), "head": head, **({"tags": dict(options.tags)} if options.tags else {})}
    final = None
    if net.ablated is not None:  # saved as the export, and its checkpoint.pth loads as one too
        meta["export"] = export_header(source.weights, listing.num_classes if head else None)
        final = retrained(meta["export"])
    start = os.path.abspath(source.weights) if source.kind == "file" else source.weights
    result = run_training(net.model, listing, _recipe(recipe, listing.side), out, resume=resume,
                          progress=progress, meta=meta, final=final, info={"weights": start})
    return Training(result, source.name, head)


@dataclass(frozen=True)
class _TrainOptions:
    """The options of :func:`train` that make a run: as given (``None``: not given), then completed for a new
    run (:func:`_started`) or from a resumed run's record (:func:`_resumed`). ``weights`` is what the run's
    record says, ``start`` the file (or source) the network is loaded from: the same, unless a resume finds the
    weights by the absolute path recorded."""

    model: str | None
    weights: str | os.PathLike | None
    start: str | os.PathLike | None
    knobs: dict[str, Any]
    data: str | os.PathLike | None
    val_data: str | os.PathLike | None
    train_labels: str | os.PathLike | None
    val_labels: str | os.PathLike | None
    samples_per_class: int | None
    val_samples_per_class: int | None
    upscale: bool | None
    recipe: Recipe | dict[str, Any]
    tags: Mapping[str, Any] | None


def _started(given: _TrainOptions) -> _TrainOptions:
    """A new run's options: ``model`` and ``data`` required, ``weights`` random and ``upscale`` off by default."""
    for argument in ("model", "data"):
        if getattr(given, argument) is None:
            what = "a model name (see `seprobe models`)" if argument == "model" else "a folder of training images"
            raise SeprobeError(f"{argument} is not given; valid: {what} for a new run, or resume=True to continue "
                               "the run in out", argument=argument)
    weights = "random" if given.weights is None else given.weights
    return replace(given, weights=weights, start=weights, upscale=bool(given.upscale))


def _resumed(given: _TrainOptions, out: Path, world) -> _TrainOptions:
    """A resumed run's options: each one not given is the record's (the checkpoint's: model, knobs, weights, the
    data's folders and label files as absolute paths, images per class, upscale, recipe, tags); knobs and
    recipe fields given are laid over the record's. What differs from the record is refused later, with the
    whole record (:func:`~seprobe.training.checkpoint.check_same_run`); another model is refused here, before
    its knobs are checked against the record's."""
    from .training import Recipe, check_start
    from .training.checkpoint import check_same_run, read_record
    from .training.loop import CHECKPOINT

    check_start(out, True, world, False)  # the folder and its checkpoint, before the record is read
    record = read_record(out / CHECKPOINT)
    meta, info, data = record["meta"], record.get("info") or {}, record["data"]
    if given.model is not None and "model" in meta:
        check_same_run({"meta": {"model": meta["model"]}}, {"meta": {"model": given.model}})
    model = given.model if given.model is not None else _recorded(meta, "model", out)
    weights, start = given.weights, given.start
    if weights is None:
        weights = meta.get("weights", "random")
        start = info.get("weights", weights)
    folders = {"data": given.data, "val_data": given.val_data, "train_labels": given.train_labels,
               "val_labels": given.val_labels}
    if given.data is None:  # the run's data, where it was; a folder given beside it (moved) replaces its own
        paths = _recorded(info, "data", out)
        recorded = {"data": paths.get("train"), "val_data": paths.get("val"),
                    "train_labels": paths.get("train_labels"), "val_labels": paths.get("val_labels")}
        folders = {k: v if v is not None else recorded[k] for k, v in folders.items()}
    recipe = given.recipe
    if not isinstance(recipe, Recipe):
        known = {f.name for f in fields(Recipe)}
        recipe = Recipe(**{**{k: v for k, v in record["recipe"].items() if k in known}, **recipe})

    def either(value, key, default=None):
        return value if value is not None else data.get(key, default)

    return replace(given, model=model, weights=weights, start=start, knobs={**meta.get("knobs", {}), **given.knobs},
                   **folders, samples_per_class=either(given.samples_per_class, "samples_per_class"),
                   val_samples_per_class=either(given.val_samples_per_class, "val_samples_per_class"),
                   upscale=bool(either(given.upscale, "upscale", False)), recipe=recipe,
                   tags=given.tags if given.tags is not None else meta.get("tags"))


def _recorded(record: Mapping[str, Any], key: str, out: Path):
    """``record[key]``, or the error of a run whose record lacks it (one started by the training engine with
    other meta, or by an earlier seprobe): the option must then be given."""
    if record.get(key) is None:
        raise SeprobeError(f"the run in {str(out)!r} does not record its {key}; valid: give {key} as the run was "
                           "started with", argument=key)
    return record[key]


def _recipe_changes(recipe) -> Recipe | dict[str, Any]:
    """A :class:`~seprobe.training.Recipe` as it is, or the fields a mapping changes, each checked."""
    from .schema import check_values
    from .training import Recipe

    if isinstance(recipe, Recipe):
        return recipe
    if recipe is not None and not isinstance(recipe, Mapping):
        raise SeprobeError(f"invalid recipe {recipe!r}; valid: a Recipe, or a mapping of its fields to change",
                           argument="recipe")
    return check_values(Recipe, recipe or {}, argument="recipe", what="recipe field")


def _seeded_network(source: ModelSource, seed: int, **knobs: Any) -> Network:
    """The network of ``source`` (with ``knobs`` added); random weights are drawn from ``seed``."""
    import torch

    from .models.factory import ModelSource, get_network

    if knobs:
        source = ModelSource(source.name, source.weights, {**source.knobs, **knobs})
    if source.kind != "random":
        return get_network(source)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_network(source, seeded=False)


def _recipe(recipe, side: int) -> Recipe:
    """The recipe of a run on images of ``side`` pixels: a :class:`~seprobe.training.Recipe` as it is, else the
    published one with the fields of the mapping changed."""
    from .training import Recipe, default_recipe

    changes = _recipe_changes(recipe)
    if isinstance(changes, Recipe):
        return changes
    changes = dict(changes)
    return default_recipe(side, changes.pop("batch_size", None), **changes)


def _fit_head(net: Network, source: ModelSource, classes: int, seed: int) -> tuple[Network, str | None]:
    """The network with a head for ``classes``: its own when it fits; an untrained seprobe model built with
    ``num_classes``; else its last linear layer replaced (said in the run's record)."""
    import torch

    from .models.heads import num_outputs, replace_head

    had = num_outputs(net.model)
    if had == classes:
        return net, None
    spec = source.spec
    if source.kind == "random" and spec is not None and "num_classes" in spec.knobs \
            and "num_classes" not in source.knobs:
        return _seeded_network(source, seed, num_classes=classes), None
    if "num_classes" in source.knobs:
        raise SeprobeError(f"num_classes {had} does not fit the data's {classes} classes; valid: num_classes "
                           f"{classes}, or leave it out", argument="num_classes")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the same new head in every run and on every rank
        path = replace_head(net.model, classes)
    return net, f"a new {classes}-way head at {path} (the network had {had} outputs)"
