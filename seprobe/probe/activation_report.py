"""What ``seprobe activations`` writes: the tidy table (CSV, Parquet), the figures of the paper's Figs. 6 and 7
(PNG, SVG), the per-block class-specificity scores and a summary, each file atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_write, atomic_write_text
from .activations import ActivationRun

ALL = "all classes"


def _group_name(run: ActivationRun, group: int) -> str:
    return ALL if group == run.stats.all_group else run.images.class_names[group]


def tidy_table(run: ActivationRun, classes: list[int] | None) -> pd.DataFrame:
    """One row per (block, class, channel): mean, std, count; ``classes`` and the all-classes group
    (``None``: every class)."""
    groups = (list(range(run.stats.num_classes)) if classes is None else list(classes)) + [run.stats.all_group]
    frames = []
    for g in run.gates:
        b = run.stats.blocks[g.name]
        std = b.std()
        for group in groups:
            if b.count[group] == 0:
                continue
            frames.append(pd.DataFrame({
                "block": g.name, "stage": g.stage, "class_index": -1 if group == run.stats.all_group else group,
                "class_name": _group_name(run, group), "channel": np.arange(b.mean.shape[1]),
                "mean": b.mean[group], "std": std[group], "count": b.count[group]}))
    return pd.concat(frames, ignore_index=True)


def specificity_table(run: ActivationRun, classes: list[int]) -> pd.DataFrame:
    rows = []
    for g in run.gates:
        b = run.stats.blocks[g.name]
        overall_mean, overall_std = b.mean[run.stats.all_group], b.std()[run.stats.all_group]
        row = {"block": g.name, "stage": g.stage, "channels": g.channels,
               "class_specificity": run.stats.class_specificity(g.name),
               "between_class_std": run.stats.between_class_std(g.name),
               "share_above_0.9": run.stats.fraction_above(g.name, 0.9),
               "mean_gate": float(overall_mean.mean()), "mean_channel_std": float(np.nanmean(overall_std))}
        for c in classes:
            # how far the class's mean gates lie from the all-classes means, in all-classes standard deviations
            with np.errstate(invalid="ignore", divide="ignore"):
                z = np.abs(b.mean[c] - overall_mean) / overall_std
            row[f"deviation_{run.images.class_names[c]}"] = float(np.nanmean(z)) if np.isfinite(z).any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def sampled_channels(channels: int, k: int, seed: int = 0) -> np.ndarray:
    """``k`` channels drawn uniformly without replacement (all of them when ``k >= channels``), sorted."""
    if k >= channels:
        return np.arange(channels)
    return np.sort(np.random.default_rng(seed).choice(channels, size=k, replace=False))


def save_figure(fig, path: Path) -> list[Path]:
    """``path``.png and ``path``.svg, each atomically, without timestamps and with fixed SVG element ids (matplotlib
    draws them from ``uuid4`` unless ``svg.hashsalt`` is set), so the same figure gives the same bytes."""
    import matplotlib

    out = []
    for fmt in ("png", "svg"):
        target = path.with_suffix(f".{fmt}")
        with matplotlib.rc_context({"svg.hashsalt": "seprobe"}):
            out.append(atomic_write(target, lambda tmp, fmt=fmt: fig.savefig(
                tmp, format=fmt, dpi=110, metadata={"Date": None} if fmt == "svg" else {"Software": None})))
    return out


def _block_figure(run: ActivationRun, blocks: list[str], k: int, path: Path, title: str, ylabel: str,
                  draw) -> list[Path]:
    """One panel per block over ``k`` sampled channels; ``draw(ax, block_stats, channels)`` draws its lines,
    with its legend taken from the first panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(blocks))
    rows = -(-len(blocks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(blocks):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, blocks, strict=False):
        b = run.stats.blocks[name]
        idx = sampled_channels(b.mean.shape[1], k)
        draw(ax, b, idx)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(f"channel (sampled {len(idx)} of {b.mean.shape[1]})", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    written = save_figure(fig, path)
    plt.close(fig)
    return written


def figure_class_means(run: ActivationRun, classes: list[int], blocks: list[str], k: int, path: Path) -> list[Path]:
    """The paper's Fig. 6: per block, the mean gate of each sampled channel for each class and for all classes."""
    import seaborn as sns

    palette = sns.color_palette("deep", len(classes))

    def draw(ax, b, idx):
        for color, c in zip(palette, classes, strict=True):
            ax.plot(range(len(idx)), b.mean[c, idx], color=color, lw=1.2, label=run.images.class_names[c])
        ax.plot(range(len(idx)), b.mean[run.stats.all_group, idx], color="black", lw=1.4, ls="--", label=ALL)

    return _block_figure(run, blocks, k, path, f"Class-specific excitation: {run.loaded.name}", "mean excitation",
                         draw)


def figure_class_spread(run: ActivationRun, cls: int, blocks: list[str], k: int, path: Path) -> list[Path]:
    """The paper's Fig. 7: per block, mean and sample standard deviation (n - 1) of the gates over one class's
    images; with a single view the standard deviation is undefined and no band is drawn."""
    views = int(run.stats.blocks[blocks[0]].count[cls])

    def draw(ax, b, idx):
        mean = b.mean[cls, idx]
        x = np.arange(len(idx))
        ax.plot(x, mean, color="C0", lw=1.2, label=f"{run.images.class_names[cls]} mean")
        if views >= 2:
            std = b.std()[cls, idx]
            ax.fill_between(x, mean - std, mean + std, color="C0", alpha=0.25, label="± sample std (n - 1)")
        ax.plot(x, b.mean[run.stats.all_group, idx], color="black", lw=1, ls="--", label=ALL)

    spread = "" if views >= 2 else "; one view: no standard deviation"
    title = f"Excitation within one class ({views} views{spread}): {run.images.class_names[cls]}"
    return _block_figure(run, blocks, k, path, title, "excitation", draw)


def summary_markdown(run: ActivationRun, classes: list[int], spec: pd.DataFrame) -> str:
    lm = run.loaded
    lines = [f"# Excitation analysis: {lm.name}", "",
             f"- model `{lm.name}`, weights `{lm.weights}`",
             f"- data: {len(run.images.paths)} images ({run.images.layout}), {run.views} view(s) each; "
             f"{len(set(run.images.labels))} classes",
             f"- preprocessing: resize {lm.preprocessing.resize}, centre crop {lm.preprocessing.crop}, "
             f"{lm.preprocessing.interpolation}, mean {lm.preprocessing.mean}, std {lm.preprocessing.std}",
             f"- classes shown: {', '.join(f'{run.images.class_names[c]} ({c})' for c in classes)}",
             f"- SE blocks: {', '.join(f'{g.name} ({g.gate_path}, {g.channels} ch)' for g in run.gates)}"]
    if run.top1 is not None:
        lines.append(f"- accuracy on the evaluation crops of {run.evaluated} images: top-1 {run.top1:.3f}, "
                     f"top-5 {run.top5:.3f}")
    lines.append(f"- {len(run.images.paths) * run.views} views in {run.seconds:.0f} s "
                 f"({len(run.images.paths) * run.views / max(run.seconds, 1e-9):.0f} images/s)")
    lines += ["", "## Class specificity per block", "",
              "`class_specificity`: share of the gates' variance explained by the class (between-class sum of "
              "squares over total, pooled over channels; 0 = class-agnostic, 1 = the class decides the gates), "
              "scale-free; `between_class_std`: how far the gates move from class to class, in gate units "
              "(per channel the std of the class means, averaged over channels). "
              "`share_above_0.9`: fraction of all gate values >= 0.9 (saturated, close to identity). "
              "`deviation_<class>`: mean over channels of |class mean - all-classes mean| / all-classes std. "
              "Empty where a block's gates do not vary at all. Every std here and in `gates.csv` is the sample "
              "standard deviation (n - 1 denominator), empty for a class with a single view.", "",
              spec.to_markdown(index=False, floatfmt=".3f", missingval="-")]
    if run.failed:
        lines += ["", "## Skipped images", ""] + [f"- {f}" for f in sorted(set(run.failed))]
    if run.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in run.notes]
    return "\n".join(lines) + "\n"


def write_outputs(run: ActivationRun, out: Path, classes: list[int], blocks: list[str], k: int,
                  spec: pd.DataFrame, all_classes_table: bool = False, save_stats: bool = True) -> list[Path]:
    """Everything ``seprobe activations`` writes; ``spec`` is :func:`specificity_table`'s result.
    ``save_stats`` writes the mergeable statistics of every class (``stats.npz``, tens of MB for 1000 classes)."""
    table = tidy_table(run, None if all_classes_table else classes)
    written = [
        atomic_write(out / "gates.csv", lambda tmp: table.to_csv(tmp, index=False)),
        atomic_write(out / "gates.parquet", lambda tmp: table.to_parquet(tmp, index=False)),
        atomic_write(out / "specificity.csv", lambda tmp: spec.to_csv(tmp, index=False)),
        atomic_write_text(out / "summary.md", summary_markdown(run, classes, spec)),
    ]
    if save_stats:
        written.append(run.stats.save(out / "stats.npz"))
    written += figure_class_means(run, classes, blocks, k, out / "fig6_class_means")
    for c in classes[:2]:
        written += figure_class_spread(run, c, blocks, k, out / f"fig7_{run.images.class_names[c].replace(' ', '_')}")
    return written
