"""The ``seprobe`` command line: parses options, calls a function that returns data, prints it.

Bad input (a :class:`~seprobe.errors.SeprobeError`) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import SeprobeError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Build, count, time and look inside Squeeze-and-Excitation networks.",
)


@app.callback()
def _root() -> None:
    """Build, count, time and look inside Squeeze-and-Excitation networks."""


FormatOpt = Annotated[str | None, typer.Option("--format", "-f", help="table|csv|json|markdown")]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="write to this file (atomically)")]


def emit(df, fmt: str | None, output: Path | None) -> None:
    """Print a result table, or write it to ``output`` in the format its suffix (or ``--format``) says."""
    from .tables import render, write_table

    if output is not None:
        path = write_table(df, output, fmt)
        typer.echo(f"wrote {path}", err=True)
    else:
        typer.echo(render(df, fmt or "table"), nl=False)


@app.command("models")
def models_cmd(fmt: FormatOpt = None, output: OutputOpt = None) -> None:
    """List every registered model with its parameter count and its counterpart without SE."""
    from .registry import models_table

    emit(models_table(), fmt, output)


def main() -> None:
    try:
        app()
    except SeprobeError as e:
        typer.echo(f"seprobe: error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("seprobe: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
