"""GPU checks of what SE costs, in one command: SE-ResNet-50 against ResNet-50 on one CUDA device.

    python tests/benchmarks/gpu_checks.py [--out reports/] [--budget-s 420] [--dry-run]

Parts, in this order (before each, the time left of ``--budget-s`` is compared with the part's estimate; a part that
would not fit is skipped, with a line in the report; child processes are killed at the budget):

1. **timing** (:func:`seprobe.time_models`): a training step (``zero_grad``, forward under autocast,
   ``out.float().mean().backward()``) and inference (``torch.inference_mode``) of SE-ResNet-50 and ResNet-50,
   interleaved A, B, A, B in one process, timed with CUDA events after untimed warm-up; the SE/plain ratio of each
   neighbouring pair, median and quartiles. Variants: bf16 autocast + channels_last at batch 256; float32 (cuDNN's
   default TF32 convolutions) at batch 256; ``torch.compile`` (bf16, channels_last), in a child process, last.
   Out-of-memory halves the batch (``auto_batch``), said in the report.
2. **profile** (``torch.profiler``): the share of SE-ResNet-50's CUDA kernel time spent in its SE blocks. Forward:
   a forward pre-hook and a forward hook on every SE module open and close a ``record_function`` range; the ops
   directly inside it are classed by name (mean: squeeze, conv2d: the two 1x1 convs, relu, sigmoid, mul: scale,
   anything else: other). Backward: the autograd node run for a forward op carries that op's sequence number, so
   each backward op is given to the SE op that recorded it. An op's time is the kernel time it launched itself
   (``self_device_time_total``) summed over the ops below it; the total is that of every op in the profiled steps.
3. **train**: ``seprobe.train`` images/s of resnet20_cifar and se_resnet20_cifar, 2 epochs of 500 images per class
   at batch 128 (epoch 1 holds the warm-up, epoch 2 is the steady figure), on ../shared/data/cifar10 if present,
   else on random 32x32 class-folder images written to a temporary folder.
4. **torchrun**: ``python -m torch.distributed.run --standalone --nproc_per_node 1 -m seprobe train ... --device
   cuda`` (1 epoch): that it finished, and its images/s. With one rank seprobe takes its one-process path (no
   process group, no DDP: ``seprobe.distributed.distributed_session``), hence part 5.
5. **nccl**: under the same launcher, this script joins a one-rank NCCL process group (gloo on the CPU), checks an
   ``all_reduce`` and times DDP training steps of se_resnet20_cifar: the NCCL/DDP path that one GPU allows.

Outputs: ``timing_gpu.md`` and ``timing_gpu.csv`` (one row per measurement) in ``--out``, rewritten together
(:func:`seprobe.io.output_set`) after every part: a run stopped at any moment leaves the last complete pair.
``--dry-run`` runs every path on the CPU with tiny sizes (se_resnet18 / resnet18 at 64 pixels, batch 2, 1 warm-up
and 2 timed iterations, a few training steps; ``torch.compile`` with the eager backend: dynamo's tracing without
inductor's C++ build, which takes minutes on 2 cores). Progress lines go to stderr. Exit status 1 if a part failed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import functools
import io
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

T0 = time.monotonic()
#: the parent's start on the wall clock, so that child processes' progress lines count from it too
START = float(os.environ.get("GPU_CHECKS_START", time.time()))
ROOT = Path(__file__).resolve().parents[2]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10"
COLUMNS = ["part", "variant", "model", "mode", "metric", "value", "unit", "batch_size", "paper", "timm"]
RESERVE_S = 5                      # kept back for writing the outputs after a child process is stopped
PLAIN_CIFAR, SE_CIFAR = "resnet20_cifar", "se_resnet20_cifar"
#: timm's published benchmarks (huggingface/pytorch-image-models, results/): images/s of resnet50 over seresnet50
TIMM = {
    "train": (1218.01 / 971.79, "timm, RTX 3090, AMP, NHWC, training, batch 512 / 384: 1218.01 vs 971.79 images/s "
              "(results/benchmark-train-amp-nhwc-pt112-cu113-rtx3090.csv, commit 5e7d47ca)"),
    "inference": (5088.39 / 4275.51, "timm, RTX 4090, AMP, NHWC, inference, batch 512: 5088.39 vs 4275.51 images/s "
                  "(results/benchmark-infer-amp-nhwc-pt240-cu124-rtx4090.csv, commit 7479d451)"),
}
EAGER = {"bf16-channels_last": dict(dtype="bfloat16", channels_last=True), "float32": dict(dtype="float32")}
COMPILED = ("compile-bf16-channels_last", dict(dtype="bfloat16", channels_last=True, compile=True))
SE_CLASSES = (("mean", "squeeze"), ("amax", "squeeze"), ("conv", "1x1 convs"), ("relu", "relu"),
              ("threshold", "relu"), ("sigmoid", "sigmoid"), ("mul", "scale"))
RANGE = "gpu_checks:"              # the record_function prefix of an SE block's forward


@dataclass(frozen=True)
class Sizes:
    """How big each part runs: timing and profile (``se_model`` and its plain twin, ``batch`` images of
    ``input_size`` pixels), training (``train_batch``, ``per_class`` images per class, ``epochs``, DDP steps), and
    the seconds each kind of part needs at least (1 where none is given)."""

    device: str
    se_model: str
    batch: int
    input_size: int
    warmup: int
    repeats: int
    profile_steps: int
    train_batch: int
    per_class: int
    val_per_class: int
    epochs: int
    ddp_steps: int
    estimate_s: dict = field(default_factory=dict)  # kind of part -> seconds it needs, at least


GPU = Sizes(device="cuda", se_model="se_resnet50", batch=256, input_size=224, warmup=5, repeats=20, profile_steps=3,
            train_batch=128, per_class=500, val_per_class=10, epochs=2, ddp_steps=30,
            estimate_s={"timing": 45, "profile": 30, "train": 60, "torchrun": 45, "nccl": 30, "compile": 150})
DRY = Sizes(device="cpu", se_model="se_resnet18", batch=2, input_size=64, warmup=1, repeats=2, profile_steps=1,
            train_batch=16, per_class=4, val_per_class=2, epochs=2, ddp_steps=3)


def log(msg: str) -> None:
    print(f"[gpu_checks {time.time() - START:5.0f} s] {msg}", file=sys.stderr, flush=True)


def row(rows: list, **fields) -> None:
    """Append one measurement; non-finite values (peak GPU memory on the CPU) are left out."""
    if math.isfinite(float(fields["value"])):
        rows.append({c: fields.get(c, "") for c in COLUMNS} | {"value": float(fields["value"])})


def paper_figures(sizes: Sizes) -> dict:
    """Sec. 4 of the paper: ms per forward+backward of a 256-image minibatch on 8 Titan X GPUs, by model."""
    from seprobe.paper import by_key

    se, plain = by_key("Section 4: SE-ResNet-50"), by_key("Section 4: ResNet-50")
    if sizes.se_model != se.model:
        return {}
    return {se.model: se.gpu_train_ms, plain.model: plain.gpu_train_ms, "ratio": se.gpu_train_ms / plain.gpu_train_ms}


# --- 1. timing ----------------------------------------------------------------------------------------------------


def timing_rows(sizes: Sizes, variant: str, fields: dict, modes: tuple[str, ...]) -> tuple[list, list]:
    from seprobe import ModelSource, TimingSetup, time_models
    from seprobe.cost.timing import plain_pairs

    models, pairs = plain_pairs({sizes.se_model: ModelSource(sizes.se_model)})
    setup = TimingSetup(device=sizes.device, batch_size=sizes.batch, input_size=sizes.input_size, warmup=sizes.warmup,
                        repeats=sizes.repeats, modes=modes, auto_batch=True, **fields)
    result = time_models(models, pairs, setup, progress=log)
    paper, rows = paper_figures(sizes), []
    for r in result.summary.itertuples():
        for metric, unit in (("median_ms", "ms"), ("q1_ms", "ms"), ("q3_ms", "ms"), ("images_per_s", "images/s"),
                             ("peak_memory_mb", "MiB")):
            ref = paper.get(r.model, "") if (metric, r.mode) == ("median_ms", "train") else ""
            row(rows, part="timing", variant=variant, model=r.model, mode=r.mode, metric=metric,
                value=getattr(r, metric), unit=unit, batch_size=r.batch_size, paper=ref)
    for r in result.ratios.itertuples():
        for metric in ("ratio_median", "ratio_q1", "ratio_q3"):
            main = metric == "ratio_median" and paper
            row(rows, part="timing", variant=variant, model=f"{r.model}/{r.baseline}", mode=r.mode, metric=metric,
                value=getattr(r, metric), unit="SE/plain time", batch_size=result.setup.batch_size,
                paper=round(paper["ratio"], 3) if main and r.mode == "train" else "",
                timm=round(TIMM[r.mode][0], 3) if main else "")
    notes = [f"timing {variant}: batch {b} ran out of GPU memory, halved" for b in result.halved]
    return rows, notes


def compile_child(sizes: Sizes, dry: bool) -> None:
    """The compile variant, one mode at a time, each printed as a JSON line (kept if the budget stops the rest)."""
    import torch

    if dry:
        torch.compile = functools.partial(torch.compile, backend="eager")
    for mode in ("train", "inference"):
        rows, notes = timing_rows(sizes, COMPILED[0], COMPILED[1], (mode,))
        print(json.dumps({"rows": rows, "notes": notes}), flush=True)


def compile_part(sizes: Sizes, dry: bool, budget) -> tuple[list, list]:
    cmd = [sys.executable, __file__, "--child", "compile"] + ["--dry-run"] * dry
    out, seconds, stopped = run_child(cmd, budget.left() - RESERVE_S)
    rows, notes = [], []
    for line in out.splitlines():
        if line.startswith("{"):
            got = json.loads(line)
            rows += got["rows"]
            notes += got["notes"]
    modes = sorted({r["mode"] for r in rows})
    if stopped:
        notes.append(f"timing {COMPILED[0]}: stopped at the budget after {seconds:.0f} s (compilation included), "
                     f"with {', '.join(modes) or 'no mode'} measured")
    elif not rows:
        raise RuntimeError("the compile child printed no result")
    return rows, notes


# --- 2. profile ---------------------------------------------------------------------------------------------------


def se_category(name: str) -> str:
    op = name.removeprefix("autograd::engine::evaluate_function: ").removeprefix("aten::").lower()
    return next((cat for prefix, cat in SE_CLASSES if op.startswith(prefix)), "other")


def se_shares(events, steps: int, on_cuda: bool) -> tuple[dict, float]:
    """Percent of all op time per (phase, SE op class), and the total op time per step in ms (method: docstring)."""
    from torch.autograd import DeviceType

    ops = [e for e in events if e.device_type == DeviceType.CPU]
    own = (lambda e: e.self_device_time_total) if on_cuda else (lambda e: e.self_cpu_time_total)

    def tree(e):
        return own(e) + sum(tree(c) for c in e.cpu_children)

    def below(e):
        yield e
        for c in e.cpu_children:
            yield from below(c)

    total = sum(own(e) for e in ops if not e.name.startswith(RANGE))
    time_of, class_of_seq = defaultdict(float), {}
    for block in (e for e in ops if e.name.startswith(RANGE)):
        for op in block.cpu_children:
            cat = se_category(op.name)
            time_of["forward", cat] += tree(op)
            class_of_seq |= {d.sequence_nr: cat for d in below(op) if d.sequence_nr >= 0}
    for e in ops:
        if e.name.startswith("autograd::engine::evaluate_function:") and e.sequence_nr in class_of_seq:
            time_of["backward", class_of_seq[e.sequence_nr]] += tree(e)
    shares = {k: 100 * v / total for k, v in time_of.items() if v > 0}
    for phase in ("forward", "backward"):
        if any(p == phase for p, _ in shares):
            shares[phase, "se"] = sum(v for (p, c), v in shares.items() if p == phase)
    shares["all", "se"] = 100 * sum(time_of.values()) / total
    return shares, total / steps / 1e3


def profile_rows(sizes: Sizes, variant: str, fields: dict) -> tuple[list, list]:
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from seprobe import SqueezeExcite, build_model
    from seprobe.devices import autocast_dtype

    fmt = torch.channels_last if fields.get("channels_last") else torch.contiguous_format
    model = build_model(sizes.se_model).to(sizes.device, memory_format=fmt)
    x = torch.randn(sizes.batch, 3, sizes.input_size, sizes.input_size, device=sizes.device)
    x = x.contiguous(memory_format=fmt)
    dtype = autocast_dtype(fields["dtype"])
    autocast = (lambda: torch.autocast(sizes.device, dtype=dtype)) if dtype else contextlib.nullcontext
    ranges = {}

    def open_range(module, args):
        ranges[module] = record_function(RANGE + module.name)
        ranges[module].__enter__()

    def close_range(module, args, output):
        ranges.pop(module).__exit__(None, None, None)

    for m in model.modules():
        if isinstance(m, SqueezeExcite):
            m.register_forward_pre_hook(open_range)
            m.register_forward_hook(close_range)

    def step(mode):
        if mode == "train":
            model.zero_grad(set_to_none=True)
            with autocast():
                out = model(x)
            out.float().mean().backward()
        else:
            with torch.inference_mode(), autocast():
                model(x)

    on_cuda = sizes.device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * on_cuda
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    rows = []
    for mode in ("train", "inference"):
        model.train(mode == "train")
        for _ in range(sizes.warmup):
            step(mode)
        sync()
        with profile(activities=activities) as prof:
            for _ in range(sizes.profile_steps):
                step(mode)
            sync()
        events = prof.events()
        shares, ms = se_shares(events, sizes.profile_steps, on_cuda)
        unit = "% of CUDA kernel time" if on_cuda else "% of CPU op time"
        for (phase, cat), value in sorted(shares.items()):
            row(rows, part="profile", variant=variant, model=sizes.se_model, mode=mode,
                metric=f"share_pct.{phase}.{cat}", value=value, unit=unit, batch_size=sizes.batch)
        row(rows, part="profile", variant=variant, model=sizes.se_model, mode=mode, metric="op_ms_per_step",
            value=ms, unit="ms (CUDA kernels)" if on_cuda else "ms (CPU ops)", batch_size=sizes.batch)
        if on_cuda:  # the same total read off the kernels themselves: a check that no kernel is counted twice
            from torch.autograd import DeviceType

            kernels = sum(e.device_time_total for e in events
                          if e.device_type == DeviceType.CUDA and not e.name.startswith(RANGE))
            row(rows, part="profile", variant=variant, model=sizes.se_model, mode=mode, metric="kernel_ms_per_step",
                value=kernels / sizes.profile_steps / 1e3, unit="ms (CUDA device events)", batch_size=sizes.batch)
        log(f"profile {variant} {mode}: SE {shares['all', 'se']:.1f} % of {ms:.1f} ms per step")
    return rows, []


# --- 3.-5. training -----------------------------------------------------------------------------------------------


def training_data(sizes: Sizes, tmp: Path) -> tuple[Path, str]:
    """CIFAR-10's class folders from ../shared if present, else random 32x32 images in ``tmp``."""
    if (CIFAR / "train").is_dir() and (CIFAR / "test").is_dir():
        return CIFAR, f"CIFAR-10 ({CIFAR})"
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", sizes.per_class), ("test", sizes.val_per_class)):
        for c in range(10):
            folder = tmp / "data" / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return tmp / "data", "random 32x32 images in 10 class folders (../shared/data/cifar10 is not here)"


def train_rows(sizes: Sizes, data: Path) -> tuple[list, list]:
    import seprobe
    from seprobe.distributed import distributed_session

    rows, speed = [], {}
    recipe = {"epochs": sizes.epochs, "batch_size": sizes.train_batch}
    with tempfile.TemporaryDirectory(prefix="gpu_checks-train-") as tmp:
        for model in (PLAIN_CIFAR, SE_CIFAR):
            log(f"train {model}: {sizes.epochs} epochs, {sizes.per_class} images per class, batch {sizes.train_batch}")
            with distributed_session(sizes.device):
                result = seprobe.train(model, data, Path(tmp) / model, samples_per_class=sizes.per_class,
                                       val_samples_per_class=sizes.val_per_class, recipe=recipe, progress=False)
            history = result.run.history
            for epoch, ips in zip(history["epoch"], history["images_per_s"], strict=True):
                row(rows, part="train", variant="float32 eager", model=model, mode="train",
                    metric=f"images_per_s.epoch{epoch}", value=ips, unit="images/s", batch_size=sizes.train_batch)
            speed[model] = history["images_per_s"].iloc[-1]
    row(rows, part="train", variant="float32 eager", model=f"{SE_CIFAR}/{PLAIN_CIFAR}", mode="train",
        metric="ratio_last_epoch", value=speed[PLAIN_CIFAR] / speed[SE_CIFAR], unit="SE/plain time",
        batch_size=sizes.train_batch)
    return rows, []


def child_env() -> dict:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "GPU_CHECKS_START": str(START)}


def run_child(cmd: list[str], timeout: float, cwd: Path = ROOT) -> tuple[str, float, bool]:
    """Run ``cmd`` (stderr passed through), killed with its whole process group after ``timeout`` seconds.

    Returns its stdout, its seconds and whether it was stopped; a non-zero exit raises."""
    if timeout <= 0:
        return "", 0.0, True
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=cwd, env=child_env(), start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except BaseException as e:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        if not isinstance(e, subprocess.TimeoutExpired):
            raise
        return out, time.monotonic() - start, True
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:8])} ... exited with status {proc.returncode}")
    return out, time.monotonic() - start, False


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]


def torchrun_rows(sizes: Sizes, data: Path, budget) -> tuple[list, list]:
    with tempfile.TemporaryDirectory(prefix="gpu_checks-torchrun-") as tmp:
        cmd = TORCHRUN + ["-m", "seprobe", "train", "--model", SE_CIFAR, "--data", str(data),
                          "--samples-per-class", str(sizes.per_class), "--val-samples-per-class",
                          str(sizes.val_per_class), "--epochs", "1", "--batch-size", str(sizes.train_batch),
                          "--device", sizes.device, "--out", str(Path(tmp) / "run"), "--format", "json"]
        log("torchrun: " + " ".join(cmd[1:]))
        out, seconds, stopped = run_child(cmd, budget.left() - RESERVE_S, cwd=Path(tmp))
    if stopped:
        return [], [f"torchrun: stopped at the budget after {seconds:.0f} s"]
    history = json.loads(out[out.index("{"):])["tables"]["history"]
    rows, common = [], dict(part="torchrun", variant="1 rank float32 eager", model=SE_CIFAR, mode="train",
                            batch_size=sizes.train_batch)
    row(rows, **common, metric="finished", value=1, unit="yes")
    row(rows, **common, metric="images_per_s.epoch1", value=history[-1]["images_per_s"], unit="images/s")
    row(rows, **common, metric="wall_s", value=seconds, unit="s (launcher and start-up included)")
    return rows, []


def ddp_child(sizes: Sizes) -> None:
    """Under torchrun: one rank's process group (NCCL on CUDA, gloo on the CPU), an all_reduce, DDP steps."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from seprobe import build_model

    rank, world = int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"])
    cuda = sizes.device.startswith("cuda")
    device = torch.device(f"cuda:{rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        ones = torch.ones(4, device=device)
        dist.all_reduce(ones)
        reduced = bool((ones == world).all())
        model = torch.nn.parallel.DistributedDataParallel(build_model(SE_CIFAR).to(device),
                                                          device_ids=[rank] if cuda else None)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x = torch.randn(sizes.train_batch, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (sizes.train_batch,), device=device)

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        for _ in range(2):
            step()
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        sync()
        start = time.perf_counter()
        for _ in range(sizes.ddp_steps):
            step()
        sync()
        ips = sizes.ddp_steps * sizes.train_batch / (time.perf_counter() - start)
        print(json.dumps({"backend": dist.get_backend(), "world_size": world, "all_reduce_ok": reduced,
                          "images_per_s": ips}), flush=True)
    finally:
        dist.destroy_process_group()


def nccl_rows(sizes: Sizes, dry: bool, budget) -> tuple[list, list]:
    cmd = TORCHRUN + [__file__, "--child", "ddp"] + ["--dry-run"] * dry
    log("nccl: " + " ".join(cmd[1:]))
    out, seconds, stopped = run_child(cmd, budget.left() - RESERVE_S)
    if stopped:
        return [], [f"nccl: stopped at the budget after {seconds:.0f} s"]
    got = json.loads(out[out.index("{"):].splitlines()[0])
    if not got["all_reduce_ok"]:
        raise RuntimeError(f"all_reduce over {got['world_size']} rank(s) gave a wrong sum")
    rows, common = [], dict(part="nccl", variant=f"{got['backend']} {got['world_size']} rank DDP", model=SE_CIFAR,
                            mode="train", batch_size=sizes.train_batch)
    row(rows, **common, metric="all_reduce_ok", value=1, unit="yes")
    row(rows, **common, metric="images_per_s", value=got["images_per_s"], unit="images/s")
    row(rows, **common, metric="wall_s", value=seconds, unit="s (launcher and start-up included)")
    return rows, []


# --- the report ---------------------------------------------------------------------------------------------------


def environment(sizes: Sizes, dry: bool, budget_s: float) -> dict:
    import torch

    import seprobe

    on_cuda = sizes.device.startswith("cuda")
    return {
        "device": torch.cuda.get_device_name(0) if on_cuda else f"CPU {platform.processor() or platform.machine()}",
        "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "tf32": f"cuDNN convolutions {torch.backends.cudnn.allow_tf32}, matmul {torch.backends.cuda.matmul.allow_tf32}",
        "python": platform.python_version(), "seprobe": seprobe.__version__, "threads": torch.get_num_threads(),
        "date": datetime.date.today().isoformat(), "budget_s": budget_s, "dry_run": dry,
    }


def fmt(v, spec=".1f") -> str:
    return "" if v in ("", None) else format(float(v), spec)


def report(rows: list, notes: list, env: dict, sizes: Sizes, plain: str, done: list, todo: list) -> str:
    """The Markdown report of the rows so far."""
    get = {(r["part"], r["variant"], r["model"], r["mode"], r["metric"]): r for r in rows}

    def val(*key):
        return get[key]["value"] if key in get else ""

    se, pair, paper = sizes.se_model, f"{sizes.se_model}/{plain}", paper_figures(sizes)
    out = [f"# SE's cost on a GPU: {se} against {plain}{' (dry run, CPU, tiny sizes)' if env['dry_run'] else ''}",
           "",
           f"Device: {env['device']}; torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}; TF32: "
           f"{env['tf32']}; Python {env['python']}, seprobe {env['seprobe']}, {env['threads']} CPU threads; "
           f"{env['date']}. Made by `python tests/benchmarks/gpu_checks.py` (its docstring states the method), "
           f"budget {env['budget_s']:.0f} s, {time.monotonic() - T0:.0f} s used. Parts done: "
           f"{', '.join(done) or 'none'}{'; not run yet: ' + ', '.join(todo) if todo else ''}.",
           "",
           "Paper (Sec. 4): 190 ms (ResNet-50) vs 209 ms (SE-ResNet-50) per forward+backward of a 256-image minibatch "
           "on a server with 8 Titan X GPUs (32 images per GPU): ratio 209 / 190 = 1.10. timm: "
           f"{TIMM['train'][1]}: ratio {TIMM['train'][0]:.2f}; {TIMM['inference'][1]}: ratio "
           f"{TIMM['inference'][0]:.2f} (timm's ResNets stride at the 3x3 conv; seprobe's at the 1x1, as the paper).",
           "", "## Timing: interleaved A, B, A, B, median of the timed iterations (interquartile range)", "",
           f"| variant | mode | batch | {plain} ms | {se} ms | SE/plain time | paper | timm | {plain} img/s | "
           f"{se} img/s | peak MiB {plain} / {se} |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for variant in [*EAGER, COMPILED[0]]:
        for mode in ("train", "inference"):
            if ("timing", variant, pair, mode, "ratio_median") not in get:
                continue
            t = {(m, metric): val("timing", variant, m, mode, metric) for m in (plain, se, pair)
                 for metric in ("median_ms", "q1_ms", "q3_ms", "images_per_s", "peak_memory_mb",
                                "ratio_median", "ratio_q1", "ratio_q3")}
            ms = {m: f"{fmt(t[m, 'median_ms'])} ({fmt(t[m, 'q1_ms'])}-{fmt(t[m, 'q3_ms'])})" for m in (plain, se)}
            ref = get["timing", variant, pair, mode, "ratio_median"]
            mem = " / ".join(fmt(t[m, "peak_memory_mb"], ".0f") for m in (plain, se)) if t[se, "peak_memory_mb"] else ""
            out.append(f"| {variant} | {mode} | {ref['batch_size']} | {ms[plain]} | {ms[se]} | "
                       f"{fmt(t[pair, 'ratio_median'], '.3f')} ({fmt(t[pair, 'ratio_q1'], '.3f')}-"
                       f"{fmt(t[pair, 'ratio_q3'], '.3f')}) | {ref['paper']} | {ref['timm']} | "
                       f"{fmt(t[plain, 'images_per_s'], '.0f')} | {fmt(t[se, 'images_per_s'], '.0f')} | {mem} |")
    if paper:
        out += ["", f"The paper's per-step times (8 GPUs, 32 images each): {plain} {paper[plain]} ms, {se} "
                f"{paper[se]} ms; only their ratio compares with one GPU's batch of 256."]
    cats = ["squeeze", "1x1 convs", "relu", "sigmoid", "scale", "other"]
    unit = "CUDA kernel time" if sizes.device.startswith("cuda") else "CPU op time"
    out += ["", f"## Where SE's time goes: torch.profiler, {se}, % of all {unit}", "",
            "Forward: `record_function` ranges opened and closed by forward pre- and post-hooks on every SE module, "
            "the ops inside classed by name; backward: autograd nodes given to those ops by sequence number. "
            "`1 - 1/ratio` is the share of the SE model's time that the timing above says SE takes.", "",
            f"| variant | mode | {' | '.join(cats)} | SE forward | SE backward | SE total | 1 - 1/ratio | "
            "ms per step |", "|---|---|" + "---|" * (len(cats) + 5)]
    for variant in EAGER:
        for mode in ("train", "inference"):
            k = ("profile", variant, se, mode)
            if (*k, "share_pct.all.se") not in get:
                continue
            by_cat = [sum(val(*k, f"share_pct.{p}.{c}") or 0 for p in ("forward", "backward")) for c in cats]
            ratio = val("timing", variant, pair, mode, "ratio_median")
            implied = 100 * (1 - 1 / ratio) if ratio else ""
            out.append(f"| {variant} | {mode} | {' | '.join(fmt(c, '.2f') for c in by_cat)} | "
                       f"{fmt(val(*k, 'share_pct.forward.se'), '.2f')} | "
                       f"{fmt(val(*k, 'share_pct.backward.se'), '.2f')} | "
                       f"{fmt(val(*k, 'share_pct.all.se'), '.2f')} | {fmt(implied, '.2f')} | "
                       f"{fmt(val(*k, 'op_ms_per_step'), '.2f')} |")
    out += ["", f"## Training throughput: {env.get('data', 'no data')}", "",
            "| run | model | images/s, epoch 1 | images/s, epoch 2 |", "|---|---|---|---|"]
    for model in (PLAIN_CIFAR, SE_CIFAR):
        if ("train", "float32 eager", model, "train", "images_per_s.epoch1") in get:
            out.append(f"| `seprobe.train`, float32, batch {sizes.train_batch} | {model} | "
                       f"{fmt(val('train', 'float32 eager', model, 'train', 'images_per_s.epoch1'), '.0f')} | "
                       f"{fmt(val('train', 'float32 eager', model, 'train', 'images_per_s.epoch2'), '.0f')} |")
    for r in rows:
        if (r["part"], r["metric"]) == ("torchrun", "images_per_s.epoch1"):
            out.append(f"| `torchrun ... -m seprobe train` ({r['variant']}), finished | {SE_CIFAR} | "
                       f"{r['value']:.0f} | |")
        if (r["part"], r["metric"]) == ("nccl", "images_per_s"):
            out.append(f"| DDP steps on random data ({r['variant']}), all_reduce checked | {SE_CIFAR} | | "
                       f"{r['value']:.0f} (steady) |")
    ratio = val("train", "float32 eager", f"{SE_CIFAR}/{PLAIN_CIFAR}", "train", "ratio_last_epoch")
    if ratio:
        out += ["", f"SE/plain time per training image, last epoch: {ratio:.3f} (the paper's ImageNet step: 1.10)."]
    if any(r["part"] in ("torchrun", "nccl") for r in rows):
        out += ["", "torchrun with one rank runs seprobe's one-process path (no process group); the DDP row is this "
                "script's own one-rank process group (NCCL on CUDA, gloo on the CPU)."]
    out += ["", "## Skipped, stopped or failed", ""] + ([f"- {n}" for n in notes] or ["- nothing"])
    return "\n".join(out) + "\n"


def write_outputs(out_dir: Path, rows: list, text: str) -> None:
    from seprobe.io import atomic_write_text, output_set

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with output_set():
        atomic_write_text(out_dir / "timing_gpu.csv", buf.getvalue())
        atomic_write_text(out_dir / "timing_gpu.md", text)


class Budget:
    def __init__(self, seconds: float):
        self.end = T0 + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "reports", help="folder for timing_gpu.md / .csv")
    p.add_argument("--budget-s", type=float, default=420, help="seconds for the whole run (default 420)")
    p.add_argument("--dry-run", action="store_true", help="every path on the CPU at tiny sizes")
    p.add_argument("--child", choices=("compile", "ddp"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sizes = DRY if args.dry_run else GPU
    if args.child == "compile":
        return compile_child(sizes, args.dry_run) or 0
    if args.child == "ddp":
        return ddp_child(sizes) or 0

    from seprobe import SeprobeError
    from seprobe.io import check_output_dir

    try:
        check_output_dir(args.out)
    except SeprobeError as e:
        print(f"gpu_checks: {e}", file=sys.stderr)
        return 2
    import torch

    from seprobe.models.factory import ModelSource

    if sizes.device == "cuda" and not torch.cuda.is_available():
        print("gpu_checks: torch sees no CUDA GPU; valid: a GPU machine, or --dry-run", file=sys.stderr)
        return 2
    budget, env = Budget(args.budget_s), environment(sizes, args.dry_run, args.budget_s)
    plain = ModelSource(sizes.se_model).plain().name
    rows, notes, done, failed = [], [], [], False
    with tempfile.TemporaryDirectory(prefix="gpu_checks-") as tmp:
        data = None

        def need_data():
            nonlocal data
            if data is None:
                data, env["data"] = training_data(sizes, Path(tmp))
            return data

        parts = []  # (name, kind, function), in the order they run
        for v, f in EAGER.items():
            parts += [(f"timing {v}", "timing", functools.partial(timing_rows, sizes, v, f, ("inference", "train"))),
                      (f"profile {v}", "profile", functools.partial(profile_rows, sizes, v, f))]
        parts += [("train", "train", lambda: train_rows(sizes, need_data())),
                  ("torchrun", "torchrun", lambda: torchrun_rows(sizes, need_data(), budget)),
                  ("nccl", "nccl", lambda: nccl_rows(sizes, args.dry_run, budget)),
                  (f"timing {COMPILED[0]}", "compile", lambda: compile_part(sizes, args.dry_run, budget))]
        names = [name for name, _, _ in parts]
        for i, (name, kind, run) in enumerate(parts):
            left, need = budget.left(), sizes.estimate_s.get(kind, 1)
            if left < need + RESERVE_S:
                notes.append(f"{name}: skipped, {max(left, 0):.0f} s of the budget left, it needs about {need:.0f} s")
                log(notes[-1])
            else:
                log(f"{name}: starting, {left:.0f} s left")
                try:
                    got, part_notes = run()
                except Exception as e:
                    traceback.print_exc()
                    failed = True
                    notes.append(f"{name}: failed: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}")
                else:
                    rows += got
                    notes += part_notes
                    done.append(name)
                if sizes.device.startswith("cuda"):
                    torch.cuda.empty_cache()
            write_outputs(args.out, rows, report(rows, notes, env, sizes, plain, done, names[i + 1:]))
    log(f"wrote {args.out / 'timing_gpu.md'} and {args.out / 'timing_gpu.csv'} ({len(rows)} rows)")
    print(report(rows, notes, env, sizes, plain, done, []))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
