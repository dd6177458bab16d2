"""A training study (``kind = "training"``): every (variant, seed) trained by :func:`seprobe.train` with one
budget, compared with the baseline seed by seed (:func:`seprobe.training.compare.compare`).

Each run lives in ``<reports>/<study>/runs/<variant>-seed<s>/``: the files of ``seprobe train`` (its weights and
checkpoint are not committed) and ``run.json``, what the run was (model, knobs, budget, recipe, data, machine).
A run whose ``history.csv`` holds every epoch of the budget and whose ``run.json`` names the same budget is not
trained again, so a report is rebuilt from the committed histories alone; a run with a checkpoint continues
where it stopped (a study interrupted at any moment resumes run by run); any other is trained from the start.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import pandas as pd

from .. import api
from ..distributed import current_world, distributed_session
from ..errors import SeprobeError
from ..paper import paper_accuracy
from ..training.compare import accuracy_standard_error, compare
from .result import StudyResult
from .spec import Study

RECIPE_FIELDS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "no_decay_bn_bias", "schedule",
                 "warmup_epochs", "label_smoothing", "dtype", "channels_last", "compile", "checkpoint_every")
RUN_FILE = "run.json"


def slug(label: str) -> str:
    """A variant's label as a folder name: ``SE-ResNet-20 (r = 4)`` -> ``se-resnet-20-r-4``."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def budget_of(study: Study, name: str | None) -> tuple[str, dict]:
    from ..devices import check_device

    name = name or study.training["budget"]
    if name not in study.budgets:
        raise SeprobeError(f"{study.path.name}: no budget {name!r}; valid: {', '.join(study.budgets)}",
                           argument="budget")
    check_device(study.budgets[name].get("device", "cpu"))
    return name, study.budgets[name]


def run_folder(runs: Path, label: str, seed: int) -> Path:
    return runs / f"{slug(label)}-seed{seed}"


def _done(folder: Path, variant, budget: str, epochs: int) -> bool:
    """Whether ``folder`` holds the finished run of ``variant`` with ``budget``; a run of another model or knobs
    under the same label is an error (the label names the run)."""
    try:
        record = json.loads((folder / RUN_FILE).read_text())
        history = pd.read_csv(folder / "history.csv")
    except (OSError, ValueError):
        return False
    if (record.get("model"), record.get("knobs")) != (variant.model, json.loads(json.dumps(variant.knobs))):
        raise SeprobeError(f"{folder} holds a run of {record.get('model')} {record.get('knobs')}, not of "
                           f"{variant.label} ({variant.model} {variant.knobs}); valid: another label, or that run "
                           "moved away")
    return record.get("budget") == budget and len(history) == epochs


def _train_one(study: Study, variant, seed: int, budget: str, settings: dict, folder: Path) -> dict:
    """Train (or resume) one run into ``folder``; its record."""
    import torch

    recipe = {k: settings[k] for k in RECIPE_FIELDS if k in settings}
    resume = (folder / "checkpoint.pth").is_file()
    if folder.exists() and not resume:
        shutil.rmtree(folder)  # a run stopped before its first checkpoint: nothing to keep
    threads = settings.get("threads")
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    session = nullcontext() if current_world().distributed else distributed_session(settings.get("device", "cpu"))
    try:
        with session:
            done = api.train(variant.model, study.training["data"], folder,
                             weights=study.training.get("weights", "random"),
                             samples_per_class=settings.get("samples_per_class"),
                             val_samples_per_class=settings.get("val_samples_per_class"),
                             recipe={**recipe, "seed": seed}, resume=resume, progress=False, **variant.knobs)
    finally:
        torch.set_num_threads(previous)
    record = {"study": study.name, "variant": variant.label, "model": variant.model, "knobs": variant.knobs,
              "seed": seed, "budget": budget, "recipe": {**recipe, "seed": seed},
              "samples_per_class": settings.get("samples_per_class"),
              "val_samples_per_class": settings.get("val_samples_per_class"), "data": done.run.data,
              "head": done.head, "device": settings.get("device", "cpu"), "threads": torch.get_num_threads()
              if not threads else threads, "machine": f"{platform.processor() or platform.machine()}",
              "torch": torch.__version__, "seconds": round(time.perf_counter() - start, 1)}
    (folder / RUN_FILE).write_text(json.dumps(record, indent=1, default=str) + "\n")
    return record


def run_training_study(study: Study, runs: Path, budget: str | None = None,
                       progress: Callable[[str], None] = lambda msg: None):
    """Train every run that is missing, then compare the variants (a :class:`~seprobe.studies.runs.StudyResult`
    whose table has one row per variant, and whose ``training`` holds every run's history)."""
    name, settings = budget_of(study, budget)
    seeds = study.training["seeds"]
    epochs = settings.get("epochs")
    if epochs is None:
        raise SeprobeError(f"{study.path.name}: budgets.{name} has no epochs; valid: the number of epochs it trains")
    histories, records = [], []
    for variant in study.variants:
        for seed in seeds:
            folder = run_folder(runs, variant.label, seed)
            if not _done(folder, variant, name, epochs):
                progress(f"{study.name}: training {variant.label}, seed {seed} ({name} budget, {epochs} epochs)")
                _train_one(study, variant, seed, name, settings, folder)
            record = json.loads((folder / RUN_FILE).read_text())
            history = pd.read_csv(folder / "history.csv")
            history.insert(0, "seed", seed)
            history.insert(0, "variant", variant.label)
            histories.append(history)
            records.append(record)
    history = pd.concat(histories, ignore_index=True)
    table = _table(study, history, records, name, settings)
    notes, context = _words(study, history, records, name, settings)
    return StudyResult(study, table, notes, context, training=history)


def _table(study: Study, history: pd.DataFrame, records: list[dict], budget: str, settings: dict) -> pd.DataFrame:
    last = history.groupby(["variant", "seed"], sort=False).tail(1)
    runs = pd.DataFrame({"variant": last["variant"], "seed": last["seed"], "top1_err": 100 * (1 - last["val_top1"])})
    table = compare(runs, study.training["baseline"])
    classes = records[0]["data"]["num_classes"]
    dataset = study.training.get("dataset")
    steps = _step_times(study, classes, records[0]["data"]["side"], settings)
    extra = []
    for v in study.variants:
        c = api.complexity(v.model, **{**v.knobs, "num_classes": classes}).results[0]
        paper = paper_accuracy(v.model, dataset) if dataset else None
        extra.append({"model": v.model, "params_m": round(c.params / 1e6, 3), "mflops": round(c.total / 1e6, 2),
                      **steps[v.label], "paper_top1_err": paper.top1_err if paper else None})
    table = pd.concat([table, pd.DataFrame(extra)], axis=1)
    for column in ("top1_err", "top1_err_std", "diff", "diff_low", "diff_high"):
        if column in table:
            table[column] = table[column].round(2)
    table["within_noise"] = table.get("within_noise", pd.Series(dtype=object)).map(
        {True: "yes", False: "no"})
    table["budget"] = budget
    return table


def _step_times(study: Study, classes: int, side: int, settings: dict) -> dict[str, dict]:
    """Each variant's training step (forward + backward, the budget's batch), timed by seprobe's method: the
    variants interleaved in one process (:func:`~seprobe.cost.timing.time_models`), not read off the runs, which
    may have shared the machine; and its ratio to the baseline's, pair by pair."""
    import torch

    from ..cost.timing import TimingSetup, time_models
    from ..models.factory import ModelSource, get_network

    baseline = study.training["baseline"]
    models = {v.label: get_network(ModelSource(v.model, "random", {**v.knobs, "num_classes": classes})).model
              for v in study.variants}
    setup = TimingSetup(device=settings.get("device", "cpu"), batch_size=settings.get("batch_size", 128),
                        input_size=side, modes=("train",), warmup=2, repeats=7)
    previous = torch.get_num_threads()
    if settings.get("threads"):
        torch.set_num_threads(settings["threads"])
    try:
        timing = time_models(models, [(v, baseline) for v in models if v != baseline], setup)
    finally:
        torch.set_num_threads(previous)
    ms = timing.summary.set_index("model")["median_ms"]
    ratio = timing.ratios.set_index("model")["ratio_median"] if not timing.ratios.empty else pd.Series(dtype=float)
    return {v: {"train_step_ms": round(float(ms[v]), 1),
                "step_ratio": round(float(ratio[v]), 3) if v in ratio else None} for v in models}


def _words(study: Study, history: pd.DataFrame, records: list[dict], budget: str, settings: dict):
    """The context lines (budget, machine, time) and the notes (what the noise allows)."""
    data = records[0]["data"]
    seconds = sum(r["seconds"] for r in records)
    accuracy = float(history.groupby(["variant", "seed"]).tail(1)["val_top1"].mean())
    se = accuracy_standard_error(accuracy, data["val_images"])
    context = [f"Budget `{budget}`: {settings.get('description', '')} Recipe changes to the published one: "
               + ", ".join(f"{k} = {settings[k]}" for k in RECIPE_FIELDS if k in settings)
               + f"; {data['train_images']} training and {data['val_images']} test images "
               f"({data['layout']}); seeds {', '.join(map(str, study.training['seeds']))}.",
               f"Trained on {records[0]['machine']} ({records[0]['threads']} threads, {records[0]['device']}), torch "
               f"{records[0]['torch']}: {seconds / 60:.0f} min for {len(records)} runs. `train_step_ms`: one "
               "training step at the budget's batch, each variant timed interleaved with the others on the machine "
               "that writes the report (median of 7), `step_ratio` its ratio to the baseline's, pair by pair."]
    notes = [f"one standard error of one run's accuracy on {data['val_images']} test images near "
             f"{100 * accuracy:.1f} % is {100 * se:.2f} points (binomial); the paired differences' 95 % intervals "
             "(Student's t over the seeds) also carry the seed-to-seed noise of training",
             "the paper's figures are for its full recipe (Table 4: 164 epochs of 50,000 images, median of 5 runs); "
             "this budget's errors are not comparable with them, only with each other"]
    return notes, context


def write_training_outputs(result, folder: Path) -> list[Path]:
    """``runs.csv`` (every run's history) and ``curves.png`` / ``.svg`` (test error per epoch, every run)."""
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
    return written
