"""Forward and forward+backward time of SE models against their SE-free counterparts.

Method (as ``torch.utils.benchmark`` and timm's ``benchmark.py`` do it): warm-up iterations that are not timed,
then repeated timed iterations, CUDA synchronised around each one (CUDA events time the GPU work). Models that
are compared run interleaved in one process, A, B, A, B, ..., so that machine drift (clocks, temperature,
other load) falls on both alike, and the SE/plain ratio is taken per pair of neighbouring iterations.
Reported: median with interquartile range, min, max and the number of repeats.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import platform
import resource
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
import torch
from torch import nn

from ..devices import autocast_dtype
from ..errors import SeprobeError
from .settings import TimingSetup

if TYPE_CHECKING:
    from ..models.factory import ModelSource



def interleaved(fns: dict[str, Callable[[], None]], clock: Callable[[Callable[[], None]], float],
                warmup: int, repeats: int) -> list[dict]:
    """Run every ``fn`` ``warmup`` times untimed, then ``repeats`` times timed, in the order A, B, A, B ...

    Returns one record per timed call: ``name``, ``repeat`` and ``seconds`` (as ``clock(fn)`` measured it).
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    records = []
    for i in range(repeats):
        for name, fn in fns.items():
            records.append({"name": name, "repeat": i, "seconds": clock(fn)})
    return records


def wall_clock(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cuda_clock(fn: Callable[[], None]) -> float:
    """GPU time of ``fn`` between two CUDA events, the device synchronised before and after."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def summarise(records: list[dict], batch_size: int) -> pd.DataFrame:
    """Median, quartiles, min, max and count per name; per-image time and images/s from the median."""
    df = pd.DataFrame(records)
    g = df.groupby("name", sort=False)["seconds"]
    out = pd.DataFrame({
        "median_ms": g.median() * 1e3, "q1_ms": g.quantile(0.25) * 1e3, "q3_ms": g.quantile(0.75) * 1e3,
        "min_ms": g.min() * 1e3, "max_ms": g.max() * 1e3, "repeats": g.count(),
    }).reset_index()
    out["per_image_ms"] = out["median_ms"] / batch_size
    out["images_per_s"] = 1e3 * batch_size / out["median_ms"]
    return out


def pair_ratios(records: list[dict], pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """For each (SE model, plain model) pair: the time ratio of each repeat's neighbouring iterations."""
    df = pd.DataFrame(records).pivot(index="repeat", columns="name", values="seconds")
    rows = []
    for a, b in pairs:
        r = df[a] / df[b]
        rows.append({"model": a, "baseline": b, "ratio_median": r.median(), "ratio_q1": r.quantile(0.25),
                     "ratio_q3": r.quantile(0.75), "overhead_pct": 100 * (r.median() - 1), "pairs": len(r)})
    return pd.DataFrame(rows)


@dataclass
class TimingResult:
    setup: TimingSetup
    device_name: str
    threads: int
    date: str
    summary: pd.DataFrame   # one row per (model, mode)
    ratios: pd.DataFrame    # one row per (SE model, plain model, mode)
    records: pd.DataFrame   # every timed iteration
    halved: tuple[int, ...] = ()           # batch sizes that ran out of GPU memory (auto_batch), in order
    process_peak_mb: float | None = None   # on the CPU: the whole process's peak resident set, MiB


def _step(model: nn.Module, x: torch.Tensor, mode: str, autocast) -> Callable[[], None]:
    if mode == "inference":
        def run():
            with torch.inference_mode(), autocast():
                model(x)
    else:
        def run():
            model.zero_grad(set_to_none=True)
            with autocast():
                out = model(x)
            out.float().mean().backward()
    return run


def _prepare(models: dict[str, nn.Module], setup: TimingSetup) -> tuple[dict[str, nn.Module], Callable]:
    fmt = torch.channels_last if setup.channels_last else torch.contiguous_format
    prepared = {}
    for name, m in models.items():
        m = m.to(setup.device, memory_format=fmt)
        prepared[name] = torch.compile(m) if setup.compile else m
    dtype = autocast_dtype(setup.dtype)
    device_type = setup.device.split(":")[0]
    if dtype is None:
        return prepared, contextlib.nullcontext
    return prepared, lambda: torch.autocast(device_type, dtype=dtype)


def _peak_memory_mb(model: nn.Module, run: Callable[[], None], device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    return float("nan")


def plain_pairs(sources: Mapping[str, ModelSource], *, add_plain: bool = True
                ) -> tuple[dict[str, nn.Module], list[tuple[str, str]]]:
    """The models of ``sources`` (label -> source) for :func:`time_models`, and their (SE label, plain label) pairs.

    Each SE model is paired with its SE-free counterpart (:meth:`~seprobe.models.factory.ModelSource.plain`)
    when a source of that model is in ``sources``, else, with ``add_plain``, with the counterpart itself, added
    under its name. With ``add_plain`` a counterpart comes right after the first SE model paired with it; without,
    the models keep the order of ``sources``.
    """
    from ..models.factory import get_network

    listed = {s.name: label for label, s in sources.items() if s.spec is not None and not s.spec.has_se}
    models, pairs = {}, []
    for label, source in sources.items():
        if label not in models:
            models[label] = get_network(source).model
        plain = source.plain()
        if plain is None or (plain.name not in listed and not add_plain):
            continue
        partner = listed.get(plain.name, plain.name)
        if add_plain and partner not in models:
            models[partner] = get_network(sources[partner] if plain.name in listed else plain).model
        pairs.append((label, partner))
    return models, pairs


def time_models(models: dict[str, nn.Module], pairs: list[tuple[str, str]], setup: TimingSetup,
                progress: Callable[[str], None] = lambda msg: None) -> TimingResult:
    """Time every model in every mode, interleaved; ``pairs`` lists (SE model, plain model) to compare.

    On CUDA out-of-memory: a :class:`SeprobeError` naming the batch size, or with ``auto_batch`` the batch
    halved until it fits (the result says which batch size was used).
    """
    if setup.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    prepared, autocast = _prepare(models, setup)
    halved = []
    while True:
        try:
            result = _time_at(prepared, pairs, setup, autocast, progress)
            break
        except torch.cuda.OutOfMemoryError:
            failed = setup.batch_size
            for m in prepared.values():
                m.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            if not setup.auto_batch or failed == 1:
                raise SeprobeError(f"out of GPU memory at batch size {failed}; valid: a smaller batch_size, "
                                   "or auto_batch to halve it until it fits", argument="batch_size") from None
            setup = dataclasses.replace(setup, batch_size=failed // 2)
            halved.append(failed)
            progress(f"batch size {failed} ran out of GPU memory; trying {setup.batch_size}")
        except (MemoryError, RuntimeError) as e:
            if not isinstance(e, MemoryError) and "memory" not in str(e).lower():
                raise
            raise SeprobeError(f"out of memory at batch size {setup.batch_size}, input {setup.input_size}x"
                               f"{setup.input_size} on {setup.device}; valid: a smaller batch_size or "
                               "input_size", argument="batch_size") from None
    return dataclasses.replace(result, halved=tuple(halved))


def _time_at(models, pairs, setup: TimingSetup, autocast, progress) -> TimingResult:
    fmt = torch.channels_last if setup.channels_last else torch.contiguous_format
    x = torch.randn(setup.batch_size, 3, setup.input_size, setup.input_size, device=setup.device)
    x = x.contiguous(memory_format=fmt)
    clock = cuda_clock if setup.device.startswith("cuda") else wall_clock
    summaries, ratios, records_all = [], [], []
    for mode in setup.modes:
        for m in models.values():
            m.train(mode == "train")
        steps = {name: _step(m, x, mode, autocast) for name, m in models.items()}
        progress(f"timing {mode}: {', '.join(steps)} interleaved, {setup.warmup} warm-up + {setup.repeats} timed "
                 f"iterations each, batch {setup.batch_size}")
        records = interleaved(steps, clock, setup.warmup, setup.repeats)
        summary = summarise(records, setup.batch_size)
        summary["peak_memory_mb"] = [_peak_memory_mb(models[n], steps[n], setup.device) for n in summary["name"]]
        summary.insert(1, "mode", mode)
        summaries.append(summary)
        if pairs:
            r = pair_ratios(records, pairs)
            r.insert(2, "mode", mode)
            ratios.append(r)
        records_all += [{**rec, "mode": mode} for rec in records]
    summary = pd.concat(summaries, ignore_index=True).rename(columns={"name": "model"})
    summary.insert(2, "batch_size", setup.batch_size)
    cpu = not setup.device.startswith("cuda")
    return TimingResult(
        setup=setup,
        device_name=torch.cuda.get_device_name(setup.device) if setup.device.startswith("cuda")
        else f"CPU {platform.processor() or platform.machine()}",
        threads=torch.get_num_threads(),
        date=datetime.date.today().isoformat(),
        summary=summary,
        ratios=pd.concat(ratios, ignore_index=True) if ratios else pd.DataFrame(),
        records=pd.DataFrame(records_all),
        process_peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if cpu else None,
    )


def step_times(models: dict[str, nn.Module], baseline: str, setup: TimingSetup,
               mode: str = "train") -> dict[str, dict]:
    """Each model's training step (forward + backward at ``setup``'s batch; ``mode="inference"``: its forward
    pass without gradients), the models interleaved, and its time ratio to ``baseline``'s, pair by pair: label
    -> ``train_step_ms`` (median), ``step_ratio`` (median of the pairs' ratios; ``None`` for the baseline), or
    ``inference_ms`` and ``inference_ratio``."""
    setup = dataclasses.replace(setup, modes=(mode,))
    timing = time_models(models, [(m, baseline) for m in models if m != baseline], setup)
    ms = timing.summary.set_index("model")["median_ms"]
    ratio = timing.ratios.set_index("model")["ratio_median"] if not timing.ratios.empty else pd.Series(dtype=float)
    time_key, ratio_key = ("train_step_ms", "step_ratio") if mode == "train" else ("inference_ms", "inference_ratio")
    return {m: {time_key: round(float(ms[m]), 1 if mode == "train" else 2),
                ratio_key: round(float(ratio[m]), 3) if m in ratio else None} for m in models}
