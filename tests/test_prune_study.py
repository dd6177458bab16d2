"""A pruning study (a training study with ``[pruning]`` and variants with ``prune``): run end to end on tiny
data, its sweep's costs read against the pruned networks rebuilt from the committed records, its runs fine-tuned
from the pruned starts, the whole rebuilt from what is committed (no weights), and its file refused when wrong."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from seprobe import SeprobeError
from seprobe.models.registry import build_model
from seprobe.studies.regenerate import run_studies
from seprobe.studies.study_file import load_study

from .conftest import randomize_batchnorm
from .helpers import write_class_folders

CLASSES = [f"c{i}" for i in range(10)]
STUDY = """title = "tiny pruning"
kind = "training"
[training]
data = "../data"
weights = "../start.pth"
seeds = [0, 1]
baseline = "unpruned"
also_against = "random, 60 %"
budget = "tiny"
calibration_samples_per_class = 2
[pruning]
criteria = ["gate", "l1", "random"]
keep_macs = [0.8, 0.6]
inference_batch_size = 4
[budgets.tiny]
epochs = 1
batch_size = 10
lr = 0.01
threads = 1
[[variants]]
label = "unpruned"
model = "se_resnet20_cifar"
[[variants]]
label = "gate, 60 %"
model = "se_resnet20_cifar"
prune = {{ criterion = "gate", keep_macs = 0.6 }}
[[variants]]
label = "random, 60 %"
model = "se_resnet20_cifar"
prune = {{ criterion = "random", keep_macs = 0.6 }}
{extra}"""


def _study(tmp_path, extra=""):
    write_class_folders(tmp_path / "data" / "train", dict.fromkeys(CLASSES, 3), 32, seed=1)
    write_class_folders(tmp_path / "data" / "test", dict.fromkeys(CLASSES, 2), 32, seed=2)
    torch.manual_seed(0)
    torch.save(randomize_batchnorm(build_model("se_resnet20_cifar"), seed=4).state_dict(), tmp_path / "start.pth")
    (tmp_path / "studies").mkdir()
    path = tmp_path / "studies" / "tiny.toml"
    path.write_text(STUDY.format(extra=extra))
    return path


@pytest.mark.slow
def test_a_pruning_study_sweeps_fine_tunes_and_is_rebuilt_from_what_is_committed(tmp_path):
    import seprobe

    path = _study(tmp_path)
    out = tmp_path / "reports"
    run_studies([path], out)
    runs = out / "tiny" / "runs"
    sweep = pd.read_csv(out / "tiny" / "sweep.csv")
    assert list(zip(sweep["criterion"], sweep["keep_macs"], strict=True)) == [
        (c, f) for c in ("gate", "l1", "random") for f in (0.8, 0.6)]
    full = seprobe.complexity("se_resnet20_cifar").results[0]
    for row in sweep.itertuples():
        folder = runs / "sweep" / row.plan
        written = seprobe.complexity("se_resnet20_cifar", weights=str(folder / "network.pth")).results[0]
        assert row.macs_kept == pytest.approx(written.total / full.total, abs=5e-5) and row.macs_kept <= row.keep_macs
        assert row.top1_err_before == pytest.approx(100 * (1 - seprobe.evaluate(
            "se_resnet20_cifar", str(folder / "network.pth"), tmp_path / "data" / "test", progress=False).top1),
            abs=0.006)
        assert row.inference_ms > 0 and row.inference_ratio > 0
    # the fine-tuned arms start from the sweep's networks at 60 %
    for label, plan in (("gate-60", "gate-keep-macs-0-6"), ("random-60", "random-keep-macs-0-6")):
        for seed in (0, 1):
            record = json.loads((runs / f"{label}-seed{seed}" / "run.json").read_text())
            assert record["start"] == f"sweep/{plan}/network.pth"
    table = pd.read_csv(out / "tiny.csv").set_index("variant")
    assert table.loc["gate, 60 %", "params_m"] < table.loc["unpruned", "params_m"]
    md = (out / "tiny.md").read_text()
    assert "### Pruned, before fine-tuning" in md and "tiny/pruning.png" in md
    assert (out / "tiny" / "pruning.png").stat().st_size > 0
    first = sweep.drop(columns=["inference_ms", "inference_ratio"])
    for p in runs.rglob("*.pth"):
        p.unlink()  # not committed
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("*.csv")}
    run_studies([path], out)
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("history.csv")} == {
        p: t for p, t in before.items() if p.name == "history.csv"}  # nothing trained again
    pd.testing.assert_frame_equal(pd.read_csv(out / "tiny" / "sweep.csv").drop(
        columns=["inference_ms", "inference_ratio"]), first)


@pytest.mark.parametrize("extra, message", [
    ('[[variants]]\nlabel = "x"\nmodel = "se_resnet20_cifar"\nprune = { criterion = "gates", keep_macs = 0.5 }',
     "unknown criterion 'gates'"),
    ('[[variants]]\nlabel = "x"\nmodel = "se_resnet20_cifar"\nprune = { criterion = "gate" }',
     "no target given"),
    ('[[variants]]\nlabel = "x"\nmodel = "se_resnet20_cifar"\nweights = "../start.pth"\n'
     'prune = { criterion = "gate", keep_macs = 0.5 }', "a pruned start is [training] weights pruned"),
])
def test_a_bad_pruning_study_is_refused_when_read(tmp_path, extra, message):
    path = _study(tmp_path, extra)
    with pytest.raises(SeprobeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_study(path)


def test_a_bad_sweep_is_refused_when_read(tmp_path):
    path = _study(tmp_path)
    path.write_text(path.read_text().replace("keep_macs = [0.8, 0.6]", "keep_macs = [0.8, 1.6]"))
    with pytest.raises(SeprobeError, match=r"pruning.keep_macs"):
        load_study(path)
