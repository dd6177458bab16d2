"""``seprobe study run`` and ``seprobe reports``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import _err, app, study_app
from .options import BudgetOpt, ReportsOutOpt


@study_app.command("run")
def study_run_cmd(
    paths: Annotated[list[Path], typer.Argument(metavar="STUDY.toml...", help="study files, e.g. studies/stages.toml")],
    out: ReportsOutOpt = None,
    budget: BudgetOpt = None,
) -> None:
    """Run studies into reports/<name>.md and .csv (and a figure); nothing is written if any study fails."""
    from ..studies.regenerate import run_studies

    _print_studies(run_studies(paths, out, budget=budget, progress=_err))


@app.command("reports")
def reports_cmd(
    studies: Annotated[Path, typer.Option(metavar="DIR", help="folder of study files")] = Path("studies"),
    out: ReportsOutOpt = None,
    with_timing: Annotated[bool, typer.Option("--with-timing", help="also run timing studies (slow)")] = False,
    with_activations: Annotated[
        bool, typer.Option("--with-activations", help="also run activations studies (real data, minutes)")
    ] = False,
    with_ablation: Annotated[
        bool, typer.Option("--with-ablation", help="also run ablation studies (real data, a few minutes)")
    ] = False,
    with_training: Annotated[
        bool, typer.Option("--with-training", help="also training studies: reports from the committed runs, training "
                                                   "only what is missing")
    ] = False,
    budget: BudgetOpt = None,
) -> None:
    """Regenerate every report from studies/ (timing, activations and ablation studies only when asked), and the
    index."""
    from ..studies.regenerate import reports

    asked = {"timing": with_timing, "activations": with_activations, "ablation": with_ablation,
             "training": with_training}
    _print_studies(reports(studies, out, include=[k for k, v in asked.items() if v], budget=budget, progress=_err))


def _print_studies(done) -> None:
    for path in done.written:
        _err(f"wrote {path}")
    for w in done.warnings:
        _err(f"seprobe: warning: {w}")
