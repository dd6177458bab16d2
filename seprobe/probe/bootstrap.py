"""Paired-bootstrap intervals of a change of accuracy: resample images with replacement, the same resamples for
every ablation, and take the percentiles of the mean paired difference (Efron & Tibshirani, ch. 13)."""

from __future__ import annotations

import numpy as np

from ..defaults import BOOTSTRAP
from ..errors import SeprobeError

LEVEL = 0.95


def paired_bootstrap(diff: np.ndarray, bootstrap: int = BOOTSTRAP, seed: int = 0, level: float = LEVEL) -> np.ndarray:
    """Percentile intervals of the mean of each row of ``diff`` (E x N per-image paired differences, e.g.
    ablated minus full correctness), resampling images with replacement; the same resamples for every row.
    Returns an E x 2 array (low, high)."""
    diff = np.atleast_2d(np.asarray(diff, np.float64))
    n = diff.shape[1]
    if n == 0:
        raise SeprobeError("no image to bootstrap over; valid: at least one readable evaluation image")
    rng = np.random.default_rng(seed)
    means = np.empty((diff.shape[0], bootstrap))
    chunk = max(1, min(bootstrap, 4_000_000 // n))
    for start in range(0, bootstrap, chunk):
        size = min(chunk, bootstrap - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=size)  # one resample of the images per row
        means[:, start:start + size] = diff @ counts.T / n
    alpha = (1 - level) / 2
    return np.quantile(means, [alpha, 1 - alpha], axis=1).T
