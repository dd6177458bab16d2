"""``train``: a model, data folders and a recipe in; weights, a history and a summary out; resumable bitwise.

What one call does, in order: validate the recipe against the world and the out folder, list and check the
data, then (only then) decode the images, move the model to the device and train ``recipe.epochs`` epochs of
``N // batch_size`` steps (:mod:`.batches`), evaluating on every validation image after each epoch.

Outputs in ``out`` (rank 0 writes, each file atomically): ``checkpoint.pth`` at each epoch's end, every
``checkpoint_every`` steps and on Ctrl-C / SIGTERM (then ``KeyboardInterrupt`` propagates:
:func:`seprobe.interrupts.stop_requests`); ``history.csv``
after each epoch; at the end ``final.pth`` (the model's bare ``state_dict()``), ``summary.md`` and
``curves.png`` / ``curves.svg``. A new run refuses a non-empty ``out``; ``resume=True`` continues from its
checkpoint, and on the CPU ends with the weights and history (timing columns aside) of an uninterrupted run.
A full disk is one line, the last checkpoint intact; the temporary files of a run killed while it wrote are
removed by the next run in the folder, under its lock.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..distributed import World, current_world
from ..errors import SeprobeError
from ..interrupts import StopRequest, stop_requests
from ..io import LOCK, atomic_write, atomic_write_text, check_output_dir, folder_lock, output_set
from . import checkpoint
from .batches import Batching, epoch_order, eval_batches, files_train, memory_train
from .data import DataListing, Datasets, Split, TrainData, data_paths, decode, list_data
from .recipe import Recipe, learning_rate
from .steps import Stepper, param_groups

CHECKPOINT, FINAL, HISTORY = "checkpoint.pth", "final.pth", "history.csv"
#: every file a run writes in its folder
RUN_FILES = (CHECKPOINT, FINAL, HISTORY, "summary.md", "curves.png", "curves.svg")
#: the temporary file :func:`~seprobe.io.atomic_write` writes beside one of them (``mkstemp``'s 8 characters),
#: left behind by a run killed (SIGKILL) while it wrote
LEFTOVER = re.compile(rf"\.(?:{'|'.join(map(re.escape, RUN_FILES))})\.[a-z0-9_]{{8}}\.tmp")
#: history.csv: ``lr`` is the learning rate of the epoch's last step; ``train_*`` are running figures over the
#: epoch's steps (the network changing as it goes), ``val_*`` those of the network at the epoch's end.
COLUMNS = ["epoch", "train_loss", "train_top1", "val_top1", "val_top5", "lr", "seconds", "images_per_s"]
TIMING = ["seconds", "images_per_s"]
SYNC_EVERY = 20  # steps between reading the losses back from the device (and the progress bar's update)


@dataclass(frozen=True)
class TrainResult:
    history: pd.DataFrame          # one row per epoch, COLUMNS
    paths: dict[str, Path]         # what was written, by name
    final: dict                    # the last epoch's row
    best: dict                     # the row of the best val_top1
    data: dict                     # Datasets.describe(), with mean, std and decode_seconds
    #: ``resume`` found the run finished: nothing was trained or written (``data`` is the listing's description)
    already_finished: bool = False


# --- checks before any work ----------------------------------------------------------------------------------------

def check_start(out: str | Path, resume: bool, world: World, sync_bn: bool, meta: dict | None = None) -> None:
    """Refuse a run that cannot start: ``out`` not empty for a new run, or without a checkpoint to resume;
    ``sync_bn`` off CUDA; a ``meta`` that is not plain data. Cheap: callers check before any work."""
    if resume:
        check_run_folder(out)
    else:
        check_output_dir(out, "out")
        out = Path(out)
        if out.is_dir() and any(p.name != LOCK and not LEFTOVER.fullmatch(p.name) for p in out.iterdir()):
            raise SeprobeError(f"out {str(out)!r} is not empty; valid: a new or empty folder, or resume to continue "
                               "the run in it", argument=("out", "resume"))
    if sync_bn and not world.device.startswith("cuda"):
        raise SeprobeError(f"sync_bn on device {world.device!r}; valid: sync_bn on CUDA only (SyncBatchNorm)",
                           argument="sync_bn")
    try:
        json.dumps(meta or {}, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise SeprobeError(f"invalid meta ({e}); valid: a dict of plain values (str, numbers, bools, lists, "
                           "dicts)") from None


def check_run_folder(folder: str | Path) -> None:
    """Refuse to resume in ``folder`` unless it is a writable folder holding a run's checkpoint (in words of
    the run folder: a resume names no out)."""
    if str(folder) == "":
        raise SeprobeError("cannot resume: the run folder is empty (''); valid: the folder of a run started by "
                           "seprobe's training")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SeprobeError(f"cannot resume in {str(folder)!r}: it is a file; valid: the folder of a run started "
                           f"by seprobe's training (it holds {CHECKPOINT})")
    checkpoint.check_exists(folder / CHECKPOINT)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SeprobeError(f"cannot resume in {str(folder)!r}: the folder is not writable; valid: a run folder "
                           "this user may write to")


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove the temporary files of :data:`LEFTOVER` in ``folder`` (nothing else: not a file of the user's),
    which only a killed run leaves; the caller holds the folder's lock, so no live run is writing them."""
    found = [p for p in folder.iterdir() if LEFTOVER.fullmatch(p.name) and p.is_file()] if folder.is_dir() else []
    for p in found:
        p.unlink(missing_ok=True)
    return found


def check_batch(recipe: Recipe, world: World, images: int) -> int:
    """The steps of an epoch of ``images`` training images; a global batch that does not split evenly over the
    ranks, or that is larger than the images, is refused."""
    if recipe.batch_size % world.size:
        raise SeprobeError(f"invalid batch_size {recipe.batch_size} for {world.size} ranks; valid: a multiple of "
                           f"the world size {world.size} (batch_size is the global batch)", argument="batch_size")
    return steps_per_epoch(images, recipe.batch_size)


def steps_per_epoch(images: int, batch_size: int) -> int:
    if images < batch_size:
        raise SeprobeError(f"invalid batch_size {batch_size} for {images} training images; valid: at most "
                           f"{images} (the last incomplete batch of an epoch is dropped)", argument="batch_size")
    return images // batch_size


# --- the run -------------------------------------------------------------------------------------------------------

@contextmanager
def _disk(what: str, kept: str):
    """A full disk (or a file size limit) while writing ``what`` is one line saying what is ``kept``."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        reason = checkpoint.write_failure(e)
        if reason is None:
            raise
        raise SeprobeError(f"cannot write {what}: {reason}; valid: room for it on its file system; {kept}") \
            from None


@contextmanager
def _memory(run: _Run, doing: str):
    """Out of memory while ``doing`` is one line naming the batch (a traceback for anything else)."""
    try:
        yield
    except torch.OutOfMemoryError:
        raise SeprobeError(f"out of memory on {run.device} {doing} at batch_size {run.recipe.batch_size} "
                           f"({run.recipe.batch_size // run.world.size} per rank); valid: a smaller batch_size",
                           argument="batch_size") from None


class _Run:
    """The state of one training run on this rank, and the steps that move it."""

    def __init__(self, model: nn.Module, datasets: Datasets, recipe: Recipe, out: Path, world: World, *,
                 record: dict, progress: bool):
        self.recipe, self.datasets, self.out, self.world, self.record = recipe, datasets, out, world, record
        self.progress = progress and world.is_main
        self.device = torch.device(world.device)
        self.batching = Batching(recipe.batch_size, world, self.device, datasets.request.num_workers)
        with _memory(self, "moving the in-memory images to the device"):
            self.train_split, self.val_split = (_to(s, self.device) for s in (datasets.train, datasets.val))
        self.spe = steps_per_epoch(len(datasets.train), recipe.batch_size)
        self.net = model.to(self.device)
        if recipe.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        runner = self._wrapped()  # may replace self.net (SyncBatchNorm): the optimiser takes the final modules
        self.stepper = Stepper(self.net, runner, recipe, self.device)
        self.epoch, self.step, self.history = 0, 0, []
        self.sums = {"loss": 0.0, "hits": 0, "seen": 0, "seconds": 0.0}
        self.generator_state: torch.Tensor | None = None
        self.pending: list[tuple[torch.Tensor, torch.Tensor, int]] = []

    def _wrapped(self) -> nn.Module:
        runner = self.net
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if self.world.distributed:
            if self.recipe.sync_bn:
                self.net = nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
            ids = [self.device.index] if self.device.type == "cuda" else None
            runner = nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        return torch.compile(runner) if self.recipe.compile else runner

    # --- checkpoints ---

    def state(self) -> dict:
        return {"record": self.record, "model": self.net.state_dict(),
                "optimizer": self.stepper.optimizer.state_dict(), "scaler": self.stepper.scaler.state_dict(),
                "rng": self.world.gather(checkpoint.rng_state()), "generator": self.generator_state,
                "epoch": self.epoch, "step": self.step, "sums": dict(self.sums), "history": list(self.history),
                "world_size": self.world.size}

    def save(self) -> None:
        self.check_finite()
        state = self.state()  # every rank: the random states are gathered
        if self.world.is_main:
            checkpoint.save(self.out / CHECKPOINT, state)

    def last_good(self) -> str:
        """Where the last good state is, as an error says it (the checkpoint, if one was written)."""
        if (self.out / CHECKPOINT).is_file():
            return f"{CHECKPOINT} holds the last good state"
        return f"no {CHECKPOINT} was written (this happened before the first)"

    def check_finite(self) -> None:
        """Refuse to write as good a network whose weights or buffers are not finite: the loss can stay finite a
        step longer than they do (an update to inf after the last step, BatchNorm's running variance)."""
        for name, tensor in self.net.state_dict().items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                when = (f"at the end of epoch {self.epoch}" if self.step == 0 and self.epoch else
                        f"at epoch {self.epoch + 1}, step {self.step} of {self.spe}")
                raise SeprobeError(f"non-finite {name} in the network {when}; valid: finite weights (try a lower lr, "
                                   f"float32 or a warm-up); {self.last_good()}")

    def restore(self, state: dict) -> None:
        """Continue from ``state`` (:func:`checkpoint.load` checked its entries, :func:`checkpoint.check_fits`
        its tensors against this network): whatever torch still refuses in it is one line naming the file."""
        try:
            self.net.load_state_dict(state["model"])
            self.stepper.optimizer.load_state_dict(state["optimizer"])
            self.stepper.scaler.load_state_dict(state["scaler"])
            rng = state["rng"]
            checkpoint.set_rng_state(rng[self.world.rank] if len(rng) == self.world.size else rng[0])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            reason = str(e).splitlines()[0] if str(e) else ""
            raise checkpoint.ResumeRefused(f"checkpoint {str(self.out / CHECKPOINT)!r} cannot be restored "
                                           f"({type(e).__name__}: {reason}); valid: a checkpoint.pth written by "
                                           "seprobe's training for this network") from None
        self.epoch, self.step, self.history = state["epoch"], state["step"], list(state["history"])
        self.sums, self.generator_state = dict(state["sums"]), state["generator"]

    # --- training ---

    def batches(self, order: torch.Tensor, generator: torch.Generator):
        steps = range(self.step, self.spe)
        if self.train_split.images is not None:
            return memory_train(self.train_split, self.datasets, order, generator, steps, batching=self.batching)
        loader = files_train(self.train_split, self.datasets.request.preprocessing, order, steps,
                             seed=self.recipe.seed, epoch=self.epoch, batching=self.batching)
        return ((x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)) for x, y in loader)

    def flush(self) -> None:
        """Read the pending losses back: add them to the epoch's sums (over all ranks), stop at a non-finite one."""
        if not self.pending:
            return
        losses = torch.stack([loss for loss, _, _ in self.pending]).double().cpu().tolist()
        counts = [n for _, _, n in self.pending]
        hits = int(torch.stack([h for _, h, _ in self.pending]).sum())
        first = self.step - len(self.pending)
        per_rank = self.world.gather([v * n for v, n in zip(losses, counts, strict=True)])
        (hits,) = self.world.sum(hits)
        self.pending = []
        for k, values in enumerate(zip(*per_rank, strict=True)):
            total = sum(values)
            if not math.isfinite(total):
                raise SeprobeError(f"non-finite training loss at epoch {self.epoch + 1}, step {first + k + 1} of "
                                   f"{self.spe}; valid: a finite loss (try a lower lr, float32 or a warm-up); "
                                   f"{self.last_good()}")
            self.sums["loss"] += total
        self.sums["hits"] += hits
        self.sums["seen"] += sum(counts) * self.world.size

    def train_epoch(self, stop: StopRequest, bar) -> None:
        order, generator = epoch_order(self.recipe.seed, self.epoch, len(self.train_split))
        if self.step and self.generator_state is not None:
            generator.set_state(self.generator_state)
        self.net.train()
        if self.recipe.freeze_bn:
            for m in self.net.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        start = began = time.perf_counter()
        done_before = self.sums["seen"]
        every = self.recipe.checkpoint_every
        for x, y in self.batches(order, generator):
            lr = learning_rate(self.recipe, self.epoch * self.spe + self.step, self.spe)
            loss, hits = self._step(x, y, lr)
            self.pending.append((loss, hits, len(y)))
            self.step += 1
            global_step = self.epoch * self.spe + self.step
            stopping = bool(self.world.heartbeat(int(stop.requested))) if self.world.distributed else stop.requested
            save = stopping or (every is not None and global_step % every == 0 and self.step < self.spe)
            if save or self.step % SYNC_EVERY == 0 or self.step == self.spe:
                self.flush()
                bar.update(self.step - bar.n)
                rate = (self.sums["seen"] - done_before) / max(time.perf_counter() - began, 1e-9)
                bar.set_postfix(loss=f"{self.sums['loss'] / max(self.sums['seen'], 1):.4f}", img_s=f"{rate:.0f}")
            if save:
                self.generator_state = generator.get_state()
                self.sums["seconds"] += time.perf_counter() - start
                start = time.perf_counter()
                self.save()
                if stopping:
                    raise KeyboardInterrupt
        self.sums["seconds"] += time.perf_counter() - start

    def _step(self, x, y, lr):
        with _memory(self, "training"):
            return self.stepper.step(x, y, lr)

    def end_epoch(self) -> dict:
        start = time.perf_counter()
        with _memory(self, "evaluating"):
            hits1, hits5, seen = self.stepper.evaluate(eval_batches(
                self.val_split, self.datasets, self.datasets.request.preprocessing, self.batching))
        hits1, hits5, seen = self.world.sum(hits1, hits5, seen)
        train_seconds = self.sums["seconds"]
        row = {"epoch": self.epoch + 1, "train_loss": self.sums["loss"] / self.sums["seen"],
               "train_top1": self.sums["hits"] / self.sums["seen"], "val_top1": hits1 / seen,
               "val_top5": hits5 / seen, "lr": learning_rate(self.recipe, (self.epoch + 1) * self.spe - 1, self.spe),
               "seconds": train_seconds + time.perf_counter() - start,
               "images_per_s": self.sums["seen"] / max(train_seconds, 1e-9)}
        self.history.append(row)
        self.epoch, self.step, self.generator_state = self.epoch + 1, 0, None
        self.sums = {"loss": 0.0, "hits": 0, "seen": 0, "seconds": 0.0}
        self.save()
        if self.world.is_main:
            with _disk(repr(str(self.out / HISTORY)), f"{CHECKPOINT} holds the run so far: resume once there is room"):
                atomic_write_text(self.out / HISTORY, self.frame().to_csv(index=False))
        return row

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.history, columns=COLUMNS)


def _to(split: Split, device: torch.device) -> Split:
    images = split.images.to(device) if split.images is not None else None
    return Split(split.labels.to(device), images=images, files=split.files)


def _progress_bar(run: _Run):
    from tqdm.auto import tqdm

    return tqdm(total=run.spe, initial=run.step, desc=f"epoch {run.epoch + 1}/{run.recipe.epochs}", unit="step",
                disable=not run.progress, leave=False)


def train(model: nn.Module, data: TrainData | DataListing | Datasets, recipe: Recipe, out: str | Path, *,
          world: World | None = None, resume: bool = False, progress: bool = True,
          meta: dict | None = None, final: Callable[[dict], Any] | None = None,
          info: dict | None = None) -> TrainResult:
    """Train ``model`` (built by the caller, its head sized for ``list_data(data).num_classes``) on ``data`` (a
    :class:`TrainData`, its :class:`DataListing` from :func:`list_data`, or its :class:`Datasets` from
    :func:`load_data`) with ``recipe``, writing into ``out`` (see the module docstring). Every refusal comes before the
    images are decoded. ``meta``: a plain record of the model (name, knobs) kept with the run and compared on resume;
    ``info``: plain values kept with it and not compared (where the starting weights were; the data's folders are
    added, as absolute paths).
    ``final``: what ``final.pth`` holds, a function of the trained state dict (the state dict itself by default; an
    exported ablated network's record around it, so that it loads as the export did). ``world``: the torchrun world
    (default: the current :func:`~seprobe.distributed.distributed_session`'s, or one process on the CPU)."""
    world = world if world is not None else current_world()
    out, meta = Path(out), dict(meta or {})
    check_start(out, resume, world, recipe.sync_bn, meta)
    saved = checkpoint.load(out / CHECKPOINT) if resume else None
    listed = list_data(data) if isinstance(data, TrainData) else data
    check_batch(recipe, world, len(listed.train))
    record = {"meta": meta, "recipe": asdict(recipe), "data": listed.describe(),
              "info": {"data": data_paths(listed.request), **(info or {})}}
    if saved is not None:
        checkpoint.check_same_run(saved["record"], record)
        if saved["epoch"] >= recipe.epochs and (out / FINAL).is_file():
            return _finished(out, saved, record)
        checkpoint.check_fits(out / CHECKPOINT, saved, model,
                              param_groups(model, recipe.weight_decay, recipe.no_decay_bn_bias))
    else:
        torch.manual_seed(recipe.seed + world.rank)
    lock = folder_lock(out, "run folder", argument=None) if resume else folder_lock(out, "out")
    with lock if world.is_main else nullcontext():
        check_start(out, resume, world, recipe.sync_bn, meta)  # again: no other run can start here now
        if world.is_main:
            remove_leftovers(out)
        return _train(model, listed, recipe, out, world, saved=saved, record=record, progress=progress,
                      final=final)


def _train(model: nn.Module, listed, recipe: Recipe, out: Path, world: World, *, saved: dict | None, record: dict,
           progress: bool, final: Callable[[dict], Any] | None) -> TrainResult:
    """The long part, after every check: decode, train every epoch left, write the outputs."""
    datasets = listed if isinstance(listed, Datasets) else decode(listed, progress=progress and world.is_main)
    run = _Run(model, datasets, recipe, out, world, record=record, progress=progress)
    if saved is not None:
        run.restore(saved)
    with stop_requests() as stop:
        while run.epoch < recipe.epochs:
            with _progress_bar(run) as bar:
                run.train_epoch(stop, bar)
            row = run.end_epoch()
            if run.progress:
                from .report import epoch_line

                bar.write(epoch_line(row, recipe.epochs), file=sys.stderr)  # stdout is the result's
            if stop.requested:
                raise KeyboardInterrupt
    return _finish(run, final or (lambda state_dict: state_dict))


def _finished(out: Path, saved: dict, record: dict) -> TrainResult:
    """A finished run, as its files are: resuming it trains nothing and rewrites nothing (``final.pth`` and
    ``summary.md`` keep the threads and timings of the process that wrote them)."""
    history = pd.DataFrame(saved["history"], columns=COLUMNS)
    names = {"checkpoint": CHECKPOINT, "history": HISTORY, "final": FINAL, "summary": "summary.md",
             "curves_png": "curves.png", "curves_svg": "curves.svg"}
    paths = {k: out / name for k, name in names.items() if (out / name).exists()}
    best = history.loc[history["val_top1"].idxmax()].to_dict()
    return TrainResult(history, paths, history.iloc[-1].to_dict(), best, record["data"], already_finished=True)


def _finish(run: _Run, final: Callable[[dict], Any]) -> TrainResult:
    from .report import save_curves, summary_markdown

    history = run.frame()
    best = history.loc[history["val_top1"].idxmax()].to_dict()
    data = {**run.datasets.describe(), "mean": [round(v, 4) for v in run.datasets.mean],
            "std": [round(v, 4) for v in run.datasets.std], "decode_seconds": run.datasets.decode_seconds}
    paths = {"checkpoint": run.out / CHECKPOINT, "history": run.out / HISTORY, "final": run.out / FINAL,
             "summary": run.out / "summary.md"}
    if run.world.is_main:
        kept = f"{CHECKPOINT} holds the trained run: resume once there is room to write the rest"
        with _disk(f"the run's last files in {str(run.out)!r}", kept), output_set():
            atomic_write(paths["final"], lambda tmp: torch.save(final(run.net.state_dict()), tmp))
            figures = save_curves(history, run.out / "curves")
            atomic_write_text(paths["summary"], summary_markdown(run.record, history, data, str(run.device),
                                                                 run.world.size))
        paths.update(curves_png=figures[0], curves_svg=figures[1])
    return TrainResult(history, paths, history.iloc[-1].to_dict(), best, data)
