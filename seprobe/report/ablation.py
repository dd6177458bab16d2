"""What ``seprobe ablate`` writes: the tidy table (CSV, Parquet), a summary, and two figures (PNG, SVG): the change
of top-1 and the KL divergence per block with their intervals, and accuracy against the SE cost removed along the
cumulative curve. All files are written into a temporary folder first and moved into place together."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..figures import new_figure, save_figure
from ..io import atomic_write, atomic_write_text, output_set
from ..probe.ablation import AblationResult
from ..probe.ablation_plan import gate_names

COLUMNS = ("label", "group", "mode", "step", "blocks", "n_blocks", "images", "top1", "top5", "top1_change",
           "top1_low", "top1_high", "top5_change", "top5_low", "top5_high", "within_noise", "agreement", "kl",
           "params_saved", "macs_saved", "params_saved_exported", "macs_saved_exported", "macs_saved_pct",
           "se_macs_removed_pct")


def tidy_table(result: AblationResult) -> pd.DataFrame:
    """One row per evaluation (the full network first), with the model and the calibration source."""
    table = result.table[[c for c in COLUMNS if c in result.table]].copy()
    table.insert(0, "model", result.network.name)
    table["calibration"] = calibration_text(result)
    return table


def _pct(v: float) -> str:
    return f"{100 * v:+.1f}"


def display_table(result: AblationResult, rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rows (all by default) as people read them: changes in points with their intervals, savings."""
    rows = (result.table if rows is None else rows).reset_index(drop=True)
    shown = pd.DataFrame({"ablation": rows["label"], "mode": rows["mode"]})
    if result.scored:
        shown["top-1 %"] = (100 * rows["top1"]).round(1)
        shown["Δ top-1 (95 % CI)"] = [f"{_pct(r.top1_change)} [{_pct(r.top1_low)}, {_pct(r.top1_high)}]"
                                      for r in rows.itertuples()]
        shown["Δ top-5 (95 % CI)"] = [f"{_pct(r.top5_change)} [{_pct(r.top5_low)}, {_pct(r.top5_high)}]"
                                      for r in rows.itertuples()]
        shown["within noise"] = ["-" if m == "none" else "yes" if w else "**no**"  # the full network: no change
                                 for m, w in zip(rows["mode"], rows["within_noise"], strict=True)]
    shown["agreement %"] = (100 * rows["agreement"]).round(1)
    shown["KL"] = rows["kl"].map(lambda v: f"{v:.4f}")
    shown["params saved"] = rows["params_saved_exported"]
    shown["MACs saved (M)"] = (rows["macs_saved_exported"] / 1e6).round(3)
    shown["SE MACs removed %"] = rows["se_macs_removed_pct"].round(1)
    return shown


def study_table(result: AblationResult) -> pd.DataFrame:
    """The ablation study's table (``reports/ablation.md``): one row per ablation, changes in points with their
    95 % intervals."""
    t = result.table
    rows = pd.DataFrame({"ablation": t["label"], "group": t["group"], "mode": t["mode"]})
    rows["top1"] = (100 * t["top1"]).round(1)
    for key in ("top1", "top5"):
        rows[f"d_{key}"] = (100 * t[f"{key}_change"]).round(1)
        rows[f"d_{key}_ci"] = [f"[{100 * lo:+.1f}, {100 * hi:+.1f}]" for lo, hi in zip(t[f"{key}_low"],
                                                                                    t[f"{key}_high"], strict=True)]
    rows["within_noise"] = t["within_noise"].map({True: "yes", False: "no"})  # empty for the full network
    rows["agreement"] = (100 * t["agreement"]).round(1)
    rows["kl"] = t["kl"].round(4)
    rows["se_macs_removed_pct"] = t["se_macs_removed_pct"].round(1)
    rows["params_saved"] = t["params_saved_exported"]
    return rows


def summary_markdown(result: AblationResult) -> str:
    lm, t = result.network, result.table
    full = t.iloc[0]
    lines = [f"# SE block ablation: {lm.name}", "",
             f"- model `{lm.name}`, weights `{lm.weights}`; {result.total_params / 1e6:.3f} M parameters, "
             f"{result.total_macs / 1e6:.1f} M multiply-adds at {lm.preprocessing.crop}x{lm.preprocessing.crop}",
             f"- evaluation: {result.evaluated} images ({result.images.layout}), "
             f"{len(set(result.images.labels))} classes; evaluation crop resize {lm.preprocessing.resize}, "
             f"crop {lm.preprocessing.crop}"]
    if result.scored:
        lines.append(f"- full network: top-1 {100 * full.top1:.1f} %, top-5 {100 * full.top5:.1f} %")
    if result.calibration is not None:
        lines.append(f"- `mean` mode calibration: {calibration_text(result)}")
    lines.append(f"- SE blocks: {', '.join(f'{g.name} ({g.channels} ch)' for g in result.blocks)}")
    lines.append(f"- {len(t) - 1} ablations in {result.seconds:.0f} s")
    lines += ["", "`identity`: the gate is 1 (the block removed). `mean`: the gate is its per-channel mean over the "
              "calibration images (a fixed channel scale). Δ: ablated minus full, in percentage points, with a "
              f"{int(100 * result.level)} % paired-bootstrap interval over images ({result.bootstrap} resamples, seed "
              f"{result.seed}); *within noise* when the interval holds 0. Agreement: share of images whose top-1 "
              "prediction is unchanged. KL: mean KL(full || ablated) of the softmax, in nats. Savings as exported "
              "(a `mean` block folded into the adjacent layer saves all its cost; kept as a scale module it keeps "
              "C parameters and one multiply per element); multiply-adds counted as in `seprobe complexity "
              "--per-block`."]
    if "constant" in result.modes:
        lines += ["", "`constant`: every value of the gate is 1/2 (a sigmoid gate's value at zero excitation); "
                  "saved as a `mean` block is."]
    if any(g.spatial_name for g in result.blocks):
        lines += ["", "CBAM: a block's name is its channel gate (`s`), `<block>.spatial` its spatial gate (`M_s`, "
                  "after the channel gate), each ablated on its own: `identity` M_s = 1, `mean` M_s = its mean over "
                  "every position of every calibration image (one number per block), `constant` M_s = 1/2. A "
                  "frozen spatial gate exports as a one-parameter scale; the SE costs count both gates."]
    for group, title in (("block", "Every block alone"), ("set", "Chosen sets"), ("stage", "Each stage"),
                         ("cumulative", "Cumulative removal")):
        rows = t[t["group"] == group]
        if rows.empty:
            continue
        lines += ["", f"## {title}", ""]
        if group == "cumulative" and result.orders:
            by = {"kl": "single-block KL, smallest first", "top1": "single-block top-1 change, smallest drop "
                  "first", "network": "network order", "reverse": "reverse network order",
                  "given": "the given order"}.get(result.order_by, result.order_by)
            lines += [f"Order ({by}): " + "; ".join(f"{m}: {' → '.join(o)}" for m, o in result.orders.items()),
                      "", "Each row removes its block in addition to every block above it.", ""]
        lines.append(display_table(result, rows).to_markdown(index=False))
    if result.failed:
        lines += ["", "## Skipped images", ""] + [f"- {f}" for f in sorted(set(result.failed))]
    if notes(result):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes(result)]
    return "\n".join(lines) + "\n"


def figure_blocks(result: AblationResult, path: Path) -> list[Path]:
    """Per block and mode: the change of top-1 with its interval, and the mean KL divergence."""
    import seaborn as sns

    rows = result.table[result.table["group"] == "block"]
    if rows.empty:
        return []
    blocks = [name for name in gate_names(result.blocks) if name in set(rows["label"])]
    modes = list(dict.fromkeys(rows["mode"]))
    palette = dict(zip(modes, sns.color_palette("deep", len(modes)), strict=True))
    panels = 2 if result.scored else 1
    with new_figure(panels, 1, figsize=(max(6, 0.75 * len(blocks) + 2), 3.0 * panels), squeeze=False) as (fig, axes):
        _draw_blocks(result, rows, blocks, modes, palette, axes)
        fig.suptitle(result.network.name, fontsize=10)
        fig.tight_layout()
        return save_figure(fig, path)


def _draw_blocks(result: AblationResult, rows: pd.DataFrame, blocks: list[str], modes: list[str], palette,
                 axes) -> None:
    x = np.arange(len(blocks))
    width = 0.8 / len(modes)
    for j, mode in enumerate(modes):
        r = rows[rows["mode"] == mode].set_index("label").loc[blocks]
        offset = (j - (len(modes) - 1) / 2) * width
        if result.scored:
            ax = axes[0, 0]
            y = 100 * r["top1_change"].to_numpy()
            err = 100 * np.abs(np.stack([r["top1_change"] - r["top1_low"], r["top1_high"] - r["top1_change"]]))
            ax.errorbar(x + offset, y, yerr=err, fmt="o", color=palette[mode], capsize=3, label=mode)
        axes[-1, 0].bar(x + offset, r["kl"].to_numpy(), width=width, color=palette[mode], label=mode)
    if result.scored:
        ax = axes[0, 0]
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylabel("Δ top-1 (points)")
        ax.set_title(f"Each SE block alone: change against the full network ({int(100 * result.level)} % paired-"
                     "bootstrap interval)", fontsize=10)
        ax.legend(fontsize=8)
    axes[-1, 0].set_ylabel("mean KL(full || ablated)")
    axes[-1, 0].set_yscale("symlog", linthresh=1e-3)  # KL spans 0 to tens of nats across blocks and modes
    axes[-1, 0].legend(fontsize=8)
    for ax in axes[:, 0]:
        ax.set_xticks(x, blocks, fontsize=8)
        ax.grid(axis="y", alpha=0.3)


def figure_cumulative(result: AblationResult, path: Path) -> list[Path]:
    """Top-1 (or agreement, without labels) against the share of SE multiply-adds removed, block after block."""
    import seaborn as sns

    t = result.table
    rows = t[t["group"] == "cumulative"]
    if rows.empty:
        return []
    full = t.iloc[0]
    key = "top1" if result.scored else "agreement"
    modes = list(dict.fromkeys(rows["mode"]))
    palette = dict(zip(modes, sns.color_palette("deep", len(modes)), strict=True))
    with new_figure(figsize=(7, 4.2)) as (fig, ax):
        for mode in modes:
            r = rows[rows["mode"] == mode].sort_values("step")
            xs = np.r_[0.0, r["se_macs_removed_pct"].to_numpy()]
            ys = 100 * np.r_[full[key], r[key].to_numpy()]
            ax.plot(xs, ys, marker="o", color=palette[mode], label=mode)
            if result.scored:
                low = 100 * np.r_[full.top1, full.top1 + r["top1_low"].to_numpy()]
                high = 100 * np.r_[full.top1, full.top1 + r["top1_high"].to_numpy()]
                ax.fill_between(xs, low, high, color=palette[mode], alpha=0.15, lw=0)
            for xv, yv, name in zip(xs[1:], ys[1:], r["label"], strict=True):
                ax.annotate(name.lstrip("+"), (xv, yv), fontsize=6, xytext=(2, 3), textcoords="offset points",
                            color=palette[mode])
        ax.set_xlabel("SE multiply-adds removed (% of all SE blocks')")
        ax.set_ylabel("top-1 (%)" if result.scored else "agreement with the full network (%)")
        band = f"\n(band: {int(100 * result.level)} % paired-bootstrap interval of the change)"
        ax.set_title(f"{result.network.name}: removing SE blocks one after another" + (band if result.scored else ""),
                     fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        return save_figure(fig, path)


def write_outputs(result: AblationResult, out: str | os.PathLike) -> list[Path]:
    """``ablation.csv``, ``ablation.parquet``, ``summary.md``, ``blocks.{png,svg}`` and, with a cumulative
    curve, ``cumulative.{png,svg}`` in ``out``, as one output set (:func:`seprobe.io.output_set`): all of them
    appear together, or, on any failure or interrupt, none does and ``out`` stays as it was."""
    out = Path(out)
    with output_set():
        table = tidy_table(result)
        written = [atomic_write(out / "ablation.csv", lambda tmp: table.to_csv(tmp, index=False, lineterminator="\n")),
                   atomic_write(out / "ablation.parquet", lambda tmp: table.to_parquet(tmp, index=False)),
                   atomic_write_text(out / "summary.md", summary_markdown(result))]
        written += figure_blocks(result, out / "blocks")
        written += figure_cumulative(result, out / "cumulative")
    return written


def calibration_text(result: AblationResult) -> str:
    """Where the ``mean`` mode's calibration images came from, in words."""
    cal = result.calibration
    if cal is None:
        return ""
    if cal.source.calibration_per_class is not None:
        text = (f"{cal.source.calibration_per_class} image(s) per class taken out of the evaluation data "
                f"({cal.images} images), disjoint from the {cal.evaluation} evaluation images")
    else:
        text = f"a separate calibration set of {cal.images} images ({cal.layout})"
        text += (f", sharing {cal.overlap} images with the evaluation set (overlap allowed)" if cal.overlap
                 else ", disjoint from the evaluation images")
    if cal.source.calibration_views > 1:
        text += f"; {cal.source.calibration_views} views each (the evaluation crop and augmented crops)"
    return text


def notes(result: AblationResult) -> list[str]:
    """What a reader of the table must know: untrained weights, unscored labels, skipped images, the noise."""
    out = []
    if result.network.random:
        out.append("WARNING: random weights: what an untrained network's SE blocks are worth says nothing about a "
                   "trained one")
    if result.mean_skipped:
        out.append("mode mean was not run: it needs calibration images (images per class taken out of the data, or "
                   "a separate folder)")
    if not result.scored:
        out.append("the labels do not index the model's outputs (not ImageNet-1k labels for a 1000-way "
                   "classifier): accuracy is not scored; agreement and KL compare with the full network")
    if result.failed:
        out.append(f"{len(set(result.failed))} unreadable images were skipped")
    n = result.evaluated
    if result.scored and n:
        out.append(f"on {n} images one image is {100 / n:.2f} % of accuracy; a change whose "
                   f"{int(100 * result.level)} % interval (paired bootstrap over images, {result.bootstrap} "
                   f"resamples, seed {result.seed}) contains 0 is within noise")
    return out


def text(result: AblationResult) -> str:
    """The terminal view: one row per ablation, then the notes."""
    lines = [display_table(result).to_string(index=False)]
    lines += [f"Note: {n}." for n in notes(result)]
    return "\n".join(lines) + "\n"
