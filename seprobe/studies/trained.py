"""A training study (``kind = "training"``): every (variant, seed) trained by :func:`seprobe.train` with one
budget, compared with the baseline seed by seed (:func:`seprobe.training.compare.compare`).

Each run lives in ``<reports>/<study>/runs/<variant>-seed<s>/``: the files of ``seprobe train`` (its weights and
checkpoint are not committed) and ``run.json``, what the run was (model, knobs, budget, recipe, data, machine).
A run whose ``history.csv`` holds every epoch of the budget and whose ``run.json`` names the same budget is not
trained again, so a report is rebuilt from the committed histories alone; a run with a checkpoint continues
where it stopped (a study interrupted at any moment resumes run by run); any other is trained from the start.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import api
from ..distributed import current_world, distributed_session
from ..errors import SeprobeError
from ..io import atomic_write_text
from ..paper import paper_accuracy
from ..training.checkpoint import ResumeRefused
from ..training.compare import accuracy_standard_error, compare
from .result import StudyResult
from .study_file import Budget, Study, Variant, evaluation_set_name

RUN_FILE = "run.json"


def slug(label: str) -> str:
    """A variant's label as a folder name: ``SE-ResNet-20 (r = 4)`` -> ``se-resnet-20-r-4``."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def budget_of(study: Study, name: str | None) -> Budget:
    from ..devices import check_device

    name = name or study.training.budget
    if name not in study.budgets:
        raise SeprobeError(f"{study.path.name}: no budget {name!r}; valid: {', '.join(study.budgets)}",
                           argument="budget")
    check_device(study.budgets[name].device)
    return study.budgets[name]


def run_folder(runs: Path, label: str, seed: int) -> Path:
    return runs / f"{slug(label)}-seed{seed}"


def _plan(variant: Variant, seed: int, budget: Budget, inputs: Inputs) -> dict:
    """What a run is (model, knobs, budget, recipe, images, start): a finished run's record must say the same
    to be reused."""
    plan = {"model": variant.model, "knobs": variant.knobs, "budget": budget.name,
            "recipe": budget.run_recipe(seed), "samples_per_class": budget.samples_per_class,
            "val_samples_per_class": budget.val_samples_per_class, **_tags(variant, inputs)}
    return json.loads(json.dumps(plan))


def _done(folder: Path, variant: Variant, plan: dict, epochs: int) -> bool:
    """Whether ``folder`` holds the finished run of ``plan`` (a record of the same budget, recipe and start,
    and every epoch); a run of another model or knobs under the same label is an error (the label names the
    run)."""
    try:
        record = json.loads((folder / RUN_FILE).read_text())
        history = pd.read_csv(folder / "history.csv")
    except (OSError, ValueError):
        return False
    if (record.get("model"), record.get("knobs")) != (variant.model, json.loads(json.dumps(variant.knobs))):
        raise SeprobeError(f"{folder} holds a run of {record.get('model')} {record.get('knobs')}, not of "
                           f"{variant.label} ({variant.model} {variant.knobs}); valid: another label, or that run "
                           "moved away")
    return len(history) == epochs and all(record.get(k, "random" if k == "start_key" else None) == v
                                          for k, v in plan.items())


@dataclass
class Inputs:
    """What every run of a study shares: the data arguments of :func:`seprobe.train` (a holdout split's two
    label files), the evaluation sets (name -> folder, label file) scored before and after training, and each
    variant's starting weights (an exported ablated network for a variant with ``ablate``)."""

    root: Path
    train_data: dict[str, Any] = field(default_factory=dict)
    sets: dict[str, tuple[Path, Path | None]] = field(default_factory=dict)
    starts: dict[str, str | Path] = field(default_factory=dict)
    before: dict[str, dict[str, dict]] = field(default_factory=dict)   # variant -> set -> evaluation
    calibration: Path | None = None
    #: what decides a result, as short digests: each variant's start (its weights file, or the definition of its
    #: ablated export), each evaluation set (its label file), the training data (the split's label files)
    start_keys: dict[str, str] = field(default_factory=dict)
    set_keys: dict[str, str] = field(default_factory=dict)
    data_key: str | None = None


def digest(*parts) -> str:
    """A short sha256 of files (their bytes) and plain values (their JSON)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            with open(part, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _plain(value, root: Path):
    """A path as recorded in a committed file: relative to the runs' folder when inside it."""
    if isinstance(value, Path):
        try:
            return value.relative_to(root).as_posix()
        except ValueError:
            return value.name
    return value


def _inputs(study: Study, runs: Path, budget: Budget, progress) -> Inputs:
    t = study.training
    inputs = Inputs(runs)
    if t.holdout_per_class is not None:
        split = api.split_holdout(t.data, runs / "split", holdout_per_class=t.holdout_per_class, labels=t.labels)
        progress(f"{study.name}: {split.train_images} images to train on, {split.heldout_images} held out "
                 f"(the last {t.holdout_per_class} of each class)")
        inputs.train_data.update(val_data=t.data, train_labels=split.train_labels, val_labels=split.heldout_labels)
        inputs.sets["heldout"] = (t.data, split.heldout_labels)
        inputs.set_keys["heldout"] = digest(split.heldout_labels)
        inputs.calibration = split.train_labels
        inputs.data_key = digest(split.train_labels, split.heldout_labels, t.upscale)
    for folder in t.evaluate:
        name = evaluation_set_name(folder)
        inputs.sets[name] = (folder, None)
        inputs.set_keys[name] = digest(folder.name)
    for variant in study.variants:
        inputs.starts[variant.label], inputs.start_keys[variant.label] = _start(study, variant, runs, inputs,
                                                                                budget, progress)
        if inputs.sets:
            inputs.before[variant.label] = _before(study, variant, runs, inputs, budget, progress)
    return inputs


def _start_folder(runs: Path, variant: Variant) -> Path:
    return runs / f"{slug(variant.label)}-start"


def _start(study: Study, variant: Variant, runs: Path, inputs: Inputs, budget: Budget,
           progress) -> tuple[str | Path, str]:
    """The variant's starting weights and their key: its own, the study's, or (``ablate``) the study's with the
    chosen SE blocks ablated and exported by :func:`seprobe.ablate`, made once and kept in ``<variant>-start/``
    with the definition it was made from (``start.json``; its digest is the key, so that a start made again
    from the same definition, on another machine, keeps the runs trained from it)."""
    from ..probe.ablation_plan import AblationPlan, CalibrationSource

    weights = variant.weights or study.training.weights
    key = digest(weights) if isinstance(weights, Path) and weights.is_file() else str(weights)
    if variant.prune:
        return _pruned_start(study, variant, variant.prune, runs, inputs, budget, progress)
    if not variant.ablate:
        return weights, key
    folder = _start_folder(runs, variant)
    path, record_file = folder / "network.pth", folder / "start.json"
    ablate = variant.ablate
    per_class = study.training.calibration_samples_per_class
    record = {"model": variant.model, "knobs": variant.knobs, "weights": _plain(weights, runs), "weights_key": key,
              "ablate": ablate.record(), "calibration": {"first_per_class": per_class, "of": "the training part",
                                                         "labels_key": digest(inputs.calibration)}
              if ablate.mode == "mean" else None}
    record = json.loads(json.dumps(record))
    try:
        if path.is_file() and json.loads(record_file.read_text()) == record:
            return path, digest(record)
    except (OSError, ValueError):
        pass
    progress(f"{study.name}: exporting {variant.label} ({ablate.record()})")
    record_file.unlink(missing_ok=True)  # the export and its record change together, or the record is absent
    plan = AblationPlan(modes=[ablate.mode], stage=ablate.stage,
                        blocks=list(ablate.blocks) if ablate.blocks else None, each_block=False)
    calibration = CalibrationSource(calibration_data=study.training.data, calibration_labels=inputs.calibration,
                                    calibration_samples_per_class=per_class) if ablate.mode == "mean" else None
    folder.mkdir(parents=True, exist_ok=True)
    with _threads(budget):
        api.ablate(variant.model, weights, inputs.sets["heldout"][0], labels=inputs.sets["heldout"][1], plan=plan,
                   calibration=calibration, export=path, export_mode=ablate.mode, progress=False, **variant.knobs)
    atomic_write_text(record_file, json.dumps(record, indent=1) + "\n")
    return path, digest(record)


def plan_slug(plan) -> str:
    """A pruning plan's folder name: ``gate-keep-macs-0.75`` (``-uniform`` for uniform allocation)."""
    target, fraction = plan.target
    return slug(f"{plan.criterion} {target} {fraction:g}") + ("-uniform" if plan.allocation == "uniform" else "")


def _plan_fields(plan) -> dict:
    from ..schema import fields

    return {name: getattr(plan, name) for name in fields(plan)}


def _prune_data(study: Study, inputs: Inputs) -> tuple[tuple[Path, Path | None], object]:
    """Where a pruned start is scored (the held-out part, else ``data/test`` or ``data/val``) and calibrated
    (the first ``calibration_samples_per_class`` training images of each class)."""
    from ..probe.ablation_plan import CalibrationSource

    t = study.training
    per_class = t.calibration_samples_per_class
    if inputs.calibration is not None:
        return inputs.sets["heldout"], CalibrationSource(calibration_data=t.data, calibration_labels=inputs.calibration,
                                                         calibration_samples_per_class=per_class)
    test = next((t.data / n for n in ("test", "val") if (t.data / n).is_dir()), None)
    if test is None or not (t.data / "train").is_dir():
        raise SeprobeError(f"{study.path.name}: a pruned start is calibrated on training images and scored on "
                           f"others; valid: holdout_per_class in [training], or data with train/ and test/ "
                           f"({t.data} has neither)")
    return (test, None), CalibrationSource(calibration_data=t.data / "train", calibration_samples_per_class=per_class)


def _pruned_start(study: Study, variant: Variant, plan, runs: Path, inputs: Inputs, budget: Budget,
                  progress) -> tuple[Path, str]:
    """``[training] weights`` pruned by ``plan`` (:func:`seprobe.prune`), made once into ``sweep/<plan>/`` with
    its definition (``start.json``: its digest is the key), the pruning's tables (``summary.csv``: cost and
    accuracy before fine-tuning) and its record (``pruning.json``: the channels kept, from which the architecture
    is rebuilt without the weights, which are not committed)."""
    from ..models.pruning import pruning_record
    from ..report.pruning import NETWORK

    t = study.training
    folder = runs / "sweep" / plan_slug(plan)
    path, record_file = folder / NETWORK, folder / "start.json"
    weights = t.weights
    (data, labels), calibration = _prune_data(study, inputs)
    record = json.loads(json.dumps({
        "model": variant.model, "knobs": variant.knobs, "weights": _plain(weights, runs),
        "weights_key": digest(weights) if isinstance(weights, Path) else str(weights), "prune": _plan_fields(plan),
        "calibration": {"first_per_class": t.calibration_samples_per_class, "of": "the training images",
                        "labels_key": digest(inputs.calibration) if inputs.calibration else None},
        "scored_on": {"data": _plain(data, runs), "labels_key": digest(labels) if labels else None}}))
    key = digest(record)
    try:
        same = json.loads(record_file.read_text()) == record
        kept = json.loads((folder / "pruning.json").read_text()) if same else None
    except (OSError, ValueError):
        same, kept = False, None
    if same and path.is_file():
        return path, key
    if same and kept is not None and (folder / "summary.csv").is_file():
        # the committed pruning without its weights: the network made again (scored already: not evaluated)
        progress(f"{study.name}: pruning {plan_slug(plan)} again (its weights are not committed)")
        again = folder / "again"
        shutil.rmtree(again, ignore_errors=True)
        with _threads(budget):
            done = api.prune(variant.model, weights, data, labels=labels, plan=plan, calibration=calibration,
                             out=again, progress=False, evaluate=False, **variant.knobs)
        if json.loads(json.dumps(pruning_record(done.result.pruned))) != kept:
            raise SeprobeError(f"{folder}: pruning {plan_slug(plan)} again kept other channels than its committed "
                               "record (pruning.json); valid: the same weights, data and seprobe, or the folder "
                               "removed so that it is pruned and scored anew")
        (again / NETWORK).replace(path)
        shutil.rmtree(again)
        return path, key
    progress(f"{study.name}: pruning {plan_slug(plan)}")
    record_file.unlink(missing_ok=True)  # the network and its record change together, or the record is absent
    with _threads(budget):
        done = api.prune(variant.model, weights, data, labels=labels, plan=plan, calibration=calibration,
                         out=folder, progress=False, **variant.knobs)
    atomic_write_text(folder / "pruning.json", json.dumps(pruning_record(done.result.pruned)) + "\n")
    atomic_write_text(record_file, json.dumps(record, indent=1) + "\n")
    return path, key


def _sweep(study: Study, runs: Path, inputs: Inputs, budget: Budget, progress) -> pd.DataFrame | None:
    """The ``[pruning]`` sweep: every plan's cost and accuracy before fine-tuning (from its ``summary.csv``, made
    once, :func:`_pruned_start`) and its inference time against the unpruned network's, timed now, interleaved,
    on architectures rebuilt from the committed records (zero weights: the time does not depend on them)."""
    sweep = study.pruning
    if sweep is None:
        return None
    baseline = next(v for v in study.variants if v.label == study.training.baseline)
    rows = []
    for plan in sweep.plans():
        folder = runs / "sweep" / plan_slug(plan)
        record = None
        try:
            record = json.loads((folder / "start.json").read_text())
            summary = pd.read_csv(folder / "summary.csv").iloc[0]
            kept = json.loads((folder / "pruning.json").read_text())
        except (OSError, ValueError):
            record = None
        if record is None or record.get("prune") != json.loads(json.dumps(_plan_fields(plan))):
            _pruned_start(study, baseline, plan, runs, inputs, budget, progress)
            summary = pd.read_csv(folder / "summary.csv").iloc[0]
            kept = json.loads((folder / "pruning.json").read_text())
        rows.append({"criterion": plan.criterion, "keep_macs": plan.keep_macs, "plan": plan_slug(plan),
                     "macs_kept": float(summary["macs_kept"]), "params_kept": float(summary["params_kept"]),
                     "top1_err_before": round(100 * (1 - float(summary["top1_after"])), 2),
                     "unpruned_top1_err": round(100 * (1 - float(summary["top1_before"])), 2),
                     "images": int(summary["images"]), "_record": kept})
    progress(f"{study.name}: timing {len(rows)} pruned networks against the unpruned one")
    times = _inference_times(study, baseline, rows, budget)
    for row in rows:
        row.pop("_record")
        row.update(times[row["plan"]])
    return pd.DataFrame(rows)


def _inference_times(study: Study, variant: Variant, rows: list[dict], budget: Budget) -> dict[str, dict]:
    from ..cost.timing import TimingSetup, step_times
    from ..models.factory import ModelSource, get_network
    from ..models.pruning import apply_pruning

    base = get_network(ModelSource(variant.model, "random", variant.knobs), zeros=True)
    models = {"unpruned": base.model}
    for row in rows:
        net = get_network(ModelSource(variant.model, "random", variant.knobs), zeros=True)
        models[row["plan"]] = apply_pruning(net.model, row["_record"]).eval()
    setup = TimingSetup(device=budget.device, batch_size=study.pruning.inference_batch_size,
                        input_size=base.input_size, warmup=2, repeats=7)
    with _threads(budget):
        return step_times(models, "unpruned", setup, mode="inference")


def _evaluation(model: str, weights, folder: Path, labels: Path | None, knobs: dict) -> dict:
    e = api.evaluate(model, weights, folder, labels=labels, progress=False, **knobs)
    return {"top1": e.top1, "top5": e.top5, "images": e.images}


def _unscored(inputs: Inputs, saved: dict, keys: dict) -> list[str]:
    """The evaluation sets without a score in ``saved`` under their current key (``keys``: the saved ones)."""
    return [name for name, key in inputs.set_keys.items() if saved.get(name) is None or keys.get(name) != key]


def _scores(model: str, weights, knobs: dict, inputs: Inputs, saved: dict, keys: dict) -> tuple[dict, dict]:
    """Every evaluation set's scores: those of :func:`_unscored` computed, the others taken from ``saved``."""
    missing = _unscored(inputs, saved, keys)
    sets = {name: _evaluation(model, weights, data, labels, knobs) if name in missing else saved[name]
            for name, (data, labels) in inputs.sets.items()}
    return sets, dict(inputs.set_keys)


def _before(study: Study, variant: Variant, runs: Path, inputs: Inputs, budget: Budget,
            progress) -> dict[str, dict]:
    """The starting network scored on every evaluation set, once (``<variant>-start/before.json``, kept for
    the start's key and each set's)."""
    folder = _start_folder(runs, variant)
    path = folder / "before.json"
    try:
        saved = json.loads(path.read_text())
        if saved.get("start_key") != inputs.start_keys[variant.label]:
            saved = {}
    except (OSError, ValueError):
        saved = {}
    keys = saved.get("set_keys", {})
    if not _unscored(inputs, saved.get("sets", {}), keys):
        return {n: saved["sets"][n] for n in inputs.sets}
    progress(f"{study.name}: scoring {variant.label} before training")
    with _threads(budget):
        sets, keys = _scores(variant.model, inputs.starts[variant.label], variant.knobs, inputs,
                             saved.get("sets", {}), keys)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"start": _plain(inputs.starts[variant.label], runs),
                                        "start_key": inputs.start_keys[variant.label], "sets": sets,
                                        "set_keys": keys}, indent=1) + "\n")
    return sets


def _evaluate_after(study: Study, variant: Variant, folder: Path, inputs: Inputs, budget: Budget,
                    progress) -> None:
    """The trained network (``final.pth``) scored on every evaluation set, kept in ``run.json`` with each set's
    key; a set scored before is not scored again (the weights are not committed: a new set needs them)."""
    record = json.loads((folder / RUN_FILE).read_text())
    saved, keys = record.get("after", {}), record.get("after_keys", {})
    if not _unscored(inputs, saved, keys) and set(saved) == set(inputs.sets):
        return
    if not (folder / "final.pth").is_file():
        raise SeprobeError(f"{folder}: final.pth is not here to score on {', '.join(inputs.sets)} (the weights "
                           "are not committed); valid: the run's weights restored, or the run folder removed so "
                           "that it is trained again", argument="runs")
    progress(f"{study.name}: scoring {folder.name}")
    with _threads(budget):
        record["after"], record["after_keys"] = _scores(variant.model, folder / "final.pth", variant.knobs, inputs,
                                                        saved, keys)
    atomic_write_text(folder / RUN_FILE, json.dumps(record, indent=1, default=str) + "\n")


@contextmanager
def _threads(budget: Budget):
    import torch

    previous = torch.get_num_threads()
    if budget.threads:
        torch.set_num_threads(budget.threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _tags(variant: Variant, inputs: Inputs) -> dict:
    """What decides a run beyond its options: its start's key and the data's (checked on resume)."""
    return {"start_key": inputs.start_keys[variant.label],
            **({"data_key": inputs.data_key} if inputs.data_key is not None else {})}


def _train_or_restart(study: Study, variant: Variant, folder: Path, resume: bool, inputs: Inputs, budget: Budget,
                      seed: int):
    """Train (``resume``: continue) one run; a stopped run that cannot continue (another recipe, start or data
    since, a truncated checkpoint: :class:`~seprobe.training.checkpoint.ResumeRefused`, before any step) is
    trained again from the start; any other error keeps the folder as it was."""

    def run(again: bool):
        return api.train(variant.model, study.training.data, folder, weights=inputs.starts[variant.label],
                         **inputs.train_data, samples_per_class=budget.samples_per_class,
                         val_samples_per_class=budget.val_samples_per_class, upscale=study.training.upscale,
                         num_workers=budget.num_workers, recipe=budget.run_recipe(seed), resume=again,
                         tags=_tags(variant, inputs), progress=False, **variant.knobs)

    if resume:
        try:
            return run(True)
        except ResumeRefused:  # raised before any step: the folder holds nothing that could continue
            shutil.rmtree(folder)
    return run(False)


def _train_one(study: Study, variant: Variant, seed: int, budget: Budget, folder: Path, inputs: Inputs) -> dict:
    """Train (or resume) one run into ``folder``; its record."""
    import torch

    resume = (folder / "checkpoint.pth").is_file() and not (folder / RUN_FILE).exists()
    if folder.exists() and not resume:
        shutil.rmtree(folder)  # stopped before its first checkpoint, or finished as another plan: nothing to keep
    start = time.perf_counter()
    session = nullcontext() if current_world().distributed else distributed_session(budget.device)
    with _threads(budget), session:
        threads = torch.get_num_threads()
        done = _train_or_restart(study, variant, folder, resume, inputs, budget, seed)
    record = {"study": study.name, "variant": variant.label, "model": variant.model, "knobs": variant.knobs,
              "seed": seed, "budget": budget.name, "recipe": budget.run_recipe(seed),
              "samples_per_class": budget.samples_per_class, "val_samples_per_class": budget.val_samples_per_class,
              "data": done.run.data, "head": done.head, "device": budget.device, "threads": threads,
              "machine": f"{platform.processor() or platform.machine()}",
              "torch": torch.__version__, "seconds": round(time.perf_counter() - start, 1),
              "start": _plain(inputs.starts[variant.label], inputs.root),
              **_tags(variant, inputs)}
    atomic_write_text(folder / RUN_FILE, json.dumps(record, indent=1, default=str) + "\n")
    return record


def run_training_study(study: Study, runs: Path, budget: str | None = None,
                       progress: Callable[[str], None] = lambda msg: None):
    """Train every run that is missing, then compare the variants (a :class:`~seprobe.studies.runs.StudyResult`
    whose table has one row per variant, and whose ``training`` holds every run's history)."""
    budget = budget_of(study, budget)
    epochs = budget.epochs
    if epochs is None:
        raise SeprobeError(f"{study.path.name}: budgets.{budget.name} has no epochs; valid: the number of epochs "
                           "it trains")
    inputs = _inputs(study, runs, budget, progress)
    histories, records = [], []
    for variant in study.variants:
        for seed in study.training.seeds:
            folder = run_folder(runs, variant.label, seed)
            plan = _plan(variant, seed, budget, inputs)
            if not _done(folder, variant, plan, epochs):
                progress(f"{study.name}: training {variant.label}, seed {seed} ({budget.name} budget, {epochs} "
                         "epochs)")
                _train_one(study, variant, seed, budget, folder, inputs)
            if inputs.sets:
                _evaluate_after(study, variant, folder, inputs, budget, progress)
            record = json.loads((folder / RUN_FILE).read_text())
            history = pd.read_csv(folder / "history.csv")
            history.insert(0, "seed", seed)
            history.insert(0, "variant", variant.label)
            histories.append(history)
            records.append(record)
    history = pd.concat(histories, ignore_index=True)
    table = _table(study, history, records, budget, inputs)
    notes, context = _words(study, history, records, budget)
    sweep = _sweep(study, runs, inputs, budget, progress)
    return StudyResult(study, table, notes, context, training=history, sweep=sweep)


def _source(variant: Variant, start, classes: int):
    """The network a variant trained: an untrained seprobe model sized for the data's classes, else its start."""
    from ..models.factory import ModelSource
    from ..models.sources import library

    if start == "random" and library(variant.model) is None:
        return ModelSource(variant.model, "random", {**variant.knobs, "num_classes": classes})
    return ModelSource(variant.model, start, variant.knobs)


def _table(study: Study, history: pd.DataFrame, records: list[dict], budget: Budget,
           inputs: Inputs) -> pd.DataFrame:
    last = history.groupby(["variant", "seed"], sort=False).tail(1)
    runs = pd.DataFrame({"variant": last["variant"], "seed": last["seed"], "top1_err": 100 * (1 - last["val_top1"])})
    table = compare(runs, study.training.baseline)
    if study.training.also_against is not None:
        table = pd.concat([table, _against(runs, study.training.also_against)], axis=1)
    classes = records[0]["data"]["num_classes"]
    dataset = study.training.dataset
    sources = {v.label: _source(v, inputs.starts[v.label], classes) for v in study.variants}
    steps = _step_times(study, sources, records[0]["data"]["side"], budget)
    extra, params = [], {}
    for v in study.variants:
        c = api.complexity(sources[v.label]).results[0]
        params[v.label] = c.params
        paper = paper_accuracy(v.model, dataset) if dataset else None
        extra.append({"model": v.model, "params_m": round(c.params / 1e6, 3), "mflops": round(c.total / 1e6, 2),
                      **steps[v.label], "paper_top1_err": paper.top1_err if paper else None})
    if study.figure == "params":  # the figure's x axis: exact, where params_m's 1,000 hide ECA's few weights
        for row, v in zip(extra, study.variants, strict=True):
            row["params_added"] = params[v.label] - params[study.training.baseline]
    table = pd.concat([table, pd.DataFrame(extra), _evaluations(study, records, inputs)], axis=1)
    for column in table.columns:
        if column in ("top1_err", "top1_err_std") or column.endswith(("diff", "diff_low", "diff_high")):
            table[column] = table[column].round(2)
        if column.endswith("within_noise"):
            table[column] = table[column].map({True: "yes", False: "no"})
    if "within_noise" not in table:
        table["within_noise"] = pd.Series(dtype=object)
    table["budget"] = budget.name
    return table


def against_prefix(label: str) -> str:
    """The columns of the comparison with a second baseline: ``vs_se_resnet_20_diff`` ..."""
    return "vs_" + slug(label).replace("-", "_") + "_"


def _against(runs: pd.DataFrame, label: str) -> pd.DataFrame:
    """The paired difference of every variant to a second baseline (``[training] also_against``)."""
    paired = compare(runs, label)
    keys = [k for k in ("diff", "diff_low", "diff_high", "within_noise") if k in paired]
    return paired[keys].rename(columns={k: against_prefix(label) + k for k in keys})


def _evaluations(study: Study, records: list[dict], inputs: Inputs) -> pd.DataFrame:
    """Per evaluation set: the starting network's top-1 error, the trained one's (mean over seeds), the change,
    and the trained error's paired difference to the baseline's, seed by seed, with its 95 % interval."""
    columns: dict[str, list] = {}
    for name in inputs.sets:
        runs = pd.DataFrame({"variant": [r["variant"] for r in records], "seed": [r["seed"] for r in records],
                             "top1_err": [100 * (1 - r["after"][name]["top1"]) for r in records]})
        paired = compare(runs, study.training.baseline)
        before = [100 * (1 - inputs.before[v.label][name]["top1"]) for v in study.variants]
        columns[f"{name}_before"] = [round(b, 2) for b in before]
        columns[f"{name}_after"] = paired["top1_err"].round(2).tolist()
        columns[f"{name}_change"] = [round(a - b, 2) for a, b in zip(paired["top1_err"], before, strict=True)]
        for key in ("diff", "diff_low", "diff_high"):
            if key in paired:
                columns[f"{name}_{key}"] = paired[key].round(2).tolist()
    return pd.DataFrame(columns)


def _step_times(study: Study, sources: dict, side: int, budget: Budget) -> dict[str, dict]:
    """Each variant's training step (forward + backward, at the batch its runs trained with), timed by seprobe's
    method: the variants interleaved in one process (:func:`~seprobe.cost.timing.time_models`), not read off the
    runs, which may have shared the machine; and its ratio to the baseline's, pair by pair."""
    from ..cost.timing import TimingSetup, step_times
    from ..models.factory import get_network
    from ..training.recipe import default_recipe

    models = {label: get_network(source).model for label, source in sources.items()}
    batch = default_recipe(side, budget.recipe.get("batch_size")).batch_size
    setup = TimingSetup(device=budget.device, batch_size=batch, input_size=side, warmup=2, repeats=7)
    with _threads(budget):
        return step_times(models, study.training.baseline, setup)


def _words(study: Study, history: pd.DataFrame, records: list[dict], budget: Budget):
    """The context lines (budget, machine, time) and the notes (what the noise allows)."""
    data = records[0]["data"]
    seconds = sum(r["seconds"] for r in records)
    last = history.groupby(["variant", "seed"]).tail(1)
    accuracy = float(last.loc[last["variant"] == study.training.baseline, "val_top1"].mean())
    se = accuracy_standard_error(accuracy, data["val_images"])
    context = [f"Budget `{budget.name}`: {budget.description} Recipe changes to the published one: "
               + ", ".join(f"{k} = {v}" for k, v in budget.recipe.items())
               + f"; {data['train_images']} training and {data['val_images']} test images "
               f"({data['layout']}); seeds {', '.join(map(str, study.training.seeds))}.",
               f"Trained on {records[0]['machine']} ({records[0]['threads']} threads, {records[0]['device']}), torch "
               f"{records[0]['torch']}: {seconds / 60:.0f} min for {len(records)} runs. `train_step_ms`: one "
               "training step at the budget's batch, each variant timed interleaved with the others on the machine "
               "that writes the report (median of 7), `step_ratio` its ratio to the baseline's, pair by pair."]
    notes = [f"one standard error of one run's accuracy on {data['val_images']} test images near "
             f"{100 * accuracy:.1f} % (the baseline's) is {100 * se:.2f} points (binomial); the paired differences' "
             "95 % intervals (Student's t over the seeds) also carry the seed-to-seed noise of training"]
    if study.training.dataset:
        notes.append("the paper's figures are for its full recipe (Table 4: 164 epochs of 50,000 images, median of "
                     "5 runs); this budget's errors are not comparable with them, only with each other")
    sets = records[0].get("after", {})
    if sets:
        notes.append("`<set>_before` / `_after`: top-1 error (%) of the starting network and of the trained one "
                     "(mean over seeds) on each evaluation set ("
                     + ", ".join(f"{name}: {scores['images']} images" for name, scores in sets.items())
                     + "), `_change` after minus before, `_diff` the trained error's paired difference to the "
                     "baseline's with its 95 % interval")
    if study.training.holdout_per_class is not None:
        context.append(f"Data: {study.training.data.name} split per class in file order, the last "
                       f"{study.training.holdout_per_class} of each class held out (`heldout`: the validation "
                       "set of training, and an evaluation set); the training images are the others"
                       + (", upscaled to the network's input" if study.training.upscale else "") + ".")
    return notes, context


def write_training_outputs(result, folder: Path) -> list[Path]:
    """``runs.csv`` (every run's history) and ``curves.png`` / ``.svg`` (test error per epoch, every run); with
    ``figure = "params"``, ``tradeoff.png`` / ``.svg`` too (:func:`tradeoff_figure`)."""
    from ..figures import new_figure, save_figure
    from ..io import atomic_write

    history = result.training
    written = [atomic_write(folder / "runs.csv", lambda tmp: history.to_csv(tmp, index=False, lineterminator="\n"))]
    import seaborn as sns

    variants = list(dict.fromkeys(history["variant"]))
    palette = dict(zip(variants, sns.color_palette("deep", len(variants)), strict=True))
    with new_figure(figsize=(7.5, 4.2)) as (fig, ax):
        for (variant, seed), run in history.groupby(["variant", "seed"], sort=False):
            ax.plot(run["epoch"], 100 * (1 - run["val_top1"]), color=palette[variant], alpha=0.8, lw=1.2,
                    label=variant if seed == history["seed"].iloc[0] else None)
        ax.set(xlabel="epoch", ylabel="test top-1 error (%)", title=result.study.title)
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written += save_figure(fig, folder / "curves")
    if result.study.figure == "params":
        written += tradeoff_figure(result, folder / "tradeoff")
    if result.sweep is not None:
        sweep = result.sweep
        written.append(atomic_write(folder / "sweep.csv", lambda tmp: sweep.to_csv(tmp, index=False,
                                                                                  lineterminator="\n")))
        written += pruning_figure(result, folder / "pruning")
    return written


def pruning_figure(result, path: Path) -> list[Path]:
    """Accuracy against the multiply-adds kept, one line per criterion: top-1 error before fine-tuning (the
    sweep), and after it (the fine-tuned arms: mean over seeds, 95 % t interval); and each pruned network's
    measured inference time against the unpruned one's."""
    import seaborn as sns

    from ..figures import new_figure, save_figure
    from ..training.compare import t975

    sweep, table, study = result.sweep, result.table, result.study
    criteria = list(dict.fromkeys(sweep["criterion"]))
    palette = dict(zip(criteria, sns.color_palette("deep", len(criteria)), strict=True))
    arms = {v.label: v.prune for v in study.variants if v.prune is not None}
    with new_figure(1, 2, figsize=(11, 4.4)) as (fig, axes):
        ax = axes[0]
        for c in criteria:
            rows = sweep[sweep["criterion"] == c].sort_values("macs_kept")
            ax.plot(rows["macs_kept"], rows["top1_err_before"], "o--", color=palette[c], alpha=0.7, lw=1,
                    label=f"{c}, before fine-tuning")
        base = sweep["unpruned_top1_err"].iloc[0]
        ax.plot([1.0], [base], "k*", ms=10, label="unpruned")
        n = len(study.training.seeds)
        t = t975(n - 1) if n > 1 else float("nan")
        by_label = table.set_index("variant")
        for label, plan in arms.items():
            row = by_label.loc[label]
            kept = sweep.loc[(sweep["criterion"] == plan.criterion) & (sweep["keep_macs"] == plan.keep_macs),
                             "macs_kept"]
            if kept.empty:
                continue
            half = t * float(row["top1_err_std"]) / n ** 0.5 if n > 1 else 0.0
            ax.errorbar([float(kept.iloc[0])], [float(row["top1_err"])], yerr=[[half], [half]], fmt="s",
                        color=palette.get(plan.criterion, "0.3"), capsize=4, ms=7)
        fine = by_label.loc[study.training.baseline]
        ax.plot([1.0], [float(fine["top1_err"])], "ks", ms=7, label=f"{study.training.baseline}, fine-tuned")
        ax.set(xlabel="multiply-adds kept (fraction of the unpruned network's)", ylabel="top-1 error (%)")
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="squares: fine-tuned (mean, 95 % interval)", title_fontsize=7)
        ax = axes[1]
        for c in criteria:
            rows = sweep[sweep["criterion"] == c].sort_values("macs_kept")
            ax.plot(rows["macs_kept"], rows["inference_ratio"], "o-", color=palette[c], label=c)
        ax.plot(sweep["macs_kept"].sort_values(), sweep["macs_kept"].sort_values(), color="0.5", lw=0.8, ls=":",
                label="time = multiply-adds")
        ax.axhline(1.0, color="0.5", lw=0.8)
        ax.set(xlabel="multiply-adds kept", ylabel="inference time / the unpruned network's (this CPU)")
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.suptitle(study.title, fontsize=9)
        fig.tight_layout()
        return save_figure(fig, path)


def tradeoff_figure(result, path: Path) -> list[Path]:
    """What each variant buys for what it costs: its paired error difference to the baseline (mean over seeds,
    with the 95 % t interval as a bar) against the parameters it adds, and against its training step's time
    ratio; one marker per variant, the baseline at 0."""
    from ..figures import new_figure, save_figure

    table = result.table
    baseline = result.study.training.baseline
    with new_figure(1, 2, figsize=(10, 4.2), sharey=True) as (fig, axes):
        for ax, x, label in ((axes[0], "params_added", "parameters added to the baseline"),
                             (axes[1], "step_ratio", "training step time / the baseline's (this CPU)")):
            for row in table.itertuples():
                at_base = row.variant == baseline
                xv = 1.0 if at_base and x == "step_ratio" else getattr(row, x)  # the baseline adds 0 params
                y = 0.0 if at_base else row.diff
                err = None if at_base else [[y - row.diff_low], [row.diff_high - y]]
                ax.errorbar([xv], [y], yerr=err, fmt="o" if not at_base else "s", capsize=3, label=row.variant)
            ax.axhline(0, color="0.5", lw=0.8)
            if x == "params_added":  # from the baseline's 0 to ECA's tens and SE's thousands
                ax.set_xscale("symlog", linthresh=100)
                ax.set_xlim(-30, 2 * max(float(table["params_added"].max()), 100))
            ax.set(xlabel=label)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel(f"test top-1 error minus {baseline}'s (points)")
        axes[1].legend(fontsize=7, loc="best")
        fig.suptitle(f"{result.study.title}\nmean paired difference over seeds, 95 % interval", fontsize=9)
        fig.tight_layout()
        return save_figure(fig, path)
