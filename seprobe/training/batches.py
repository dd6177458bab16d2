"""Which images each optimiser step sees, on each rank, and the batches themselves.

Order: epoch ``e`` visits the training images in ``torch.randperm`` order from a ``torch.Generator`` seeded
with ``seed * 1_000_003 + e`` (:func:`epoch_order`): the same global order for any number of ranks. Step ``s``
takes positions ``s*B .. (s+1)*B - 1`` of it (``B`` the global ``batch_size``); under torchrun rank ``r`` of
``R`` takes the contiguous slice ``r*B/R .. (r+1)*B/R - 1`` of that batch. The last incomplete batch of an
epoch is dropped (every step sees ``B`` images, for any rank count): an epoch is ``N // B`` steps.

The same generator then draws the crop offsets and flips of each step's global batch (:mod:`.augment`), so a
checkpoint that saves its state resumes the epoch exactly.

Evaluation is exact: every validation image once, in :meth:`World.batches` shards of one process's batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..data.images import Preprocessing, ViewDataset, collate
from ..distributed import World
from ..errors import SeprobeError
from .augment import crop_params, normalise, pad_crop_flip
from .data import Datasets, Split

PAD = 4  # He et al. 2015: 4 pixels padded on each side


@dataclass(frozen=True)
class Batching:
    """How a run cuts its batches: ``batch_size`` images a step (the global batch), this rank's share of them
    (``world``) on ``device``, read by ``workers`` loader processes (image files)."""

    batch_size: int
    world: World
    device: torch.device
    workers: int = 0

    @property
    def local(self) -> slice:
        """This rank's part of a global batch."""
        return local_slice(self.world, self.batch_size)


def epoch_order(seed: int, epoch: int, n: int) -> tuple[torch.Tensor, torch.Generator]:
    """The permutation of epoch ``epoch`` and the generator after drawing it (the augmentation continues it)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator), generator


def local_slice(world: World, batch_size: int) -> slice:
    """This rank's part of a global batch."""
    share = batch_size // world.size
    return slice(world.rank * share, (world.rank + 1) * share)


def memory_train(split: Split, data: Datasets, order: torch.Tensor, generator: torch.Generator, steps: range, *,
                 batching: Batching) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Augmented, normalised batches of this rank for ``steps`` (images already on ``batching.device``)."""
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    batch_size, mine = batching.batch_size, batching.local
    for step in steps:
        offsets, flips = crop_params(generator, batch_size, PAD)
        index = order[step * batch_size:(step + 1) * batch_size][mine].to(batching.device)
        x = pad_crop_flip(split.images[index], offsets[mine], flips[mine], PAD)
        yield normalise(x, mean, std), split.labels[index]


class TrainFiles(torch.utils.data.Dataset):
    """Large training images: a random resized crop and a flip, each image's randomness seeded by
    ``(seed, epoch, image)`` inside a forked RNG (the same crops with any number of workers, and the global
    RNG untouched). Item ``i`` is (tensor, label, i, failure), as :func:`~seprobe.data.images.collate` takes
    them: an image that cannot be decoded is passed on as a message (a worker's exception would reach the
    training process as a traceback)."""

    def __init__(self, split: Split, pre: Preprocessing, seed: int, epoch: int):
        from torchvision import transforms as T

        from ..data.images import interpolation_mode

        self.paths, self.labels, self.key = split.files.paths, split.files.labels, (seed * 1_000_003 + epoch)
        self.transform = T.Compose([T.RandomResizedCrop(pre.crop, interpolation=interpolation_mode(pre.interpolation)),
                                    T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(pre.mean, pre.std)])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from PIL import Image

        from ..data.images import to_rgb

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.key * 10_000_019 + i)
            try:
                with Image.open(self.paths[i]) as im:
                    return self.transform(to_rgb(im)), self.labels[i], i, None
            except Exception as e:  # PIL raises many types for truncated or corrupt data
                reason = str(e).splitlines()[0] if str(e) else ""
                return None, self.labels[i], i, f"{self.paths[i]}: {type(e).__name__}: {reason}"


def files_train(split: Split, pre: Preprocessing, order: torch.Tensor, steps: range, *, seed: int, epoch: int,
                batching: Batching):
    """A DataLoader of this rank's batches for ``steps`` of epoch ``epoch``."""
    batch_size, world, device = batching.batch_size, batching.world, batching.device
    indices = [int(i) for s in steps for i in order[s * batch_size:(s + 1) * batch_size][batching.local]]
    loader = torch.utils.data.DataLoader(TrainFiles(split, pre, seed, epoch), batch_size=batch_size // world.size,
                                         sampler=indices, num_workers=batching.workers, collate_fn=collate,
                                         pin_memory=device.type == "cuda",
                                         generator=torch.Generator().manual_seed(seed), persistent_workers=False)
    return _decoded(loader)


def _decoded(loader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's (images, labels); an image that could not be decoded stops the run in one line naming it."""
    for x, y, _, failed in loader:
        if failed:
            raise SeprobeError(f"training image cannot be decoded: {failed[0]}; valid: every training image "
                               "complete (copy it again, or remove it)")
        yield x, y


def eval_batches(split: Split, data: Datasets, pre: Preprocessing, batching: Batching
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's validation batches (normalised, no augmentation), as :meth:`World.batches` deals them."""
    device, workers = batching.device, batching.workers
    batches = batching.world.batches(len(split), batching.batch_size)
    if split.images is not None:
        mean, std = torch.tensor(data.mean), torch.tensor(data.std)
        for batch in batches:
            index = torch.tensor(batch, device=device)
            yield normalise(split.images[index], mean, std), split.labels[index]
        return
    dataset = ViewDataset(split.files, pre)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate,
                                         pin_memory=device.type == "cuda")
    for x, y, _, failed in loader:
        if failed:
            raise SeprobeError(f"validation image unreadable: {failed[0]}; valid: every image readable")
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
