"""Training studies (studies/trained.py, training/compare.py): the statistics against closed forms, a tiny study
run end to end twice (the second time from its histories alone), and its file checked before any run."""

from __future__ import annotations

import io
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seprobe import SeprobeError
from seprobe.studies.regenerate import run_studies
from seprobe.studies.runs import run_study
from seprobe.studies.study_file import load_study
from seprobe.studies.trained import slug
from seprobe.training.compare import compare, t975

from .helpers import write_class_folders

STUDY = """title = "tiny"
kind = "training"
[training]
data = "../data"
seeds = [0, 1, 2]
baseline = "plain"
budget = "tiny"
{extra}
[budgets.tiny]
description = "two epochs of six images."
epochs = 2
batch_size = 6
lr = 0.05
threads = 1
[[variants]]
label = "plain"
model = "resnet20_cifar"
[[variants]]
label = "SE, r = 4"
model = "se_resnet20_cifar"
knobs = {{ reduction = 4 }}
"""


def test_student_t_quantiles_are_the_closed_forms():
    assert t975(1) == pytest.approx(math.tan(math.pi * (0.975 - 0.5)), abs=5e-4)  # Cauchy
    p = 0.975  # df = 2: t = (2p - 1) / sqrt(2 p (1 - p))
    assert t975(2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), abs=5e-4)
    assert t975(1000) == 1.960
    with pytest.raises(SeprobeError, match="invalid degrees of freedom 0"):
        t975(0)


def test_paired_differences_and_their_interval_by_hand():
    runs = pd.DataFrame({"variant": ["a"] * 3 + ["b"] * 3, "seed": [0, 1, 2] * 2,
                         "top1_err": [10.0, 12.0, 11.0, 9.0, 11.5, 10.0]})
    t = compare(runs, "a").set_index("variant")
    d = np.array([-1.0, -0.5, -1.0])  # b - a, seed by seed
    half = 4.303 * d.std(ddof=1) / math.sqrt(3)
    assert t.loc["a", "top1_err"] == pytest.approx(11.0) and t.loc["a", "top1_err_std"] == pytest.approx(1.0)
    assert t.loc["b", "diff"] == pytest.approx(d.mean())
    assert (t.loc["b", "diff_low"], t.loc["b", "diff_high"]) == (pytest.approx(d.mean() - half),
                                                                 pytest.approx(d.mean() + half))
    assert t.loc["b", "within_noise"] == (d.mean() - half <= 0 <= d.mean() + half)


def _study(tmp_path, extra=""):
    write_class_folders(tmp_path / "data" / "train", {"cat": 6, "dog": 6}, 32)
    write_class_folders(tmp_path / "data" / "test", {"cat": 4, "dog": 4}, 32, seed=1)
    (tmp_path / "studies").mkdir()
    path = tmp_path / "studies" / "tiny.toml"
    path.write_text(STUDY.format(extra=extra))
    return path


@pytest.mark.slow
def test_a_study_trains_once_and_is_rebuilt_from_its_histories(tmp_path):
    """... compared with its baseline and with a second one (``also_against``), its figure of error against
    cost drawn."""
    path = _study(tmp_path, 'also_against = "SE, r = 4"')
    path.write_text('figure = "params"\n' + path.read_text())
    out = tmp_path / "reports"
    done = run_studies([path], out)
    runs = out / "tiny" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == sorted(f"{slug(v)}-seed{s}" for v in ("plain", "SE, r = 4")
                                                            for s in (0, 1, 2))
    first_csv = (out / "tiny.csv").read_text()
    table = pd.read_csv(out / "tiny.csv").set_index("variant")
    history = pd.read_csv(out / "tiny" / "runs.csv")
    last = history.groupby(["variant", "seed"]).tail(1).set_index(["variant", "seed"])
    errors = {v: [100 * (1 - last.loc[(v, s), "val_top1"]) for s in (0, 1, 2)] for v in ("plain", "SE, r = 4")}
    assert table.loc["plain", "top1_err"] == pytest.approx(np.mean(errors["plain"]), abs=0.005)
    assert table.loc["SE, r = 4", "diff"] == pytest.approx(np.mean(errors["SE, r = 4"]) - np.mean(errors["plain"]),
                                                          abs=0.006)
    assert table.loc["SE, r = 4", "params_m"] > table.loc["plain", "params_m"]
    against = np.mean(errors["plain"]) - np.mean(errors["SE, r = 4"])  # plain against SE, seed by seed
    assert table.loc["plain", "vs_se_r_4_diff"] == pytest.approx(against, abs=0.006)
    assert (table.loc["plain", "vs_se_r_4_diff_low"] <= table.loc["plain", "vs_se_r_4_diff"]
            <= table.loc["plain", "vs_se_r_4_diff_high"])
    # SE at r = 4 on ResNet-20's 9 units of 16, 32, 64 channels: W1, W2 and their biases, C^2 / 2 + 5 C / 4 each
    assert table.loc["SE, r = 4", "params_added"] == 3 * sum(c * c // 2 + 5 * c // 4 for c in (16, 32, 64))
    assert table.loc["plain", "params_added"] == 0
    assert (out / "tiny" / "tradeoff.png").stat().st_size > 0 and "tiny/tradeoff.png" in (out / "tiny.md").read_text()
    for p in runs.glob("*/*.pth"):
        p.unlink()  # the weights are not committed: the report is rebuilt from the histories
    before = {p: p.stat().st_mtime_ns for p in runs.glob("*/history.csv")}
    again = run_studies([path], out)
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/history.csv")} == before  # nothing trained again
    timed = ["train_step_ms", "step_ratio"]  # measured anew by each report
    first, rebuilt = (pd.read_csv(io.StringIO(text)).drop(columns=timed)
                      for text in (first_csv, (out / "tiny.csv").read_text()))
    pd.testing.assert_frame_equal(rebuilt, first)
    assert again.ran == done.ran == ["tiny"]


@pytest.mark.slow
def test_a_budget_label_smoothing_is_the_one_its_runs_train_with(tmp_path, monkeypatch):
    """``label_smoothing = 0.1`` in a budget (one variant, one seed, one epoch of two steps): the run's
    ``run.json`` records it, and the training loop built its step with it: the Recipe the loop hands to its
    ``Stepper``, the criterion that step uses and the record of the loop's ``checkpoint.pth`` all say 0.1 (the
    published recipe's is 0)."""
    import torch

    from seprobe.training.steps import Stepper

    path = _study(tmp_path)
    text = path.read_text()
    for old, new in (("seeds = [0, 1, 2]", "seeds = [0]"), ("epochs = 2", "epochs = 1"),
                     ("threads = 1", "threads = 1\nlabel_smoothing = 0.1"),
                     ('[[variants]]\nlabel = "SE, r = 4"\nmodel = "se_resnet20_cifar"\nknobs = { reduction = 4 }\n',
                      "")):
        assert old in text
        text = text.replace(old, new)
    path.write_text(text)
    built, init = [], Stepper.__init__

    def recording(self, net, runner, recipe, device):
        init(self, net, runner, recipe, device)
        built.append((recipe, self.loss.label_smoothing))

    monkeypatch.setattr(Stepper, "__init__", recording)
    run_study(load_study(path), runs=tmp_path / "runs")
    folder = tmp_path / "runs" / "plain-seed0"
    assert pd.read_json(folder / "run.json", typ="series")["recipe"].get("label_smoothing") == 0.1
    assert len(built) == 1  # one run, one loop
    recipe, criterion = built[0]
    assert (recipe.label_smoothing, criterion, recipe.seed, recipe.epochs) == (0.1, 0.1, 0, 1)
    saved = torch.load(folder / "checkpoint.pth", weights_only=True)["record"]["recipe"]
    assert saved["label_smoothing"] == 0.1


@pytest.mark.parametrize("extra,message", [
    ('[budgets.other]\nepochs = 1', None),
    ("", None),
])
def test_a_good_study_loads(tmp_path, extra, message):
    study = load_study(_study(tmp_path, extra))
    assert study.training.baseline == "plain" and study.budgets["tiny"].epochs == 2


@pytest.mark.parametrize("old,new,message", [
    ('baseline = "plain"', 'baseline = "none"', "training.baseline: no variant labelled 'none'"),
    ('budget = "tiny"', 'budget = "huge"', "training.budget: no budget 'huge'; valid: tiny"),
    ("seeds = [0, 1, 2]", "seeds = [0, 0]", "training.seeds: invalid seeds [0, 0]; valid: distinct integers"),
    ("seeds = [0, 1, 2]", 'seeds = ["0"]', "training.seeds: invalid value ['0']"),
    ("epochs = 2", "epochs = 0", "budgets.tiny.epochs: invalid value 0"),
    ("lr = 0.05", "learning_rate = 0.05", "budgets.tiny.learning_rate: unknown field"),
])
def test_a_bad_study_is_refused_before_any_run(tmp_path, old, new, message):
    path = _study(tmp_path)
    _refused(path, path.read_text(), old, new, message)


def _refused(path: Path, text: str, old: str, new: str, message: str) -> None:
    """The study file ``text`` with ``old`` made ``new`` is refused at loading, with ``message`` (a pattern
    whose brackets are literal)."""
    assert old in text
    path.write_text(text.replace(old, new))
    with pytest.raises(SeprobeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_study(path)


ROOT = Path(__file__).resolve().parents[1]
TRAINED = [p for p in sorted((ROOT / "studies").glob("*.toml")) if load_study(p).kind == "training"]


@pytest.mark.slow
@pytest.mark.parametrize("path", TRAINED, ids=[p.stem for p in TRAINED])
def test_committed_training_reports_are_their_histories(path, monkeypatch, tmp_path):
    """A committed training report is what its committed runs give: rebuilt without training (every run's
    history is complete), the errors, intervals, parameters and multiply-adds are the committed ones (the step
    times, measured anew by each report, are not compared, and not measured here: a minute of the suite for
    the fine-tuning study's MobileNetV3 steps at batch 256). The runs are a copy of the committed files (no
    network file is committed: the starts are made again), so the checkout is left as it was."""
    import seprobe.studies.trained as trained

    monkeypatch.setattr(trained, "_step_times", lambda study, sources, side, budget: {
        label: {"train_step_ms": None, "step_ratio": None} for label in sources})
    monkeypatch.setattr(trained, "_inference_times", lambda study, variant, rows, budget: {
        row["plan"]: {"inference_ms": None, "inference_ratio": None} for row in rows})
    study = load_study(path)
    if study.missing_inputs():
        pytest.skip(f"{', '.join(study.missing_inputs())} not found here: the study's data")
    committed_runs = ROOT / "reports" / (study.training.runs or study.name) / "runs"
    runs = tmp_path / "runs"
    shutil.copytree(committed_runs, runs, ignore=shutil.ignore_patterns("*.pth", "split"))
    before = {p: p.stat().st_mtime_ns for p in runs.glob("*/history.csv")}
    result = run_study(study, runs=runs)
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/history.csv")} == before  # nothing was trained
    committed = pd.read_csv(ROOT / "reports" / f"{study.name}.csv")
    fresh = pd.read_csv(io.StringIO(result.table.to_csv(index=False)))
    columns = ["variant", "seeds", "top1_err", "top1_err_std", "diff", "diff_low", "diff_high", "within_noise",
               "params_m", "mflops"]
    pd.testing.assert_frame_equal(fresh[columns], committed[columns])


FINETUNE = """title = "fine-tune"
kind = "training"
[training]
data = "../images"
labels = "../labels.txt"
holdout_per_class = 2
calibration_samples_per_class = 2
weights = "../start.pth"
evaluate = ["../samples"]
seeds = [0, 1]
baseline = "full"
budget = "tiny"
[budgets.tiny]
epochs = 1
batch_size = 4
lr = 0.01
freeze_bn = true
clip_grad_norm = 5.0
threads = 1
num_workers = 0
[[variants]]
label = "full"
model = "se_resnet20_cifar"
knobs = { num_classes = 1000 }
[[variants]]
label = "stage 3 frozen"
model = "se_resnet20_cifar"
knobs = { num_classes = 1000 }
ablate = { stage = 3, mode = "mean" }
"""
WNIDS = ("n01443537", "n09246464", "n02085620")


def _finetune_study(tmp_path) -> Path:
    import torch
    from PIL import Image

    import seprobe

    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "samples").mkdir()
    lines = []
    for i in range(18):  # six images of each class, listed interleaved
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "images" / f"v{i}.png")
        lines.append(f"v{i}.png\t{WNIDS[i % 3]}\n")
    for k, wnid in enumerate(WNIDS):
        image = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        image.save(tmp_path / "samples" / f"{wnid}_{k}.png")
    (tmp_path / "labels.txt").write_text("".join(lines))
    torch.manual_seed(0)
    torch.save(seprobe.build_model("se_resnet20_cifar", num_classes=1000).state_dict(), tmp_path / "start.pth")
    (tmp_path / "studies").mkdir()
    path = tmp_path / "studies" / "finetune.toml"
    path.write_text(FINETUNE)
    return path


@pytest.mark.slow
def test_a_fine_tuning_study_exports_its_starts_and_scores_every_run_before_and_after(tmp_path):
    """The parts of studies/finetune_stage5.toml on a tiny network: the holdout split (the last 2 of each
    class held out), an ablated start exported once (stage 3's SE folded), every start and every trained run
    scored on the held-out part and on another folder; the held-out score after training is the run's own last
    validation (two code paths, one set of images); a second run reuses it all, and a changed recipe retrains."""
    from seprobe.models.ablated import load_ablated

    path = _finetune_study(tmp_path)
    out = tmp_path / "reports"
    run_studies([path], out)
    runs = out / "finetune" / "runs"
    heldout = (runs / "split" / "heldout.txt").read_text().split()
    assert heldout[::2] == [f"v{i}.png" for i in range(12, 18)]
    start = load_ablated(runs / "stage-3-frozen-start" / "network.pth")
    assert sorted(start.blocks) == ["SE_3_1", "SE_3_2", "SE_3_3"]
    assert all(how.startswith("mean folded") for how in start.blocks.values())
    table = pd.read_csv(out / "finetune.csv").set_index("variant")
    for variant in ("full", "stage 3 frozen"):
        for seed in (0, 1):
            folder = runs / f"{slug(variant)}-seed{seed}"
            record = pd.read_json(folder / "run.json", typ="series")
            history = pd.read_csv(folder / "history.csv")
            assert record["after"]["heldout"]["top1"] == pytest.approx(history["val_top1"].iloc[-1], abs=1e-12)
            assert record["after"]["heldout"]["images"] == 6 and record["after"]["samples"]["images"] == 3
        before = pd.read_json(runs / f"{slug(variant)}-start" / "before.json", typ="series")["sets"]
        assert table.loc[variant, "heldout_before"] == pytest.approx(100 * (1 - before["heldout"]["top1"]), abs=0.005)
    assert table.loc["stage 3 frozen", "params_m"] < table.loc["full", "params_m"]
    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob("*.json")}
    run_studies([path], out)
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("*.json")} == stamps  # nothing exported, trained, scored
    path.write_text(FINETUNE.replace("lr = 0.01", "lr = 0.02"))
    run_studies([path], out)
    assert pd.read_json(runs / "full-seed0" / "run.json", typ="series")["recipe"]["lr"] == 0.02


def _histories(runs: Path, variant: str) -> dict:
    return {p: p.stat().st_mtime_ns for p in runs.glob(f"{slug(variant)}-seed*/history.csv")}


@pytest.mark.slow
def test_what_decides_a_fine_tuning_result_decides_what_is_done_again(tmp_path):
    """Another calibration re-exports the ablated start and retrains its runs alone; another evaluation folder
    is scored on the trained weights without training; without the weights, that is one clear error."""
    import shutil

    path = _finetune_study(tmp_path)
    out = tmp_path / "reports"
    run_studies([path], out)
    runs = out / "finetune" / "runs"
    full, frozen = _histories(runs, "full"), _histories(runs, "stage 3 frozen")
    path.write_text(FINETUNE.replace("calibration_samples_per_class = 2", "calibration_samples_per_class = 1"))
    run_studies([path], out)
    assert _histories(runs, "full") == full and _histories(runs, "stage 3 frozen").keys() == frozen.keys()
    assert all(_histories(runs, "stage 3 frozen")[p] != t for p, t in frozen.items())
    full = _histories(runs, "full")
    shutil.copytree(tmp_path / "samples", tmp_path / "more")
    with_more = FINETUNE.replace('evaluate = ["../samples"]', 'evaluate = ["../samples", "../more"]')
    path.write_text(with_more.replace("calibration_samples_per_class = 2", "calibration_samples_per_class = 1"))
    run_studies([path], out)
    assert _histories(runs, "full") == full
    record = pd.read_json(runs / "full-seed1" / "run.json", typ="series")
    assert record["after"]["more"] == record["after"]["samples"]  # the same images, the same weights
    assert "more_after" in pd.read_csv(out / "finetune.csv").columns
    (runs / "full-seed1" / "final.pth").unlink()
    (tmp_path / "more2").mkdir()
    shutil.copy(next((tmp_path / "samples").iterdir()), tmp_path / "more2")
    path.write_text(with_more.replace('"../more"]', '"../more", "../more2"]').replace(
        "calibration_samples_per_class = 2", "calibration_samples_per_class = 1"))
    with pytest.raises(SeprobeError, match="full-seed1: final.pth is not here to score on"):
        run_studies([path], out)


@pytest.mark.parametrize("old,new,message", [
    ('ablate = { stage = 3, mode = "mean" }', 'ablate = { mode = "mean" }',
     "variants[1].ablate: needs one of stage and blocks"),
    ('ablate = { stage = 3, mode = "mean" }', 'ablate = { stage = 3, blocks = "SE_3_1", mode = "mean" }',
     "variants[1].ablate: needs one of stage and blocks"),
    ('ablate = { stage = 3, mode = "mean" }', 'ablate = { stage = 3, mode = "zero" }',
     "variants[1].ablate.mode: unknown mode 'zero'; valid: 'identity', 'mean', 'constant'"),
    ('ablate = { stage = 3, mode = "mean" }', 'ablate = { stage = 3, mode = "mean", order = 1 }',
     "variants[1].ablate.order: unknown field"),
    ("holdout_per_class = 2\n", "", "training.labels: applies with holdout_per_class"),
    ("holdout_per_class = 2", "holdout_per_class = 0", "training.holdout_per_class: invalid value 0"),
    ('evaluate = ["../samples"]', 'evaluate = "../samples"', "training.evaluate: invalid value '../samples'"),
    ("freeze_bn = true", 'freeze_bn = "yes"', "budgets.tiny.freeze_bn: invalid value 'yes'"),
    ("clip_grad_norm = 5.0", "clip_grad_norm = -5.0",
     "budgets.tiny.clip_grad_norm: invalid value -5.0 .a float.; expected a finite number > 0"),
    ("num_workers = 0", "num_workers = -1", "budgets.tiny.num_workers: invalid value -1"),
    ('evaluate = ["../samples"]', 'evaluate = ["../samples", "../x/samples"]',
     "training.evaluate: two evaluation sets named 'samples'"),
    ('model = "se_resnet20_cifar"\nknobs = { num_classes = 1000 }\nablate',
     'model = "timm:tf_mobilenetv3_small_100"\nknobs = { num_classes = 1000 }\nablate',
     "model knobs .num_classes. apply to seprobe models"),
])
def test_a_bad_fine_tuning_study_is_refused_before_any_run(tmp_path, old, new, message):
    if "timm:" in new:
        pytest.importorskip("timm")
    _refused(_finetune_study(tmp_path), FINETUNE, old, new, message)


def test_start_weights_and_ablate_belong_to_training_studies(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('title = "t"\nkind = "complexity"\n[[variants]]\nlabel = "a"\nmodel = "se_resnet50"\n'
                    'ablate = { stage = 5, mode = "mean" }\n')
    with pytest.raises(SeprobeError, match="variants.0..ablate: applies to training studies only"):
        load_study(path)


def test_the_step_time_is_measured_at_the_batch_the_runs_trained_with(monkeypatch):
    """A budget without batch_size trains large images at the published 256 (He et al. 2016), not at 128."""
    import types

    import seprobe.cost.timing as timing
    from seprobe.models.factory import ModelSource
    from seprobe.studies.study_file import Budget
    from seprobe.studies.trained import _step_times

    seen = []

    def fake(models, pairs, setup, progress=None):
        seen.append(setup)
        summary = pd.DataFrame({"model": list(models), "median_ms": [1.0] * len(models)})
        return types.SimpleNamespace(summary=summary, ratios=pd.DataFrame())

    monkeypatch.setattr(timing, "time_models", fake)
    study = types.SimpleNamespace(training=types.SimpleNamespace(baseline="a"))
    sources = {"a": ModelSource("resnet20_cifar", "random", {})}
    for recipe, side, batch in (({}, 224, 256), ({}, 32, 128), ({"batch_size": 64}, 224, 64)):
        _step_times(study, sources, side, Budget("b", recipe))
        assert (seen[-1].batch_size, seen[-1].input_size) == (batch, side)
