"""What SE costs: multiply-adds and parameters of a model against the same network without SE.

Models are built on the ``meta`` device and given uninitialised CPU memory (``to_empty``): counting needs
shapes, not values, so no weight initialisation is paid for. An SE block preserves the shape of what it
recalibrates, so the network without SE is the SE model's graph less the SE blocks' own operators and
parameters: its counts are derived from the one trace (``trace_plain=True`` traces it separately instead;
the tests check that both agree).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import SeprobeError
from ..models.inventory import SEBlockInfo, se_blocks
from ..models.registry import build_model, get_spec, plain_counterpart
from ..paper import PaperFigure, paper_figure
from ..probe.loading import is_foreign
from .flops import FlopConvention, FlopCount, count_flops

if TYPE_CHECKING:
    import pandas as pd

SE_PARTS = ("fc", "squeeze", "gate", "act", "scale")


def uninitialised(name: str, **knobs: Any) -> nn.Module:
    """A registered model with zero weights, built without initialisation cost, in eval mode.

    Zeros rather than ``to_empty``'s leftover memory: stray denormal floats make CPU convolutions, and so the
    trace, several times slower, and zeros make the counting run deterministic.
    """
    model = build_model(name, device="meta", **knobs).to_empty(device="cpu").eval()
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            t.zero_()
    return model


@dataclass
class Complexity:
    """The counts of one model and of its counterpart without SE (``plain_*``; ``None`` for a plain model)."""

    model: str
    knobs: dict[str, Any]
    input_size: int
    convention: FlopConvention
    params: int
    flops: FlopCount
    blocks: list[SEBlockInfo]
    plain_model: str | None = None
    plain_params: int | None = None
    plain_flops: FlopCount | None = None
    paper: PaperFigure | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.flops.total(self.convention)

    @property
    def plain_total(self) -> int | None:
        return self.plain_flops.total(self.convention) if self.plain_flops else None


def measure(name: str, *, input_size: int | None = None, convention: FlopConvention | None = None,
            trace_plain: bool = False, **knobs: Any) -> Complexity:
    """Count one model (a registered name with knobs) and, for an SE model, the same network without SE.
    ``input_size`` defaults to the model's own (224; 299 for Inception-ResNet-v2)."""
    convention = convention or FlopConvention()
    if is_foreign(name):
        if knobs:
            raise SeprobeError(f"model knobs ({', '.join(knobs)}) apply to seprobe models, not {name!r}")
        return _measure_foreign(name, input_size, convention)
    spec = get_spec(name)
    input_size = input_size or spec.input_size
    if input_size < spec.min_input_size:
        raise SeprobeError(f"invalid input size {input_size} for {name}; valid: an integer >= {spec.min_input_size}")
    model = uninitialised(name, **knobs)
    x = torch.zeros(1, 3, input_size, input_size)
    blocks = se_blocks(model)
    result = Complexity(name, knobs, input_size, convention, _params(model), count_flops(model, x, blocks),
                        blocks)
    if spec.has_se:
        plain_name, plain_knobs = plain_counterpart(name, knobs)
        result.plain_model = plain_name
        if trace_plain:
            plain = uninitialised(plain_name, **plain_knobs)
            result.plain_params, result.plain_flops = _params(plain), count_flops(plain, x)
        else:
            result.plain_params = result.params - sum(b.params for b in blocks)
            result.plain_flops = result.flops.without_se()
    if input_size == spec.input_size:
        result.paper = paper_figure(name, knobs)
    result.notes = _notes(result)
    return result


def _measure_foreign(name: str, input_size: int | None, convention: FlopConvention) -> Complexity:
    """A timm or torchvision SE network, its SE blocks found as ``seprobe activations`` finds them; the network
    without SE is derived from the same trace, as for seprobe models."""
    from ..probe.gates import block_infos
    from ..probe.loading import foreign_input_size, foreign_model

    input_size = input_size or foreign_input_size(name)
    model = foreign_model(name).eval()
    blocks = block_infos(model, input_size)
    x = torch.zeros(1, 3, input_size, input_size)
    result = Complexity(name, {}, input_size, convention, _params(model), count_flops(model, x, blocks), blocks)
    if blocks:
        result.plain_model = f"{name} without SE"
        result.plain_params = result.params - sum(b.params for b in blocks)
        result.plain_flops = result.flops.without_se()
    return result


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _notes(c: Complexity) -> list[str]:
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

