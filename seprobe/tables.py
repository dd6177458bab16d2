"""Presentation of result tables (kept apart from computing them): terminal text, CSV, JSON, Markdown."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .errors import SeprobeError, check_choice
from .io import atomic_write_text

FORMATS = ("table", "csv", "json", "markdown")
_SUFFIX_FORMATS = {".csv": "csv", ".json": "json", ".md": "markdown", ".txt": "table"}


def render(df: pd.DataFrame, fmt: str = "table") -> str:
    check_choice("format", fmt, FORMATS)
    if fmt == "csv":
        return df.to_csv(index=False, lineterminator="\n")
    if fmt == "json":
        return df.to_json(orient="records", indent=2) + "\n"
    if fmt == "markdown":
        return df.to_markdown(index=False) + "\n"
    return df.to_string(index=False) + "\n"


def format_for(path: str | os.PathLike, fmt: str | None) -> str:
    """The explicit format, else the one the file's suffix implies."""
    if fmt is not None:
        return check_choice("format", fmt, FORMATS)
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        raise SeprobeError(
            f"cannot tell the format of {str(path)!r} from its suffix; valid: "
            f"{', '.join(_SUFFIX_FORMATS)} or --format {'|'.join(FORMATS)}"
        )
    return _SUFFIX_FORMATS[suffix]


def write_table(df: pd.DataFrame, path: str | os.PathLike, fmt: str | None = None) -> Path:
    return atomic_write_text(path, render(df, format_for(path, fmt)))
