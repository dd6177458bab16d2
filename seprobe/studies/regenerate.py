"""Run studies into reports (``seprobe study run``, ``seprobe reports``): which studies run, which are skipped
and why, and the reports written all together."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SeprobeError
from ..io import check_output_dir, output_set
from .reports import write_index, write_report
from .runs import run_study
from .study_file import check_unique_names, load_study

#: study kinds that run only when asked (``seprobe reports --with-KIND``): slow, or need real data
ON_REQUEST = ("timing", "activations", "ablation", "training")


@dataclass
class StudiesRun:
    """The studies run, those skipped (name -> why), the reports written and the warnings raised."""

    ran: list[str]
    skipped: dict[str, str]
    written: list[Path]
    warnings: list[str]


def run_studies(paths: Sequence[str | os.PathLike], out: str | os.PathLike | None = None, *,
                skip_kinds: Sequence[str] = (), budget: str | None = None,
                progress: Callable[[str], None] = lambda msg: None) -> StudiesRun:
    """Run studies (``studies/*.toml``) into reports: every study is validated before any runs, and the reports
    are written together only once every study has run (``out`` defaults to ``reports/`` beside ``studies/``).
    Studies of ``skip_kinds``, and those whose inputs are not here, are skipped, with the reason. Training
    studies train with ``budget`` (default: each study's own) into ``<out>/<study>/runs``, run by run."""
    if not paths:
        raise SeprobeError("no study given; valid: study files such as studies/stages.toml", argument="paths")
    for p in paths:
        if Path(p).is_dir():
            raise SeprobeError(f"study {str(p)!r} is a folder; valid: a .toml study file (or seprobe.reports() on "
                               "the folder)", argument="paths")
    studies = [load_study(Path(p)) for p in paths]
    check_unique_names(studies)
    out_dirs = {s.name: Path(out) if out is not None else s.path.resolve().parent.parent / "reports" for s in studies}
    for d in set(out_dirs.values()):
        check_output_dir(d, "out")
    for s in studies:
        if s.kind == "training":
            from .trained import budget_of

            budget_of(s, budget)
    skipped, kept = {}, []
    for s in studies:
        if s.requested_as in skip_kinds:
            skipped[s.name] = f"a {s.requested_as} study, run only when asked"
        elif s.missing_inputs():
            skipped[s.name] = f"{', '.join(s.missing_inputs())} not found here"
        else:
            kept.append(s)
    for name, why in skipped.items():
        progress(f"skipping {name} ({why})")
    if not kept:
        raise SeprobeError(f"no study ran ({'; '.join(f'{k} skipped: {v}' for k, v in skipped.items())}); valid: "
                           "skip_kinds that lets them run, or their inputs here", argument="skip_kinds")
    results = []
    for s in kept:
        progress(f"running {s.name}" + (f" ({len(s.variants)} variants)" if s.variants else ""))
        runs = out_dirs[s.name] / ((s.training.runs if s.training else None) or s.name) / "runs"
        results.append(run_study(s, progress=lambda msg: progress(f"  {msg}"), runs=runs, budget=budget))
    written, warns = [], []
    with output_set():
        for r in results:
            written += write_report(r, out_dirs[r.study.name])
            warns += [f"{r.study.name}: {n}" for n in r.notes if "UNEXPLAINED" in n]
        for d in dict.fromkeys(out_dirs[r.study.name] for r in results):
            written.append(write_index(d))
    return StudiesRun([r.study.name for r in results], skipped, written, warns)


def reports(studies: str | os.PathLike = "studies", out: str | os.PathLike | None = None, *,
            include: Sequence[str] = (), budget: str | None = None,
            progress: Callable[[str], None] = lambda msg: None) -> StudiesRun:
    """Regenerate every report from the studies in the folder ``studies`` (``seprobe reports``), and the index.
    Studies of the kinds in :data:`ON_REQUEST` run only when ``include`` names their kind. That nothing ran is
    an error that says why each study was skipped."""
    folder = Path(studies)
    if folder.is_file():
        raise SeprobeError(f"studies {str(folder)!r} is a file; valid: a folder of .toml studies (or "
                           "seprobe.run_studies([file]))", argument="studies")
    if not folder.is_dir():
        raise SeprobeError(f"studies {str(folder)!r} does not exist; valid: a folder of .toml studies",
                           argument="studies")
    for kind in include:
        if kind not in ON_REQUEST:
            raise SeprobeError(f"unknown study kind {kind!r} in include; valid: {', '.join(ON_REQUEST)}",
                               argument="include")
    paths = sorted(folder.glob("*.toml"))
    if not paths:
        raise SeprobeError(f"studies {str(folder)!r} holds no .toml study; valid: a folder of studies",
                           argument="studies")
    return run_studies(paths, out, skip_kinds=[k for k in ON_REQUEST if k not in include], budget=budget,
                       progress=progress)
