"""The application, its errors as flags, and the entry point.

Every error a user can cause is one line on stderr (``seprobe: error: ...``) and exit code 2: a bad option
value, a missing input, a malformed file. The library's errors name Python arguments (``batch_size``); here they
name the flag (``--batch-size``, :data:`FLAGS`). Ctrl-C and SIGTERM print ``seprobe: interrupted`` and exit 130,
with no output half-written (:mod:`seprobe.interrupts`).
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import sys
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

try:  # typer >= 0.2x carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer on click
    from click import exceptions as click_errors

from ..choices import (
    Format,
)
from ..errors import SeprobeError
from ..interrupts import EXIT_CODE, exit_interrupted
from ..version import __version__

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    help="Build, count, time and look inside Squeeze-and-Excitation networks.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"seprobe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Build, count, time and look inside Squeeze-and-Excitation networks."""


def _err(message: str) -> None:
    typer.echo(message, err=True)


def echo(text: str, nl: bool = True) -> None:
    """A command's result on stdout. A stdout that cannot take it (a full disk, a reader that closed the pipe) is
    one line, not a traceback; stdout then points at the null device, so that the interpreter's own flush at
    exit does not fail again."""
    try:
        typer.echo(text, nl=nl)
    except OSError as e:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        raise SeprobeError(f"cannot write the result to standard output ({e.strerror or e}); valid: a standard "
                           "output with room that stays open (a terminal, a file, a pipe read to its end)") from None


#: Python arguments whose flag is not their name with dashes (``batch_size`` is ``--batch-size``)
FLAGS = {
    "models": "--model", "paths": "STUDY.toml",
    "include": "--with-timing/--with-activations/--with-ablation/--with-training",
    "skip_kinds": "--with-timing/--with-activations/--with-ablation/--with-training",
}


def flag(argument: str) -> str:
    """The flag of a Python argument: ``batch_size`` -> ``--batch-size``, unless the running command's option of
    that name, :data:`FLAGS` or the option's declaration (:func:`~seprobe.cli.options.declared_flag`) says
    otherwise (``modes`` is ``--mode`` in ``ablate``, ``--modes`` in ``complexity``)."""
    from .options import declared_flag

    return (_command_flags(tuple(_RUNNING["argv"])).get(argument) or FLAGS.get(argument)
            or declared_flag(argument) or "--" + argument.replace("_", "-"))


_RUNNING: dict[str, list[str]] = {"argv": []}  # the command line being run


@functools.lru_cache(maxsize=4)
def _command_flags(argv: tuple[str, ...]) -> dict[str, str]:
    """The long flag of each option of the command ``argv`` runs (``seprobe study run``: of ``run``), by Python
    name, as click parsed them."""
    command = _running_command(argv)
    return {p.name: next((o for o in p.opts if o.startswith("--")), p.opts[0]) for p in command.params
            if p.param_type_name == "option"}


def _refuse_empty_paths(argv: Sequence[str]) -> None:
    """An empty path given to a path option or argument (``--out ''``, ``--out=``) is refused: typer reads it as
    ``Path('')``, the current folder, and a command would read or write there."""
    from .options import declared_path

    if not any(w == "" or w.endswith("=") for w in argv):
        return
    command = _running_command(tuple(argv))
    params = getattr(command, "params", ())
    annotations = _annotations(command)
    paths = {p.name for p in params if _is_path(annotations.get(p.name)) or declared_path(p.name)}
    takes_value = {o: p.name for p in params if p.param_type_name == "option" and not getattr(p, "is_flag", False)
                   for o in p.opts}
    path_arguments = [p.name for p in params if p.param_type_name == "argument" and p.name in paths]
    for i, word in enumerate(argv):
        option, eq, value = word.partition("=")
        if eq and value == "" and takes_value.get(option) in paths:
            name = takes_value[option]
        elif word == "" and i and takes_value.get(argv[i - 1]) in paths:
            name = takes_value[argv[i - 1]]
        elif word == "" and not (i and argv[i - 1] in takes_value) and path_arguments:
            name = path_arguments[0]
        else:
            continue
        raise SeprobeError(f"{flag(name)} is empty; valid: a path ('.' for the current folder)")


def _running_command(argv: tuple[str, ...]):
    """The click command that ``argv`` runs (``seprobe study run``: ``run``)."""
    command = typer.main.get_command(app)
    for word in (a for a in argv if not a.startswith("-")):
        sub = getattr(command, "commands", {}).get(word)
        if sub is None:
            break
        command = sub
    return command


def _annotations(command) -> dict[str, object]:
    """The evaluated annotation of each parameter of a command's function, by name."""
    callback = getattr(command, "callback", None)
    if callback is None:
        return {}
    return {n: p.annotation for n, p in inspect.signature(callback, eval_str=True).parameters.items()}


def _is_path(annotation) -> bool:
    """Whether an option's annotation holds a path (``Path``, ``Path | None``, ``list[Path]``, annotated)."""
    if annotation is Path:
        return True
    return any(_is_path(a) for a in typing.get_args(annotation))


def for_the_command_line(e: SeprobeError) -> str:
    """The error's message with Python arguments named by their flags: the argument it is about (its first
    mention), and every other argument name with an underscore (no ordinary word has one)."""
    message = str(e)
    for argument in (e.argument,) if isinstance(e.argument, str) else e.argument or ():
        message = re.sub(rf"{_OUTSIDE[0]}{re.escape(argument)}{_OUTSIDE[1]}", flag(argument), message, count=1)
    return re.sub(rf"{_OUTSIDE[0]}(" + "|".join(map(re.escape, _underscored())) + rf"){_OUTSIDE[1]}",
                  lambda m: flag(m.group(1)), message)


#: an argument's name as a word of its own: not inside a longer name, a path or a quoted value
_OUTSIDE = (r"(?<![\w/.'\\-])", r"(?![\w/.'-])")


def _underscored() -> list[str]:
    """Every option of every command whose Python name has an underscore, longest first."""
    names = set()
    for fn in [c.callback for c in app.registered_commands] + [c.callback for c in study_app.registered_commands]:
        names |= {p for p in inspect.signature(fn).parameters if "_" in p}
    return sorted(names - {"fmt"}, key=len, reverse=True)


FormatOpt = Annotated[Format | None, typer.Option("--format", "-f", help="print tables in this format")]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", metavar="FILE", help="write to this file (format from suffix)")
]


def emit(tables: dict, fmt: str | None, output: Path | None, command: str) -> None:
    """Result tables to stdout (``--format``) or to files (``--output``), all files together or none."""
    from ..io import output_set
    from ..tables import render_all, write_tables

    if output is None:
        echo(render_all(tables, fmt or "table", command), nl=False)
        return
    with output_set():
        written = write_tables(tables, output, fmt, command)
    for path in written:
        _err(f"wrote {path}")


study_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Run the paper's tables as studies (studies/*.toml)."
)
app.add_typer(study_app, name="study")


# --- one process, or a rank of torchrun -------------------------------------------------------------------------------


def session(device: str):
    """One process, or this rank of a ``torchrun`` launch (:func:`seprobe.distributed.distributed_session`)."""
    from ..distributed import distributed_session

    return distributed_session(device)


def speaks_for_all() -> bool:
    """Whether this process prints what every rank would: rank 0 of the running session's world; before a
    session (torch not yet imported, the options being read), rank 0 as torchrun's ``RANK`` says."""
    distributed = sys.modules.get("seprobe.distributed")
    world = distributed.current_world() if distributed is not None else None
    if world is not None and world.distributed:
        return world.is_main
    return os.environ.get("RANK", "0") == "0"


# --- entry point -----------------------------------------------------------------------------------------------------


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    if speaks_for_all():
        _err(f"seprobe: warning: {str(message).splitlines()[0] if str(message) else category.__name__}")


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line; every failure a user can cause ends here as one line and a non-zero exit code."""
    warnings.showwarning = _one_line_warning
    argv = list(argv) if argv is not None else sys.argv[1:]
    command = next((a for a in argv if not a.startswith("-")), "")
    try:
        _RUNNING["argv"] = argv
        _refuse_empty_paths(argv)
        code = app(args=argv, prog_name="seprobe", standalone_mode=False)
        if code == EXIT_CODE:  # typer turns Ctrl-C into this exit code
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except SeprobeError as e:
        if not getattr(e, "quiet", False):  # under torchrun, one rank speaks for all
            _err(f"seprobe: error: {for_the_command_line(e)}")
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        exit_interrupted()
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except click_errors.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `seprobe` or `seprobe study` alone: the help
            typer.echo(e.ctx.get_help())
            sys.exit(0)
        hint = f"seprobe {command} --help" if command in app_commands() else "seprobe --help"
        _err(f"seprobe: error: {e.format_message().replace('Value error, ', '')} (see `{hint}`)")
        sys.exit(2)
    except click_errors.ClickException as e:
        _err(f"seprobe: error: {e.format_message()}")
        sys.exit(e.exit_code)


def app_commands() -> set[str]:
    return {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}


if __name__ == "__main__":
    main()
