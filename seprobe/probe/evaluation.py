"""The one loop over labelled images that ``evaluate``, ``activations`` and ``ablate`` share.

:class:`Loader` says how images are fed (batch size, device, data-loading processes), checked once.
:class:`ImagePass` is one pass over the images, ``views`` crops each, in the batches of one process: decoded by a
``DataLoader`` (unreadable images are skipped and named, never raised), moved to the device, shared out among
the ranks under torchrun (:meth:`~seprobe.distributed.World.batches`: contiguous runs of one process's batches,
every rank stepping in lock-step), with a progress bar (rank 0, the global count) and a check that the logits
are finite. :func:`score` turns logits into top-1 / top-5 hits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..data.images import LabelledImages, Preprocessing, ViewDataset, collate
from ..devices import check_device
from ..distributed import World, current_world
from ..errors import SeprobeError
from ..models.heads import topk_hits
from .loader import Loader


@dataclass
class Batch:
    x: torch.Tensor       # on the pass's device
    labels: torch.Tensor  # on the CPU
    index: torch.Tensor   # item indices of the pass (image ``i // views``, view ``i % views``), on the CPU


def image_list_digest(images: LabelledImages, views: int, batch_size: int) -> str:
    """What the ranks must agree on to shard the same items: file names (not folders, which may be mounted
    elsewhere on another node), labels, views and batch size."""
    text = repr((views, batch_size, images.labels, [p.name for p in images.paths]))
    return hashlib.sha256(text.encode()).hexdigest()


def pass_device(loader: Loader, world: World | None = None) -> str:
    """The device a pass runs on: the loader's, or under torchrun this rank's own."""
    world = world or current_world()
    return world.device if world.distributed else loader.device


class ImagePass:
    """One pass over ``images``; iterate it for this rank's :class:`Batch` es.

    ``work`` is how many forward passes each batch gets (the progress bar counts ``images x work``). After the
    loop, :meth:`finish` combines what every rank read and failed to read.
    """

    def __init__(self, images: LabelledImages, preprocessing: Preprocessing, loader: Loader, *, views: int = 1,
                 seed: int = 0, progress: bool = True, desc: str = "images", work: int = 1,
                 world: World | None = None):
        self.world = world or current_world()
        self.images, self.views, self.work = images, views, work
        self.device = pass_device(loader, self.world)
        self.batch_size = loader.batch_size
        if self.world.distributed:
            self.world.check_same("image list", image_list_digest(images, views, loader.batch_size))
        check_device(self.device)
        self.dataset = ViewDataset(images, preprocessing, views, seed)
        self.shard = self.world.batches(len(self.dataset), loader.batch_size)  # one process: a plain loader's
        self.num_workers = loader.num_workers
        self.progress, self.desc = progress, desc
        self.failed: list[str] = []
        self.read = 0

    def __iter__(self) -> Iterator[Batch]:
        from tqdm import tqdm

        world = self.world
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=self.shard, num_workers=self.num_workers,
                                             collate_fn=collate)
        bar = tqdm(total=len(self.dataset) * self.work, unit="img", desc=self.desc, dynamic_ncols=True, leave=False,
                   disable=not (self.progress and world.is_main))
        try:
            batches = iter(loader)
            for _ in range(world.steps(len(self.dataset), self.batch_size)):  # a rank with one batch fewer idles
                x, labels, index, bad = next(batches, (None, None, None, []))
                self.failed += bad
                if x is not None:
                    self.read += len(x)
                    yield Batch(x.to(self.device), labels, index)
                done = len(bad) + (0 if x is None else len(x))
                bar.update(world.heartbeat(done * self.work))  # the global count; stops if another rank failed
        finally:
            bar.close()

    def items(self) -> list[int]:
        """The item indices this rank sees, in order."""
        return [i for batch in self.shard for i in batch]

    def check_finite(self, logits: torch.Tensor, batch: Batch, what: str) -> None:
        if not torch.isfinite(logits).all():
            first = self.images.paths[int(batch.index[0]) // self.views]
            raise SeprobeError(f"{what}: non-finite logits (NaN or inf) in the batch of {first}; valid: finite "
                               "weights and a finite, non-zero normalisation std")

    def finish(self) -> int:
        """Combine the ranks' failures; the number of items read by all. None readable is an error."""
        self.failed = self.world.concat(self.failed)
        (read,) = self.world.sum(self.read)
        if not read:
            example = f" (e.g. {self.failed[0]})" if self.failed else ""
            raise SeprobeError(f"none of the {len(self.images.paths)} images could be read{example}; valid: JPEG, "
                               "PNG or other images PIL can open")
        return read


def scored(images: LabelledImages, num_logits: int) -> bool:
    """Whether the labels index the model's outputs: ImageNet-1k labels and 1000 logits, or as many logits as
    the data has classes."""
    return (images.imagenet and num_logits == 1000) or (not images.imagenet and num_logits == len(images.class_names))


def score(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: the predicted class, top-1 hit and top-5 hit (:func:`~seprobe.models.heads.topk_hits`), on the
    CPU."""
    return topk_hits(logits, labels.cpu())
