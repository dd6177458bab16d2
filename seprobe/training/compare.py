"""What a design choice is worth across training runs: the mean error of each variant over seeds, and its paired
difference to a baseline trained with the same seeds, with Student's t interval over the seeds.

A seed fixes the data order, the augmentation and the initial weights alike for every variant, so the runs of
one seed are paired: ``d_s = err(variant, s) - err(baseline, s)``; the interval is
``mean(d) ± t_{0.975, n-1} · sd(d) / sqrt(n)`` (sample standard deviation, ``n - 1``), and a difference whose
interval holds 0 is within noise. With one seed there is no interval.
"""

from __future__ import annotations

import math

import pandas as pd

from ..errors import SeprobeError, check_int

#: Student's t quantile t_{0.975, df} for df = 1..30 (beyond, the normal 1.960 is within 0.03)
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom (two-sided 95 %)."""
    check_int("degrees of freedom", df)
    return T975[df - 1] if df <= len(T975) else 1.960


def compare(runs: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """``runs``: one row per (``variant``, ``seed``) with its ``top1_err`` (%). One row per variant (in the order
    first seen): seeds, mean and sample std of the error, and the paired difference to ``baseline`` with its
    95 % t interval over the seeds both have (``within_noise`` when it holds 0; empty for one seed)."""
    if baseline not in set(runs["variant"]):
        raise SeprobeError(f"no runs of the baseline {baseline!r}; valid: {', '.join(dict.fromkeys(runs['variant']))}")
    base = runs[runs["variant"] == baseline].set_index("seed")["top1_err"]
    rows = []
    for variant, group in runs.groupby("variant", sort=False):
        err = group.set_index("seed")["top1_err"]
        row = {"variant": variant, "seeds": len(err), "top1_err": err.mean(),
               "top1_err_std": err.std(ddof=1) if len(err) > 1 else math.nan}
        if variant != baseline:
            shared = err.index.intersection(base.index)
            d = err[shared] - base[shared]
            n = len(d)
            half = t975(n - 1) * d.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
            row.update(diff=d.mean() if n else math.nan, diff_low=d.mean() - half, diff_high=d.mean() + half,
                       paired_seeds=n, within_noise=bool(d.mean() - half <= 0 <= d.mean() + half) if n > 1 else None)
        rows.append(row)
    return pd.DataFrame(rows)


def accuracy_standard_error(accuracy: float, images: int) -> float:
    """One standard error of an accuracy measured on ``images`` independent test images: sqrt(p (1 - p) / n)."""
    return math.sqrt(accuracy * (1 - accuracy) / images)
