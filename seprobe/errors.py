"""User-facing errors: one line that names the bad value and what would be valid."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from typing import Any


class SeprobeError(ValueError):
    """Bad input from a user (an unknown model, an invalid knob, a malformed file).

    The message names Python arguments (``invalid batch_size 0``); ``argument`` says which one (or ones) it is
    about, so that the command line can name the flag instead (``--batch-size``). The CLI prints the message as
    one line and exits with code 2, without a traceback.
    """

    def __init__(self, message: str, *, argument: str | tuple[str, ...] | None = None):
        super().__init__(message)
        self.argument = argument


def suggest(name: str, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the names closest to ``name``, or nothing."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def check_choice(what: str, value: Any, choices: Iterable[Any], argument: str | None = None) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise a :class:`SeprobeError` listing them."""
    choices = tuple(choices)
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise SeprobeError(f"unknown {what} {value!r}; valid: {valid}", argument=argument)
    return value


def check_bool(argument: str, value: Any) -> bool:
    """``value`` if it is True or False (not 0, 1 or a string), else a :class:`SeprobeError` naming ``argument``."""
    if not isinstance(value, bool):
        raise SeprobeError(f"invalid {argument} {value!r}; valid: True or False", argument=argument)
    return value


def check_int(argument: str, value: Any, minimum: int = 1, maximum: int | None = None) -> Any:
    """``value`` if it is an integer in ``[minimum, maximum]`` (``None``: not given), else a
    :class:`SeprobeError` naming ``argument``. A bool is not an integer here, nor is a float."""
    if value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
            maximum is not None and value > maximum):
        raise SeprobeError(f"invalid {argument} {value!r}; valid: {int_bound(minimum, maximum)}", argument=argument)
    return value


def int_bound(minimum: int, maximum: int | None = None) -> str:
    """What :func:`check_int` (and :class:`seprobe.schema.Int`) accept, in words."""
    return f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")


def check_path(argument: str, value: Any, valid: str) -> None:
    """A path argument is a ``str`` or an ``os.PathLike``, and not empty (``Path('')`` is the current folder)."""
    if not isinstance(value, (str, os.PathLike)):
        raise SeprobeError(f"invalid {argument} {value!r} ({type(value).__name__}); valid: {valid} (str or "
                           "os.PathLike)", argument=argument)
    if os.fspath(value) == "":
        raise SeprobeError(f"{argument} is empty; valid: {valid}", argument=argument)
