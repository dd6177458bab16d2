"""The files ``seprobe prune`` writes: the pruned network and its tables, as one output set."""

from __future__ import annotations

import os
from pathlib import Path

from ..io import atomic_write, atomic_write_text, output_set
from ..models.ablated import export_pruned
from ..pruning.run import PruneResult

#: the pruned network's file in the output folder (loadable as ``--weights``)
NETWORK = "network.pth"


def _csv(path: Path, table) -> Path:
    return atomic_write(path, lambda tmp: table.to_csv(tmp, index=False, lineterminator="\n"))


def write_outputs(result: PruneResult, out: str | os.PathLike, num_classes: int | None = None) -> list[Path]:
    """``network.pth`` (format ``seprobe-pruned/1``, :func:`~seprobe.models.ablated.export_pruned`),
    ``summary.csv`` (cost and accuracy before and after), ``channels.csv`` (per group: width, kept),
    ``scores.csv`` (per channel: score, normalised score, kept) and ``summary.md`` in ``out``: all of them, or,
    on any failure or interrupt, none."""
    out = Path(out)
    net = result.network
    source = net.source
    with output_set():
        path = out / NETWORK
        export_pruned(result.pruned, path, model_name=source.name, knobs=source.knobs,
                      preprocessing=net.preprocessing, num_classes=num_classes)
        written = [path, _csv(out / "summary.csv", result.summary_table()),
                   _csv(out / "channels.csv", result.channels_table()),
                   _csv(out / "scores.csv", result.scores_table()),
                   atomic_write_text(out / "summary.md", f"# seprobe prune\n\n```\n{result.text()}```\n")]
    return written
