"""Presentation of result tables (kept apart from computing them): terminal text, CSV, JSON, Markdown.

A command's result is a set of named tables. ``table`` and ``markdown`` print them one after another; ``json``
prints one document, ``{"schema": ..., "command": ..., "tables": {name: [records]}}``, with integers as integers,
missing values as ``null`` and structured cells (a model's knobs) as objects; ``csv`` holds one table, so several
tables go to one file each (``--output``), never into one stream.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .choices import FORMATS
from .errors import SeprobeError, check_choice
from .io import atomic_write_text

if TYPE_CHECKING:  # pandas loads with the first table, not with the command line's option checks
    import pandas as pd

#: the version of the JSON document's layout; bumped when a table's columns change meaning
SCHEMA = "seprobe/1"
_SUFFIX_FORMATS = {".csv": "csv", ".json": "json", ".md": "markdown", ".txt": "table"}


def _flat(value: Any) -> Any:
    """A structured cell as text, for the text formats: ``{"reduction": 8}`` -> ``reduction=8``."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_flat(v)}" for k, v in value.items())
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return value


def _for_text(df: pd.DataFrame) -> pd.DataFrame:
    structured = [c for c in df.columns if df[c].map(lambda v: isinstance(v, (dict, list, tuple))).any()]
    if not structured:
        return df
    return df.assign(**{c: df[c].map(_flat) for c in structured})


def _json_value(value: Any) -> Any:
    import pandas as pd

    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy and pandas scalars
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``df`` as JSON-ready dicts: Python ints and floats, ``None`` for missing values."""
    out = []
    for row in df.astype(object).to_dict(orient="records"):
        out.append({str(k): _json_value(v) for k, v in row.items()})
    return out


def json_document(tables: dict[str, pd.DataFrame], command: str) -> str:
    return json.dumps({"schema": SCHEMA, "command": command, "tables": {n: records(df) for n, df in tables.items()}},
                      indent=2) + "\n"


def render(df: pd.DataFrame, fmt: str = "table") -> str:
    """One table as text in ``fmt``."""
    check_choice("format", fmt, FORMATS)
    if fmt == "json":
        return json.dumps(records(df), indent=2) + "\n"
    df = _for_text(df)
    if fmt == "csv":
        return df.to_csv(index=False, lineterminator="\n")
    if fmt == "markdown":
        return df.to_markdown(index=False) + "\n"
    return df.to_string(index=False) + "\n"


def render_all(tables: dict[str, pd.DataFrame], fmt: str, command: str) -> str:
    """Several tables as one text: a JSON document, headed sections, or (csv) exactly one table."""
    check_choice("format", fmt, FORMATS)
    if fmt == "json":
        return json_document(tables, command)
    if fmt == "csv" and len(tables) > 1:
        raise SeprobeError(f"format 'csv' prints one table, and this run has {len(tables)} ({', '.join(tables)}); "
                           "valid: an output FILE.csv (one file per table), or format 'json'",
                           argument=("format", "output", "format"))
    parts = []
    for name, df in tables.items():
        heading = ""
        if len(tables) > 1:
            heading = f"# {name}\n" if fmt == "markdown" else f"{name}:\n"
        parts.append(heading + render(df, fmt))
    return "\n".join(parts)


def format_for(path: str | os.PathLike, fmt: str | None) -> str:
    """The explicit format, else the one the file's suffix implies."""
    if fmt is not None:
        return check_choice("format", fmt, FORMATS)
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        raise SeprobeError(
            f"cannot tell how to write {str(path)!r} from its suffix; valid: {', '.join(_SUFFIX_FORMATS)}, or "
            f"format {'|'.join(FORMATS)}", argument="format"
        )
    return _SUFFIX_FORMATS[suffix]


def table_paths(tables: dict[str, pd.DataFrame], output: Path) -> dict[str, Path]:
    """Where each table goes: the first to ``output``, the others to ``<stem>.<table><suffix>`` beside it."""
    return {name: output if i == 0 else output.with_name(f"{output.stem}.{name}{output.suffix}")
            for i, name in enumerate(tables)}


def write_tables(tables: dict[str, pd.DataFrame], output: Path, fmt: str | None, command: str) -> list[Path]:
    """Write the tables to files; a JSON output holds them all in one document."""
    fmt = format_for(output, fmt)
    if fmt == "json":
        return [atomic_write_text(output, json_document(tables, command))]
    return [atomic_write_text(path, render(tables[name], fmt)) for name, path in table_paths(tables, output).items()]

