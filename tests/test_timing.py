"""The timing method itself (warm-up untimed, A/B interleaving, per-image figures), not wall-clock thresholds."""

import pytest
import torch
from torch import nn

from seprobe import SeprobeError, build_model
from seprobe.cost.timing import TimingSetup, interleaved, pair_ratios, summarise, time_models
from seprobe.report.complexity import timing_notes


def test_warmup_is_not_timed_and_order_is_interleaved():
    calls, timed = [], []

    def make(name):
        return lambda: calls.append(name)

    def clock(fn):
        fn()
        timed.append(calls[-1])
        return 0.5 if calls[-1] == "A" else 0.25

    records = interleaved({"A": make("A"), "B": make("B")}, clock, warmup=2, repeats=3)
    assert calls == ["A", "B"] * 5                  # 2 warm-up rounds, then 3 timed rounds
    assert timed == ["A", "B"] * 3                  # only the last 3 rounds went through the clock
    assert [r["name"] for r in records] == ["A", "B"] * 3
    summary = summarise(records, batch_size=4).set_index("name")
    assert summary.loc["A", "median_ms"] == 500 and summary.loc["A", "per_image_ms"] == 125
    assert summary.loc["B", "images_per_s"] == 16 and summary.loc["A", "repeats"] == 3
    ratios = pair_ratios(records, [("A", "B")])
    assert ratios.loc[0, "ratio_median"] == 2 and ratios.loc[0, "pairs"] == 3


def test_time_models_on_cpu_reports_every_figure():
    models = {"se_resnet18": build_model("se_resnet18"), "resnet18": build_model("resnet18")}
    setup = TimingSetup(batch_size=2, input_size=32, warmup=1, repeats=3)
    result = time_models(models, [("se_resnet18", "resnet18")], setup)
    s = result.summary
    assert set(s["mode"]) == {"inference", "train"} and len(s) == 4
    for col in ("median_ms", "q1_ms", "q3_ms", "min_ms", "max_ms", "per_image_ms", "images_per_s"):
        assert (s[col] > 0).all(), col
    assert (s["per_image_ms"] == s["median_ms"] / 2).all()
    assert (s["repeats"] == 3).all() and (s["batch_size"] == 2).all()
    assert len(result.ratios) == 2 and (result.ratios["ratio_median"] > 0).all()
    assert len(result.records) == 2 * 2 * 3
    assert result.threads >= 1 and result.date and result.process_peak_mb > 0
    assert "peak resident" in timing_notes(result)[-1]


class _OOMAbove(nn.Module):
    """Raises CUDA's out-of-memory error for batches above ``limit``, like a GPU would."""

    def __init__(self, limit):
        super().__init__()
        self.limit, self.lin = limit, nn.Linear(3, 2)

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.lin(x.mean((2, 3)))


def test_out_of_memory_names_the_batch_or_backs_off():
    with pytest.raises(SeprobeError, match="out of GPU memory at batch size 8; valid: a smaller batch_size"):
        time_models({"m": _OOMAbove(2)}, [], TimingSetup(batch_size=8, input_size=32, warmup=0, repeats=1))
    result = time_models({"m": _OOMAbove(2)}, [], TimingSetup(batch_size=8, input_size=32, warmup=0, repeats=1,
                                                              auto_batch=True))
    assert result.setup.batch_size == 2 and (result.summary["batch_size"] == 2).all()
    assert result.halved == (8, 4)
    assert timing_notes(result)[0] == "batch size 8, then 4 ran out of GPU memory; measured at 2"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when no GPU exists")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(SeprobeError, match="device .cuda., but torch sees no CUDA GPU"):
        TimingSetup(device="cuda")


@pytest.mark.parametrize("kwargs,match", [({"batch_size": 0}, "invalid batch_size 0"),
                                          ({"repeats": 0}, "invalid repeats 0"),
                                          ({"device": "tpu"}, "invalid device 'tpu'; valid: cpu, cuda, cuda:N"),
                                          ({"compile": True, "warmup": 0}, "with compile: the first call compiles")])
def test_bad_setup(kwargs, match):
    with pytest.raises(SeprobeError, match=match):
        TimingSetup(**kwargs)
