"""``tests/benchmarks/gpu_checks.py --dry-run``: every part of the GPU check runs on the CPU and lands in the report
and the CSV; a budget too small for any part skips them all, each with a line, and still writes both files."""

import csv
import math
import subprocess
import sys

import pytest

from .helpers import ROOT, env_without_defaults

SCRIPT = ROOT / "tests" / "benchmarks" / "gpu_checks.py"
COLUMNS = ["part", "variant", "model", "mode", "metric", "value", "unit", "batch_size", "paper", "timm"]
VARIANTS = ["bf16-channels_last", "float32", "compile-bf16-channels_last"]


def run(out, *args):
    result = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out), *args], capture_output=True,
                            text=True, env=env_without_defaults(OMP_NUM_THREADS="1"), cwd=out, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    with open(out / "timing_gpu.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    return result, rows, (out / "timing_gpu.md").read_text()


@pytest.mark.slow
def test_the_dry_run_measures_every_part(tmp_path):
    result, rows, report = run(tmp_path)
    assert "[gpu_checks" in result.stderr  # progress lines
    assert all(math.isfinite(float(r["value"])) and float(r["value"]) > 0 for r in rows)
    metrics = {(r["part"], r["variant"], r["mode"], r["metric"]) for r in rows}
    for variant in VARIANTS:
        for mode in ("train", "inference"):
            for metric in ("median_ms", "q1_ms", "q3_ms", "images_per_s", "ratio_median", "ratio_q1", "ratio_q3"):
                assert ("timing", variant, mode, metric) in metrics, (variant, mode, metric)
    pairs = {r["model"] for r in rows if r["metric"] == "ratio_median" and r["part"] == "timing"}
    assert pairs == {"se_resnet18/resnet18"}
    for variant in VARIANTS[:2]:
        for mode in ("train", "inference"):
            for metric in ("share_pct.all.se", "share_pct.forward.squeeze", "share_pct.forward.1x1 convs",
                           "share_pct.forward.sigmoid", "share_pct.forward.scale", "op_ms_per_step"):
                assert ("profile", variant, mode, metric) in metrics, (variant, mode, metric)
        assert ("profile", variant, "train", "share_pct.backward.1x1 convs") in metrics
    shares = {(r["variant"], r["mode"], r["metric"]): float(r["value"]) for r in rows if r["part"] == "profile"}
    for (variant, mode, metric), total in shares.items():
        if metric == "share_pct.all.se":  # the parts add up to SE's total, which is a share
            parts = [v for (w, m, k), v in shares.items() if (w, m) == (variant, mode) and k.count(".") == 2
                     and not k.endswith(".se")]
            assert sum(parts) == pytest.approx(total) and total < 100
    train = {(r["model"], r["metric"]) for r in rows if r["part"] == "train"}
    assert {(m, f"images_per_s.epoch{e}") for m in ("resnet20_cifar", "se_resnet20_cifar") for e in (1, 2)} <= train
    assert ("se_resnet20_cifar/resnet20_cifar", "ratio_last_epoch") in train
    assert {r["metric"] for r in rows if r["part"] == "torchrun"} == {"finished", "images_per_s.epoch1", "wall_s"}
    assert {(r["variant"], r["metric"]) for r in rows if r["part"] == "nccl"} == {
        ("gloo 1 rank DDP", m) for m in ("all_reduce_ok", "images_per_s", "wall_s")}
    assert "CPU" in report and "1.10" in report and "## Skipped, stopped or failed\n\n- nothing" in report
    for heading in ("## Timing", "## Where SE's time goes", "## Training throughput"):
        assert heading in report
    assert not list(tmp_path.glob(".*"))  # no temporary file left beside the outputs


@pytest.mark.slow
def test_a_budget_too_small_skips_every_part_with_a_line(tmp_path):
    _, rows, report = run(tmp_path, "--budget-s", "1")
    assert rows == []
    skipped = [line for line in report.splitlines() if line.startswith("- ") and ": skipped," in line]
    assert [line.split(":")[0][2:] for line in skipped] == [
        "timing bf16-channels_last", "profile bf16-channels_last", "timing float32", "profile float32", "train",
        "torchrun", "nccl", "timing compile-bf16-channels_last"]
