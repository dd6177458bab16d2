"""``seprobe models`` and ``seprobe complexity``."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import SeprobeError
from .app import FormatOpt, OutputOpt, _err, app, echo, emit, flag
from .options import CONVENTION, KNOBS, TIMING, with_groups


@app.command("models")
def models_cmd(fmt: FormatOpt = None, output: OutputOpt = None) -> None:
    """List every registered model with its parameter count and its counterpart without SE."""
    from ..io import check_output_file
    from ..models.registry import models_table

    check_output_file(output, "output")
    emit({"models": models_table()}, fmt, output, "models")


@app.command("complexity")
@with_groups(KNOBS, CONVENTION, TIMING)
def complexity_cmd(
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", metavar="NAME", help="seprobe name, timm:NAME or torchvision:NAME (repeatable)"),
    ] = None,
    weights: Annotated[
        list[str] | None,
        typer.Option(metavar="PATH", help="a checkpoint per --model, in order: a pruned or ablated network is counted "
                                          "as written (repeatable)"),
    ] = None,
    input_size: Annotated[
        int | None, typer.Option(metavar="N", help="square input side (default: the model's)")
    ] = None,
    per_block: Annotated[bool, typer.Option("--per-block", help="one row per SE block, and per stage")] = False,
    time_it: Annotated[bool, typer.Option("--time", help="measure forward and forward+backward time")] = False,
    fmt: FormatOpt = None,
    output: OutputOpt = None,
    knobs: dict | None = None,
    convention: dict | None = None,
    timing: dict | None = None,
) -> None:
    """Multiply-adds and parameters of SE models against the same networks without SE (and --time)."""
    from .. import api
    from ..io import check_output_file
    from ..tables import format_for

    check_output_file(output, "output")
    if output is not None:
        format_for(output, fmt)
    if fmt == "csv" and output is None and (per_block or time_it):
        raise SeprobeError("--format csv prints one table, and --per-block / --time add more; valid: --output "
                           "FILE.csv (one file per table), or --format json")
    from ..cost.settings import FlopConvention, TimingSetup

    timing = TimingSetup(**timing)  # checked whether or not --time is given: a nonsense value is an error either way
    report = api.complexity(model or _default_model(), input_size=input_size, weights=weights,
                            convention=FlopConvention(**convention), per_block=per_block,
                            time=timing if time_it else None, progress=_err, **knobs)
    for knob, names in report.ignored.items():
        _err(f"seprobe: warning: {flag(knob)} does not apply to {', '.join(names)} (no SE, or not an seprobe model): "
             "ignored there")
    if output is not None or fmt not in (None, "table"):
        emit(report.tables(with_operations=fmt != "csv" or output is not None), fmt, output, "complexity")
        if output is None:
            return
    echo(report.text(), nl=False)


def _default_model() -> list[str]:
    from ..config import load_defaults

    model = load_defaults().get("model")
    if model is None:
        raise SeprobeError("missing --model; e.g. seprobe complexity --model se_resnet50 (names: `seprobe models`, "
                           "timm:NAME, torchvision:NAME)")
    return [model]
