"""User-facing errors: one line that names the bad value and what would be valid."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class SeprobeError(ValueError):
    """Bad input from a user (an unknown model, an invalid knob, a malformed file).

    The CLI prints its message as one line and exits with code 2, without a traceback.
    """


def suggest(name: str, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the names closest to ``name``, or nothing."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def check_choice(what: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise a :class:`SeprobeError` listing them."""
    choices = tuple(choices)
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise SeprobeError(f"unknown {what} {value!r}; valid: {valid}")
    return value
