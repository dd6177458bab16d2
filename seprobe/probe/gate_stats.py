"""Streaming statistics of excitation values per (block, class, channel), in bounded memory.

For each SE block and each group (every class of the label space, plus one "all images" group) the running
count, mean and sum of squared deviations ``M2`` of every channel's gate value (one value per image: a
NoSqueeze gate is first averaged over positions), and a fixed-bin histogram of the group's gate values over all
channels. Batches and shards are combined with the parallel-variance formula of Chan, Golub and LeVeque (1979):

    n = n_a + n_b,  d = mean_b - mean_a,  mean = mean_a + d * n_b / n,  M2 = M2_a + M2_b + d^2 * n_a * n_b / n

so the statistics of two runs on disjoint shards merge into those of one run on their union (counts and
histograms exactly, means and variances to float64 rounding). Memory is fixed by blocks x groups x channels.

A map read position by position (``positions=True``: CBAM's spatial map ``M_s``, ``N x 1 x H x W``) takes every
position of every image as one value: the same moments and histogram over positions and images (``count`` then
counts values, images x positions), and each group's smallest and largest value, merged by minimum and maximum.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import SeprobeError
from ..io import atomic_write

if TYPE_CHECKING:
    from ..distributed import World

BINS = 50


@dataclass
class BlockStats:
    """One block: arrays indexed by group (classes 0..K-1, then "all" at K) and channel."""

    count: np.ndarray   # (G,) int64: images seen per group
    mean: np.ndarray    # (G, C) float64
    m2: np.ndarray      # (G, C) float64
    hist: np.ndarray    # (G, BINS + 2) int64: underflow, BINS bins, overflow
    low: float
    high: float
    minimum: np.ndarray | None = None  # (G, C) float64, maps read by position only: the smallest value (inf: none)
    maximum: np.ndarray | None = None  # (G, C) float64: the largest value (-inf: none)

    @classmethod
    def empty(cls, groups: int, channels: int, low: float, high: float, extremes: bool = False) -> BlockStats:
        return cls(np.zeros(groups, np.int64), np.zeros((groups, channels)), np.zeros((groups, channels)),
                   np.zeros((groups, BINS + 2), np.int64), low, high,
                   np.full((groups, channels), np.inf) if extremes else None,
                   np.full((groups, channels), -np.inf) if extremes else None)

    def merge_moments(self, count: np.ndarray, mean: np.ndarray, m2: np.ndarray) -> None:
        """Fold in another set of (count, mean, M2) of the same shape (Chan et al.'s formula)."""
        seen = count > 0
        n_a, n_b = self.count[seen][:, None].astype(np.float64), count[seen][:, None].astype(np.float64)
        n = n_a + n_b
        delta = mean[seen] - self.mean[seen]
        self.mean[seen] += delta * n_b / n
        self.m2[seen] += m2[seen] + delta**2 * n_a * n_b / n
        self.count[seen] += count[seen]

    def merge_extremes(self, minimum: np.ndarray | None, maximum: np.ndarray | None) -> None:
        """Fold in another set of smallest and largest values (kept only where this block keeps them)."""
        if self.minimum is not None and minimum is not None:
            np.minimum(self.minimum, minimum, out=self.minimum)
            np.maximum(self.maximum, maximum, out=self.maximum)

    def std(self) -> np.ndarray:
        """Sample standard deviation per (group, channel), with the n - 1 denominator; NaN below two images
        (undefined, not zero)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(self.m2 / (self.count[:, None] - 1))


class GateStats:
    """Statistics of every block, updated batch by batch with :meth:`update`."""

    def __init__(self, blocks: dict[str, tuple[int, float, float]], num_classes: int, *, positions: bool = False):
        """``blocks``: name -> (channels, low, high) of its histogram range; ``positions``: every position of a map
        is one value, and the extremes are kept (else one value per image and channel)."""
        self.num_classes = num_classes
        self.positions = positions
        self.blocks = {name: BlockStats.empty(num_classes + 1, c, lo, hi, positions)
                       for name, (c, lo, hi) in blocks.items()}

    @property
    def all_group(self) -> int:
        return self.num_classes

    def update(self, name: str, values: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: ``values`` N x C (or N x C x H x W, averaged over positions; with ``positions``, each
        position one value), ``labels`` N class indices."""
        b = self.blocks[name]
        v = values.detach().to("cpu", torch.float64)
        if not torch.isfinite(v).all():
            what = "spatial map" if self.positions else "excitation"
            raise SeprobeError(f"non-finite {what} values (NaN or inf) in block {name}, the first such block "
                               "in network order: NaN/inf weights before it, or a NaN/zero normalisation std; "
                               "valid: finite weights and a finite, non-zero std")
        labels = labels.to("cpu", torch.long)
        if v.dim() > 2 and self.positions:  # N x C x H x W -> (N H W) x C, each position labelled by its image
            per_image = v[0, 0].numel()
            v = v.movedim(1, -1).reshape(-1, v.shape[1])
            labels = labels.repeat_interleave(per_image)
        elif v.dim() > 2:
            v = v.flatten(2).mean(2)
        v = v.reshape(v.shape[0], -1)
        groups = b.count.shape[0]
        count = torch.bincount(labels, minlength=groups)
        sums = torch.zeros(groups, v.shape[1], dtype=torch.float64).index_add_(0, labels, v)
        safe = count.clamp(min=1).unsqueeze(1).double()
        mean = sums / safe
        m2 = torch.zeros_like(sums).index_add_(0, labels, (v - mean[labels]) ** 2)
        # the "all images" group of this batch
        count[self.all_group] = v.shape[0]
        mean[self.all_group] = v.mean(0)
        m2[self.all_group] = ((v - v.mean(0)) ** 2).sum(0)
        b.merge_moments(count.numpy(), mean.numpy(), m2.numpy())
        b.hist += self._histogram(v, labels, b, groups)
        if b.minimum is not None and v.shape[0]:
            rows = labels.unsqueeze(1).expand_as(v)
            low = torch.full((groups, v.shape[1]), torch.inf, dtype=torch.float64).scatter_reduce_(0, rows, v, "amin")
            high = torch.full_like(low, -torch.inf).scatter_reduce_(0, rows, v, "amax")
            low[self.all_group], high[self.all_group] = v.amin(0), v.amax(0)
            b.merge_extremes(low.numpy(), high.numpy())

    @staticmethod
    def _histogram(v: torch.Tensor, labels: torch.Tensor, b: BlockStats, groups: int) -> np.ndarray:
        width = (b.high - b.low) / BINS
        idx = torch.floor((v - b.low) / width).long() + 1
        idx = idx.clamp(0, BINS + 1)  # below low -> 0, at or above high -> BINS + 1
        idx = torch.where(v == b.high, torch.full_like(idx, BINS), idx)  # the top edge belongs to the last bin
        flat = (labels.unsqueeze(1) * (BINS + 2) + idx).flatten()
        per_class = torch.bincount(flat, minlength=groups * (BINS + 2)).reshape(groups, BINS + 2)
        per_class[groups - 1] += torch.bincount(idx.flatten(), minlength=BINS + 2)
        return per_class.numpy()

    def merge(self, other: GateStats) -> GateStats:
        """Fold in the statistics of a disjoint shard (same blocks, same label space)."""
        if set(other.blocks) != set(self.blocks) or other.num_classes != self.num_classes \
                or other.positions != self.positions:
            raise SeprobeError("cannot merge statistics of different models or label spaces; valid: shards of "
                               "one configuration")
        for name, b in self.blocks.items():
            o = other.blocks[name]
            b.merge_moments(o.count, o.mean, o.m2)
            b.hist += o.hist
            b.merge_extremes(o.minimum, o.maximum)
        return self

    def merge_ranks(self, world: World) -> GateStats:
        """Combine every rank's statistics in place into those of all images, on every rank.

        Chan et al.'s merge for k shards: ``n = sum n_i``, ``mean = sum n_i mean_i / n``,
        ``M2 = sum M2_i + sum n_i (mean_i - mean)^2``; counts and histograms are summed exactly. Three
        all-reduces of packed arrays (sizes fixed by blocks x groups x channels, not by the number of images);
        the extremes of a map read by position, gathered from every rank, are their minimum and maximum.
        """
        blocks = [self.blocks[name] for name in sorted(self.blocks)]
        if not world.distributed or not blocks:
            return self
        local = [(b.count.copy(), b.mean.copy(), b.m2) for b in blocks]
        ints = world.all_reduce(np.concatenate([np.concatenate([n, b.hist.ravel()]) for b, (n, _, _)
                                                in zip(blocks, local, strict=True)]))
        weighted = world.all_reduce(np.concatenate([(n[:, None] * mean).ravel() for n, mean, _ in local]))
        spread = []
        for b, (n, mean, m2) in zip(blocks, local, strict=True):
            groups, hist = b.count.size, b.hist.size
            b.count[:], b.hist[:] = ints[:groups], ints[groups:groups + hist].reshape(b.hist.shape)
            ints = ints[groups + hist:]
            total = weighted[:mean.size].reshape(mean.shape)
            weighted = weighted[mean.size:]
            b.mean[:] = np.divide(total, b.count[:, None], out=np.zeros_like(total), where=b.count[:, None] > 0)
            spread.append((m2 + n[:, None] * (mean - b.mean) ** 2).ravel())
        m2s = world.all_reduce(np.concatenate(spread))
        for b in blocks:
            b.m2[:] = m2s[:b.m2.size].reshape(b.m2.shape)
            m2s = m2s[b.m2.size:]
        if self.positions:
            for shard in world.gather([(b.minimum.copy(), b.maximum.copy()) for b in blocks]):
                for b, (low, high) in zip(blocks, shard, strict=True):
                    b.merge_extremes(low, high)
        return self

    def save(self, path: str | Path) -> Path:
        arrays = {"num_classes": np.array(self.num_classes)}
        if self.positions:
            arrays["positions"] = np.array(True)
        for name, b in self.blocks.items():
            for field in ("count", "mean", "m2", "hist"):
                arrays[f"{name}/{field}"] = getattr(b, field)
            arrays[f"{name}/range"] = np.array([b.low, b.high])
            if b.minimum is not None:
                arrays[f"{name}/min"], arrays[f"{name}/max"] = b.minimum, b.maximum
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object, so numpy does not append ".npz" to the temporary name
                np.savez_compressed(f, **arrays)

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path) -> GateStats:
        with np.load(path, allow_pickle=False) as data:
            names = sorted({k.split("/")[0] for k in data.files if "/" in k})
            stats = cls({}, int(data["num_classes"]), positions="positions" in data.files)
            for name in names:
                low, high = data[f"{name}/range"]
                extremes = (data[f"{name}/min"], data[f"{name}/max"]) if f"{name}/min" in data.files else (None, None)
                stats.blocks[name] = BlockStats(data[f"{name}/count"], data[f"{name}/mean"], data[f"{name}/m2"],
                                                data[f"{name}/hist"], float(low), float(high), *extremes)
        return stats

    def single_view_classes(self) -> tuple[int, int]:
        """(classes seen once, classes seen at all): a class seen once has no standard deviation, and when every
        class is seen once ``class_specificity`` is 1 by construction (no within-class variance)."""
        counts = next(iter(self.blocks.values())).count[: self.num_classes] if self.blocks else np.zeros(0)
        present = counts[counts > 0]
        return int((present == 1).sum()), int(present.size)

    def fraction_above(self, name: str, threshold: float, group: int | None = None) -> float:
        """Share of gate values at or above ``threshold`` (a bin edge), from the histogram."""
        b = self.blocks[name]
        h = b.hist[self.all_group if group is None else group]
        edge = round((threshold - b.low) / (b.high - b.low) * BINS) + 1
        return float(h[edge:].sum() / max(h.sum(), 1))

    def between_class_std(self, name: str) -> float:
        """How far the gates move from class to class, in gate units: per channel the standard deviation of the
        class means (weighted by images), averaged over channels. Unlike eta^2 it is small when a block's gates
        barely vary at all."""
        b = self.blocks[name]
        n = b.count[: self.num_classes].astype(np.float64)[:, None]
        between = (n * (b.mean[: self.num_classes] - b.mean[self.all_group]) ** 2).sum(0) / max(n.sum(), 1)
        return float(np.sqrt(between).mean())

    def class_specificity(self, name: str) -> float:
        """Share of the gates' variance explained by the class (the correlation ratio eta^2), over all channels:
        between-class sum of squares / total sum of squares, with "all" as the total."""
        b = self.blocks[name]
        n = b.count[: self.num_classes].astype(np.float64)[:, None]
        overall = b.mean[self.all_group]
        between = (n * (b.mean[: self.num_classes] - overall) ** 2).sum()
        total = b.m2[self.all_group].sum()
        return float(between / total) if total > 0 else float("nan")
