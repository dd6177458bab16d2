"""Every figure seprobe draws goes through here: matplotlib's non-interactive backend, a figure closed after use,
and files without timestamps whose bytes are the same for the same figure."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .io import atomic_write


@contextmanager
def new_figure(*args, **kwargs) -> Iterator[tuple]:
    """``plt.subplots(*args, **kwargs)`` on the Agg backend (no display needed), closed on exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(*args, **kwargs)
    try:
        yield fig, axes
    finally:
        plt.close(fig)


def save_figure(fig, path: Path, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """``path``.png and ``path``.svg, each atomically, without timestamps and with fixed SVG element ids (matplotlib
    draws them from ``uuid4`` unless ``svg.hashsalt`` is set), so the same figure gives the same bytes."""
    import matplotlib

    out = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        with matplotlib.rc_context({"svg.hashsalt": "seprobe"}):
            out.append(atomic_write(target, lambda tmp, fmt=fmt: fig.savefig(
                tmp, format=fmt, dpi=110, metadata={"Date": None} if fmt == "svg" else {"Software": None})))
    return out
