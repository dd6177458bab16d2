"""The terminal view of ``seprobe complexity``: one screen that says what SE costs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .complexity import Complexity, block_table, stage_table

if TYPE_CHECKING:
    from .timing import TimingResult

_CATEGORY_NAMES = {"norm": "BatchNorm", "act": "activations", "add": "residual adds", "se_gate": "SE gates",
                   "se_act": "SE hidden ReLU", "pool": "pooling", "se_squeeze": "SE squeeze",
                   "mul": "other elementwise products"}


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
    lines.append("Convention: " + first.convention.describe() + ".")
    for c in results:
        excluded = c.flops.excluded(c.convention)
        left = [f"{_CATEGORY_NAMES.get(k, k)} {_si(v)}" for k, v in sorted(excluded.items())]
        left += [f"{op} x{n} (no cost formula)" for op, n in sorted(c.flops.unsupported.items())]
        if left:
            lines.append(f"Not counted in {c.model}: " + ", ".join(left) + ".")
    for c in results:
        lines += [f"Note: {n}." for n in c.notes]
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
    lines += [f"Note: {n}." for n in t.notes]
    return "\n".join(lines) + "\n"
