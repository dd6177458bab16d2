"""What ``seprobe complexity`` shows: its tables, one terminal screen that says what SE costs, and the notes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..cost.complexity import Complexity
from ..cost.flops import FlopConvention

if TYPE_CHECKING:
    import pandas as pd

    from ..cost.timing import TimingResult

SE_PARTS = ("fc", "squeeze", "gate", "act", "scale")

_CATEGORY_NAMES = {"norm": "BatchNorm", "act": "activations", "add": "residual adds", "se_gate": "SE gates",
                   "se_act": "SE hidden ReLU", "pool": "pooling", "se_squeeze": "SE squeeze",
                   "mul": "other elementwise products", "se_norm": "SE BatchNorm (SRM)",
                   "se_add": "SE sums of the avg and max excitations (CBAM)", "se_spatial_pool":
                   "spatial gates' channel pooling", "se_spatial_norm": "spatial gates' BatchNorm",
                   "se_spatial_gate": "spatial gates"}


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3f} {unit}"
    return f"{n:.0f}"


def _columns(cols: dict[str, dict[str, str]]) -> str:
    """Row labels on the left, one right-aligned column per model (pandas is not needed for this)."""
    labels = list(dict.fromkeys(label for col in cols.values() for label in col))
    width = max(map(len, labels))
    widths = {name: max(len(name), *(len(v) for v in col.values())) for name, col in cols.items()}
    lines = [" " * width + "".join(f"  {name:>{widths[name]}}" for name in cols)]
    for label in labels:
        lines.append(f"{label:<{width}}" + "".join(f"  {col.get(label, ''):>{widths[name]}}"
                                                    for name, col in cols.items()))
    return "\n".join(lines)


def summary_text(results: list[Complexity]) -> str:
    cols = {}
    for c in results:
        col = {"multiply-adds (GFLOPs)": f"{c.total / 1e9:.4f}", "parameters (M)": f"{c.params / 1e6:.3f}"}
        if c.plain_flops is not None:
            df, dp = c.total - c.plain_total, c.params - c.plain_params
            col = {
                "multiply-adds (GFLOPs)": f"{c.total / 1e9:.4f}",
                "  without SE": f"{c.plain_total / 1e9:.4f}",
                "  SE's cost": f"{df / 1e9:+.4f} ({100 * df / c.plain_total:+.2f} %)",
                "parameters (M)": f"{c.params / 1e6:.3f}",
                "  without SE ": f"{c.plain_params / 1e6:.3f}",
                "  SE's cost ": f"{dp / 1e6:+.3f} ({100 * dp / c.plain_params:+.2f} %)",
            }
        if c.paper is not None:
            figures = [f"{c.paper.gflops:.2f} G" if c.paper.gflops else None,
                       f"{c.paper.mflops:.0f} M mult-adds" if c.paper.mflops else None,
                       f"{c.paper.params_m:.1f} M" if c.paper.params_m else None]
            col[f"paper ({c.paper.table})"] = ", ".join(f for f in figures if f) or "no complexity figure"
        cols[c.model if c.model not in cols else f"{c.model} ({len(cols)})"] = col
    first = results[0]
    sizes = sorted({c.input_size for c in results})
    lines = [f"seprobe complexity: one {' or '.join(f'3x{n}x{n}' for n in sizes)} image, "
             f"SE model against the same network without SE ({', '.join(c.plain_model or '-' for c in results)})",
             "", _columns(cols), ""]
    for c in results:
        if c.blocks:
            parts = c.flops.by_category
            lines.append(f"SE in {c.model}: {len(c.blocks)} blocks; FCs {_si(parts['se_fc'])} and scale "
                         f"{_si(parts['se_scale'])} multiply-adds; squeeze {_si(parts['se_squeeze'])} adds, gate "
                         f"{_si(parts['se_gate'])} values.")
    lines.append("Convention: " + describe_convention(first.convention) + ".")
    for c in results:
        excluded = c.flops.excluded(c.convention)
        left = [f"{_CATEGORY_NAMES.get(k, k)} {_si(v)}" for k, v in sorted(excluded.items())]
        left += [f"{op} x{n} (no cost formula)" for op, n in sorted(c.flops.unsupported.items())]
        if left:
            lines.append(f"Not counted in {c.model}: " + ", ".join(left) + ".")
    for c in results:
        lines += [f"Note: {n}." for n in notes(c)]
    return "\n".join(lines) + "\n"


def blocks_text(c: Complexity) -> str:
    blocks, stages = block_table(c), stage_table(c)
    if blocks.empty:
        return f"{c.model} has no SE blocks.\n"
    view = blocks[["block", "channels", "hidden", "params", "flops", "params_share_pct", "flops_share_pct"]]
    view = view.rename(columns={"flops": "mult-adds", "params_share_pct": "% SE params",
                                "flops_share_pct": "% SE mult-adds"})
    sview = stages.rename(columns={"flops": "mult-adds", "params_share_pct": "% SE params",
                                   "flops_share_pct": "% SE mult-adds"})
    return (f"SE blocks of {c.model}:\n{view.to_string(index=False, float_format='{:.1f}'.format)}\n\n"
            f"Per stage:\n{sview.to_string(index=False, float_format='{:.1f}'.format)}\n")


def timing_text(t: TimingResult) -> str:
    s = t.setup
    head = (f"Timing on {t.device_name} ({t.threads} threads), {t.date}: batch {s.batch_size}, {s.dtype}, "
            f"{'channels_last' if s.channels_last else 'contiguous'}{', torch.compile' if s.compile else ''}; "
            f"{s.warmup} warm-up + {s.repeats} timed iterations, interleaved")
    cols = ["model", "mode", "median_ms", "q1_ms", "q3_ms", "min_ms", "max_ms", "repeats", "per_image_ms",
            "images_per_s", "peak_memory_mb"]
    summary = t.summary[cols].to_string(index=False, float_format="{:.2f}".format)
    lines = [head, summary]
    if not t.ratios.empty:
        lines += ["", "SE model / model without SE, per pair of neighbouring iterations:",
                  t.ratios.to_string(index=False, float_format="{:.3f}".format)]
    lines += [f"Note: {n}." for n in timing_notes(t)]
    return "\n".join(lines) + "\n"


def timing_notes(t: TimingResult) -> list[str]:
    """What the timing tables do not say: a batch halved to fit, and what the CPU's memory figure is."""
    notes = [f"batch size {', then '.join(map(str, t.halved))} ran out of GPU memory; measured at "
             f"{t.setup.batch_size}"] if t.halved else []
    if t.process_peak_mb is not None:
        notes.append(f"CPU peak memory is the whole process's peak resident set: {t.process_peak_mb:.0f} MiB "
                     "(per-model peaks are measured on CUDA only)")
    return notes


def notes(c: Complexity) -> list[str]:
    """What the figures mean: the paper's figure where it differs, and the counting caveats."""
    notes = []
    fig = c.paper
    if fig is not None:
        diffs = []
        if fig.gflops is not None and round(c.total / 1e9, 2) != fig.gflops:
            diffs.append(f"{c.total / 1e9:.4f} GFLOPs vs the paper's {fig.gflops:.2f}")
        if fig.mflops is not None and round(c.total / 1e6) != fig.mflops:
            diffs.append(f"{c.total / 1e6:.1f} MFLOPs vs the paper's {fig.mflops:.0f}")
        if fig.params_m is not None and round(c.params / 1e6, 1) != fig.params_m:
            diffs.append(f"{c.params / 1e6:.3f} M parameters vs the paper's {fig.params_m:.1f} M")
        if diffs:
            notes.append(f"{c.model} ({fig.table}, {fig.label}): " + "; ".join(diffs)
                         + (f": {fig.note}" if fig.note else ""))
    if c.convention.bn:
        notes.append("BatchNorm counted as fvcore does: 2 operations per element in eval mode (scale and shift); "
                     "the paper's figures do not count it")
    return notes


def describe_convention(convention: FlopConvention) -> str:
    """The counting convention in words."""
    yes = ["conv", "linear", "SE scale (1/output element)"]
    no = []
    (yes if convention.pooling else no).append("pooling and SE squeeze (adds, 1/input element)")
    (yes if convention.bn else no).append("BatchNorm")
    (yes if convention.activations else no).append("activations and SE gates (1/output element)")
    (yes if convention.adds else no).append("residual adds")
    (yes if convention.muls else no).append("other elementwise products (residual scaling, 1/output element)")
    no.append("max-pool")
    return ("multiply-adds, counted as multiplications (1 MAC = 1 FLOP, as fvcore and the paper); counted: "
            + ", ".join(yes) + "; not counted: " + ", ".join(no))


def summary_table(results: list[Complexity]) -> pd.DataFrame:
    """One row per model: multiply-adds and parameters with and without SE, SE's cost, the paper's figure."""
    import pandas as pd

    rows = []
    for c in results:
        has_plain = c.plain_flops is not None
        se_flops = c.total - c.plain_total if has_plain else 0
        se_params = c.params - c.plain_params if has_plain else 0
        base_flops, base_params = (c.plain_total, c.plain_params) if has_plain else (c.total, c.params)
        rows.append({
            "model": c.model,
            "knobs": {k: list(v) if isinstance(v, tuple) else v for k, v in c.knobs.items()},
            "input_size": c.input_size,
            "gflops": c.total / 1e9,
            "params": c.params,
            "without_se": c.plain_model or c.model,
            "gflops_without_se": base_flops / 1e9,
            "params_without_se": base_params,
            "se_gflops": se_flops / 1e9,
            "se_gflops_pct": 100 * se_flops / base_flops,
            "se_params": se_params,
            "se_params_pct": 100 * se_params / base_params,
            "paper_table": c.paper.table if c.paper else None,
            "paper_gflops": c.paper.gflops if c.paper else None,
            "paper_params_m": c.paper.params_m if c.paper else None,
        })
    return pd.DataFrame(rows)


def breakdown_table(results: list[Complexity]) -> pd.DataFrame:
    """One row per model and operation category: operations counted, and whether the convention counts them."""
    import pandas as pd

    rows = []
    for c in results:
        counted = c.convention.categories()
        for category, ops in sorted(c.flops.by_category.items()):
            rows.append({"model": c.model, "category": category, "operations": ops, "counted": category in counted})
        for op, calls in sorted(c.flops.unsupported.items()):
            rows.append({"model": c.model, "category": op, "operations": None, "counted": False, "calls": calls})
    df = pd.DataFrame(rows)
    for column in ("operations", "calls"):  # integers, with a gap where an operator has no cost formula
        if column in df:
            df[column] = df[column].astype("Int64")
    return df


def block_table(c: Complexity) -> pd.DataFrame:
    """One row per SE block: channels, hidden width, parameters, operations by part, share of SE's total."""
    import pandas as pd

    counted = c.convention.categories()
    rows = []
    for b in c.blocks:
        parts = c.flops.per_block[b.name]
        flops = sum(n for part, n in parts.items() if f"se_{part}" in counted)
        rows.append({"block": b.name, "stage": b.stage, "channels": b.channels, "hidden": b.hidden_channels,
                     "params": b.params, "flops": flops, **{f"{p}_ops": parts.get(p, 0) for p in SE_PARTS}})
    df = pd.DataFrame(rows)
    if not df.empty:
        df["params_share_pct"] = 100 * df["params"] / df["params"].sum()
        df["flops_share_pct"] = 100 * df["flops"] / df["flops"].sum()
    return df


def stage_table(c: Complexity) -> pd.DataFrame:
    """SE's parameters and multiply-adds summed per stage, with each stage's share."""
    blocks = block_table(c)
    if blocks.empty:
        return blocks
    df = blocks.groupby("stage", as_index=False).agg(blocks=("block", "count"), params=("params", "sum"),
                                                     flops=("flops", "sum"))
    df["params_share_pct"] = 100 * df["params"] / df["params"].sum()
    df["flops_share_pct"] = 100 * df["flops"] / df["flops"].sum()
    return df


def tables(results: list[Complexity], per_block: bool = False, timing: TimingResult | None = None,
           with_operations: bool = True) -> dict[str, pd.DataFrame]:
    """``seprobe complexity``'s tables by name: ``summary``, per block and per stage (``per_block``),
    ``operations``, ``timing`` and ``timing_ratios``."""
    out = {"summary": summary_table(results)}
    if per_block:
        for c in results:
            out[f"blocks.{c.model}"] = block_table(c)
            out[f"stages.{c.model}"] = stage_table(c)
    if with_operations:
        out["operations"] = breakdown_table(results)
    if timing is not None:
        out["timing"] = timing.summary
        out["timing_ratios"] = timing.ratios
    return out


def text(results: list[Complexity], per_block: bool = False, timing: TimingResult | None = None) -> str:
    """The one-screen terminal view."""
    parts = [summary_text(results)]
    if per_block:
        parts += [blocks_text(c) for c in results]
    if timing is not None:
        parts.append(timing_text(timing))
    return "\n".join(parts)
