"""Several processes under ``torchrun``, with the results of one process.

``torchrun --nproc-per-node N -m seprobe activations ...`` starts N copies of the command; each reads
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from its environment. :func:`distributed_session` joins them into a
``torch.distributed`` process group (NCCL on CUDA, one GPU per rank: ``cuda:LOCAL_RANK``; gloo on the CPU) and
hands each a :class:`World`; without torchrun it hands back a one-process world whose methods do nothing, so
the same code runs both ways.

How a pass over the images is split and put back together:

* **Sharding** (:meth:`World.batches`): the batches of one process (items ``0..B-1``, ``B..2B-1``, ...) are
  dealt out in contiguous runs, one run per rank, whose lengths differ by at most one batch. Every image is seen
  exactly once (no ``DistributedSampler`` padding, which repeats images to even out the shards and would bias
  the statistics), any count works, fewer batches than ranks included, and every forward pass sees exactly the
  batch it would see in one process.
* **Lock-step** (:meth:`World.heartbeat`): after each batch every rank all-reduces ``[images done, failed]``.
  Rank 0's progress bar shows the global count from it, and a failure anywhere stops every rank at its next
  step. Ranks with one batch fewer take an empty step, so all ranks make the same number of collective calls.
* **Combining** exactly: counts by all-reduced sums (:meth:`World.sum`), gate statistics by all-reduces of
  arrays (:meth:`World.all_reduce`, in :meth:`~seprobe.probe.gate_stats.GateStats.merge_ranks`), per-image
  records by an all-gather in global image order (:meth:`World.gather_records`). Every rank ends with the same
  combined result; rank 0 alone writes and prints.

Failures. An exception on any rank inside the session becomes the same :class:`DistributedError` on every rank:
the failing rank announces it at the next collective call (the heartbeat the others are waiting in), all ranks
exchange messages, and each raises the first failing rank's message, ``quiet`` on all ranks but rank 0, so the
command line prints it once and every rank exits non-zero. A rank that dies outright (killed, segfault) is
noticed by torchrun, which stops the others on its node; on other nodes the process group's timeout ends the wait.
"""

from __future__ import annotations

import math
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from .errors import SeprobeError

#: How long a rank waits in a collective call for the others (one batch, or loading the model, at most).
TIMEOUT = timedelta(minutes=30)

T = TypeVar("T")


class DistributedError(SeprobeError):
    """A failure that every rank agrees on (raised on all of them). ``quiet``: another rank prints it."""

    def __init__(self, message: str, *, quiet: bool = False, argument: str | None = None):
        super().__init__(message, argument=argument)
        self.quiet = quiet


@dataclass(frozen=True)
class World:
    """This process's place among ``size`` ranks, and the collective operations the passes need.

    ``World()`` is one process: every method then returns its input, with no communication.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes outputs and prints results."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    # --- sharding -------------------------------------------------------------------------------------------

    def batches(self, items: int, batch_size: int) -> list[list[int]]:
        """This rank's batches of item indices: one process's batches, split into contiguous runs."""
        if batch_size < 1:
            raise SeprobeError(f"invalid batch_size {batch_size}; valid: an integer >= 1", argument="batch_size")
        total = math.ceil(items / batch_size)
        first, extra = divmod(total, self.size)
        start = self.rank * first + min(self.rank, extra)
        mine = range(start, start + first + (self.rank < extra))
        return [list(range(b * batch_size, min((b + 1) * batch_size, items))) for b in mine]

    def steps(self, items: int, batch_size: int) -> int:
        """Steps every rank takes (the most batches any rank has), so collective calls pair up."""
        return math.ceil(math.ceil(items / batch_size) / self.size)

    # --- collective operations --------------------------------------------------------------------------------

    def heartbeat(self, done: int = 0) -> int:
        """Sum ``done`` (e.g. images finished this step) over ranks; stop here if any rank has failed."""
        if not self.distributed:
            return done
        total, failed = self._all_reduce_ints([done, 0])
        if failed:
            self._agree(None)
        return total

    def sum(self, *values: int) -> tuple[int, ...]:
        """Integer sums over ranks (e.g. correct / total counts), exact."""
        if not self.distributed:
            return values
        self.heartbeat()
        return tuple(self._all_reduce_ints(list(values)))

    def all_reduce(self, array: np.ndarray) -> np.ndarray:
        """Element-wise sums of ``array`` (the same shape and dtype on every rank) over ranks, on every rank."""
        if not self.distributed:
            return array
        self.heartbeat()
        return self._all_reduce(array)

    def gather(self, obj: T) -> list[T]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        self.heartbeat()
        return self._all_gather(obj)

    def check_same(self, what: str, value: Any) -> None:
        """Stop every rank, with one message, unless all ranks hold an equal ``value`` (e.g. a digest of the
        image list: a node that sees other files would otherwise shard a different list)."""
        if not self.distributed:
            return
        values = self.gather(value)
        differ = [r for r, v in enumerate(values) if v != values[0]]
        if differ:
            raise DistributedError(f"rank {differ[0]} sees another {what} than rank 0; valid: the same on every "
                                   "rank (the same data and options on every node)", quiet=not self.is_main)

    def concat(self, items: Sequence[T]) -> list[T]:
        """Every rank's list, concatenated in rank order: global order for per-batch lists, as shards are
        contiguous."""
        return [x for part in self.gather(list(items)) for x in part]

    def gather_records(self, records: Sequence[T], indices: Sequence[int]) -> list[T]:
        """Per-image records of all ranks, ordered by global image index, on every rank.

        ``records[i]`` belongs to image ``indices[i]`` (the global index: position in ``LabelledImages.paths``,
        or the item index of :class:`~seprobe.data.images.ViewDataset`). Each index must occur on one rank only.
        """
        if len(records) != len(indices):
            raise ValueError(f"{len(records)} records for {len(indices)} indices")
        pairs = [(int(i), r) for i, r in zip(indices, records, strict=True)]
        merged = sorted((p for part in self.gather(pairs) for p in part), key=lambda p: p[0])
        seen = [i for i, _ in merged]
        if len(set(seen)) != len(seen):
            raise ValueError("an image index occurs on more than one rank: the shards overlap")
        return [r for _, r in merged]

    # --- internals --------------------------------------------------------------------------------------------

    @property
    def _tensor_device(self) -> str:
        return self.device if self.device.startswith("cuda") else "cpu"

    def _all_reduce(self, array: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(array)).to(self._tensor_device)
        self._call(dist.all_reduce, t)
        return t.cpu().numpy()

    def _all_reduce_ints(self, values: list[int]) -> list[int]:
        return [int(v) for v in self._all_reduce(np.asarray(values, dtype=np.int64))]

    def _all_gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.size
        self._call(dist.all_gather_object, out, obj)
        return out

    def _call(self, op, *args) -> None:
        try:
            op(*args)
        except Exception as e:  # a timeout or a dead peer: nobody is left to agree with, so no announcement
            raise DistributedError(f"rank {self.rank}: lost contact with the other ranks ({_one_line(e)}); "
                                   "valid: every rank alive and reachable (see torchrun's report for the rank "
                                   "that stopped)") from e

    def _fail(self, error: BaseException) -> None:
        """Announce ``error`` (raised on this rank) to the others at their next collective call, then raise the
        agreed error."""
        if isinstance(error, SeprobeError):
            message = str(error)
        elif isinstance(error, (torch.OutOfMemoryError, MemoryError)):
            message = (f"out of memory on {self.device} ({_one_line(error)}); valid: a smaller batch_size, "
                       "or fewer ranks per device")
        else:  # a bug: its traceback is for a developer, printed by the rank it happened on
            print(f"seprobe: rank {self.rank}: unexpected error", file=sys.stderr)
            traceback.print_exception(error, file=sys.stderr)
            message = _one_line(error)
        self._all_reduce_ints([0, 1])
        self._agree(message)

    def _agree(self, message: str | None) -> None:
        messages = self._all_gather(message)
        failed = [(r, m) for r, m in enumerate(messages) if m is not None]
        rank, text = failed[0]
        if len(failed) < self.size or len({m for _, m in failed}) > 1:
            more = len(failed) - 1
            others = f" (and {more} more rank{'s' if more > 1 else ''})" if more else ""
            text = f"rank {rank}{others}: {text}"
        raise DistributedError(text, quiet=not self.is_main)


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


_current = World()


def current_world() -> World:
    """The world of the running :func:`distributed_session` (one process outside any)."""
    return _current


def torchrun_world_size() -> int:
    """``WORLD_SIZE`` as torchrun set it (1 without torchrun)."""
    value = os.environ.get("WORLD_SIZE", "").strip() or "1"
    if not value.isdigit() or int(value) < 1:
        raise DistributedError(f"WORLD_SIZE={value!r}; valid: a positive integer (torchrun sets it), or unset")
    return int(value)


def _world_from_environment(device: str) -> World:
    """Validate torchrun's variables and the device; one error, raised before any rank waits for another."""
    try:
        rank, size, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except (KeyError, ValueError):
        seen = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        raise DistributedError(f"WORLD_SIZE is set but torchrun's variables are incomplete ({seen}); valid: "
                               "launch with torchrun, or unset WORLD_SIZE") from None
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
    quiet = local_rank != 0  # every rank of a node reaches the same verdict: one of them says it
    if not (0 <= rank < size and 0 <= local_rank < local_size):
        raise DistributedError(f"RANK {rank} / LOCAL_RANK {local_rank} outside WORLD_SIZE {size}; valid: the "
                               "values torchrun sets", quiet=quiet)
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(key):
            raise DistributedError(f"{key} is not set; valid: launch with torchrun (it sets it)", quiet=quiet)
    if device == "cpu":
        return World(rank, size, local_rank, "cpu")
    if device != "cuda":
        raise DistributedError(f"device {device!r} under torchrun; valid: cuda (rank r takes cuda:LOCAL_RANK) "
                               "or cpu", quiet=quiet, argument="device")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if local_size > gpus:
        raise DistributedError(f"device 'cuda' with {local_size} ranks on this node but {gpus} GPU(s): NCCL needs "
                               f"a GPU of its own for each rank; valid: at most {max(gpus, 1)} torchrun process(es) "
                               f"per node{'' if gpus else ' on the cpu device'}, or device 'cpu'", quiet=quiet,
                               argument="device")
    return World(rank, size, local_rank, f"cuda:{local_rank}")


@contextmanager
def distributed_session(device: str = "cpu", timeout: timedelta = TIMEOUT) -> Iterator[World]:
    """The :class:`World` of this process for the duration of one command; the process group is torn down at
    the end, and any failure inside becomes the same :class:`DistributedError` on every rank.

    Without torchrun (``WORLD_SIZE`` unset or 1) this is one process on ``device``, and exceptions pass
    through unchanged.
    """
    global _current
    if torchrun_world_size() <= 1:
        _current = World(device=device)
        try:
            yield _current
        finally:
            _current = World()
        return
    if dist.is_initialized():
        raise RuntimeError("distributed_session is already open in this process")
    world = _world_from_environment(device)
    if world.device.startswith("cuda"):
        torch.cuda.set_device(world.device)
    try:
        dist.init_process_group("nccl" if world.device.startswith("cuda") else "gloo", timeout=timeout)
    except Exception as e:
        raise DistributedError(f"rank {world.rank}: could not join the other ranks at "
                               f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({_one_line(e)}); valid: "
                               "every node started with the same rendezvous endpoint and number of nodes") from e
    _current = world
    try:
        try:
            yield world
        except DistributedError:
            raise  # already agreed on by every rank
        except Exception as e:
            world._fail(e)
        world.heartbeat()  # every rank finished: a failure after another rank's last step still reaches all
    finally:
        _current = World()
        dist.destroy_process_group()
