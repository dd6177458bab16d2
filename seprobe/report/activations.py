"""What ``seprobe activations`` writes: the tidy table (CSV, Parquet), the figures of the paper's Figs. 6 and 7
(PNG, SVG), the per-block class-specificity scores and a summary, each file atomically; for a network with CBAM's
spatial gate, also the spatial maps' table (``spatial.csv``, ``spatial.parquet``, :func:`spatial_table`) and their
mergeable statistics (``spatial_stats.npz``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..figures import new_figure, save_figure
from ..io import atomic_write, atomic_write_text
from ..probe.activations import ActivationRun

ALL = "all classes"


def _group_name(run: ActivationRun, group: int) -> str:
    return ALL if group == run.stats.all_group else run.images.class_names[group]


def tidy_table(run: ActivationRun, classes: list[int] | None) -> pd.DataFrame:
    """One row per (block, class, channel): mean, std, count; ``classes`` and the all-classes group
    (``None``: every class)."""
    groups = _groups(run, classes)
    frames = []
    for g in run.blocks:
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


def _groups(run: ActivationRun, classes: list[int] | None) -> list[int]:
    return (list(range(run.stats.num_classes)) if classes is None else list(classes)) + [run.stats.all_group]


def spatial_table(run: ActivationRun, classes: list[int] | None) -> pd.DataFrame | None:
    """One row per (block, class) of the blocks with CBAM's spatial gate: the distribution of the spatial map
    ``M_s`` over every position of every image of the class (``images`` views of ``positions`` = H x W values
    each): ``mean``, ``std`` (the sample standard deviation, n - 1, over all those values), ``min``, ``max``;
    ``classes`` and the all-classes group (``None``: every class). ``None`` for a network without one."""
    if run.spatial is None:
        return None
    rows = []
    for g in run.blocks:
        if g.name not in run.spatial.blocks:
            continue
        b, images = run.spatial.blocks[g.name], run.stats.blocks[g.name].count
        std = b.std()
        for group in _groups(run, classes):
            if b.count[group] == 0:
                continue
            rows.append({"block": g.name, "gate": g.spatial_name, "stage": g.stage,
                         "class_index": -1 if group == run.stats.all_group else group,
                         "class_name": _group_name(run, group), "images": int(images[group]),
                         "positions": int(b.count[group] // images[group]), "values": int(b.count[group]),
                         "mean": b.mean[group, 0], "std": std[group, 0], "min": b.minimum[group, 0],
                         "max": b.maximum[group, 0]})
    return pd.DataFrame(rows)


def sampled_channels(channels: int, k: int, seed: int = 0) -> np.ndarray:
    """``k`` channels drawn uniformly without replacement (all of them when ``k >= channels``), sorted."""
    if k >= channels:
        return np.arange(channels)
    return np.sort(np.random.default_rng(seed).choice(channels, size=k, replace=False))


def _block_figure(run: ActivationRun, blocks: list[str], k: int, path: Path, title: str, ylabel: str,
                  draw) -> list[Path]:
    """One panel per block over ``k`` sampled channels; ``draw(ax, block_stats, channels)`` draws its lines,
    with its legend taken from the first panel."""
    cols = min(3, len(blocks))
    rows = -(-len(blocks) // cols)
    with new_figure(rows, cols, figsize=(4.6 * cols, 3.2 * rows), squeeze=False) as (fig, axes):
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
        return save_figure(fig, path)


def figure_class_means(run: ActivationRun, classes: list[int], blocks: list[str], k: int, path: Path) -> list[Path]:
    """The paper's Fig. 6: per block, the mean gate of each sampled channel for each class and for all classes."""
    import seaborn as sns

    palette = sns.color_palette("deep", len(classes))

    def draw(ax, b, idx):
        for color, c in zip(palette, classes, strict=True):
            ax.plot(range(len(idx)), b.mean[c, idx], color=color, lw=1.2, label=run.images.class_names[c])
        ax.plot(range(len(idx)), b.mean[run.stats.all_group, idx], color="black", lw=1.4, ls="--", label=ALL)

    return _block_figure(run, blocks, k, path, f"Class-specific excitation: {run.network.name}", "mean excitation",
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


def summary_markdown(run: ActivationRun, classes: list[int], scores: pd.DataFrame) -> str:
    lm = run.network
    lines = [f"# Excitation analysis: {lm.name}", "",
             f"- model `{lm.name}`, weights `{lm.weights}`",
             f"- data: {len(run.images.paths)} images ({run.images.layout}), {run.views} view(s) each; "
             f"{len(set(run.images.labels))} classes",
             f"- preprocessing: resize {lm.preprocessing.resize}, centre crop {lm.preprocessing.crop}, "
             f"{lm.preprocessing.interpolation}, mean {lm.preprocessing.mean}, std {lm.preprocessing.std}",
             f"- classes shown: {', '.join(f'{run.images.class_names[c]} ({c})' for c in classes)}",
             f"- SE blocks: {', '.join(f'{g.name} ({g.gate_path}, {g.channels} ch)' for g in run.blocks)}"]
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
              scores.to_markdown(index=False, floatfmt=".3f", missingval="-")]
    spatial = spatial_table(run, [])
    if spatial is not None:
        lines += ["", "## Spatial gates (CBAM)", "",
                  "The spatial map `M_s` of each block over every position of every image (all classes; per class in "
                  "`spatial.csv`): mean, sample standard deviation (n - 1) over those values, minimum and maximum. "
                  "`seprobe ablate` names the gate `<block>.spatial`.", "",
                  _spatial_display(spatial).to_markdown(index=False, floatfmt=".3f")]
    if run.failed:
        lines += ["", "## Skipped images", ""] + [f"- {f}" for f in sorted(set(run.failed))]
    if notes(run):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes(run)]
    return "\n".join(lines) + "\n"


def write_outputs(run: ActivationRun, out: Path, classes: list[int], blocks: list[str], k: int,
                  scores: pd.DataFrame, all_classes_table: bool = False, save_stats: bool = True) -> list[Path]:
    """Everything ``seprobe activations`` writes; ``scores`` is
    :func:`~seprobe.probe.activations.specificity_table`'s result.
    ``save_stats`` writes the mergeable statistics of every class (``stats.npz``, tens of MB for 1000 classes)."""
    table = tidy_table(run, None if all_classes_table else classes)
    written = [
        atomic_write(out / "gates.csv", lambda tmp: table.to_csv(tmp, index=False)),
        atomic_write(out / "gates.parquet", lambda tmp: table.to_parquet(tmp, index=False)),
        atomic_write(out / "specificity.csv", lambda tmp: scores.to_csv(tmp, index=False)),
        atomic_write_text(out / "summary.md", summary_markdown(run, classes, scores)),
    ]
    if save_stats:
        written.append(run.stats.save(out / "stats.npz"))
    spatial = spatial_table(run, None if all_classes_table else classes)
    if spatial is not None:  # CBAM's spatial maps
        written += [atomic_write(out / "spatial.csv", lambda tmp: spatial.to_csv(tmp, index=False)),
                    atomic_write(out / "spatial.parquet", lambda tmp: spatial.to_parquet(tmp, index=False))]
        if save_stats:
            written.append(run.spatial.save(out / "spatial_stats.npz"))
    written += figure_class_means(run, classes, blocks, k, out / "fig6_class_means")
    for c in classes[:2]:
        written += figure_class_spread(run, c, blocks, k, out / f"fig7_{run.images.class_names[c].replace(' ', '_')}")
    return written


def notes(run: ActivationRun) -> list[str]:
    """What the figures cannot say, and what the pass did that a reader must know."""
    out = list(run.images.notes)
    single, present = run.stats.single_view_classes()
    if single:
        out.append(f"WARNING: {single} of {present} classes have a single view (one image, {run.views} view(s) "
                   "each): their standard deviation is undefined (NaN, no band in Fig. 7); std is the sample std "
                   "(n - 1)")
    if single and single == present:
        out.append("WARNING: every class has a single view, so there is no within-class variance and "
                   "class_specificity is 1 by construction (where the gates vary at all); use 2 views or more, or "
                   "several images per class")
    if run.network.random:
        out.append("WARNING: random weights: these gate values come from an untrained network and say nothing "
                   "about what SE learns")
    if run.per_position:
        out.append("per-position gates (NoSqueeze) were averaged over positions: one value per channel and image")
    if run.views > 1:
        out.append(f"each image gave {run.views} views: the evaluation crop and {run.views - 1} augmented views "
                   "(random resized crops of 35-100 % of the area, random flips); accuracy uses the evaluation "
                   "crop only")
    if run.failed:
        out.append(f"{len(set(run.failed))} unreadable images were skipped")
    return out


def text(run: ActivationRun, specificity: pd.DataFrame) -> str:
    """The terminal view: accuracy, the shown blocks' scores, the notes."""
    lines = []
    if run.top1 is not None:
        lines.append(f"{run.network.name}: top-1 {run.top1:.3f}, top-5 {run.top5:.3f} on {run.evaluated} images")
    lines.append(specificity.to_string(index=False, float_format="{:.3f}".format))
    spatial = spatial_table(run, [])
    if spatial is not None:
        lines += ["Spatial gates (M_s over positions and images, all classes):",
                  _spatial_display(spatial).to_string(index=False, float_format="{:.3f}".format)]
    lines += [f"Note: {note}." for note in notes(run)]
    return "\n".join(lines) + "\n"


def _spatial_display(spatial: pd.DataFrame) -> pd.DataFrame:
    return spatial[["gate", "images", "positions", "mean", "std", "min", "max"]]
