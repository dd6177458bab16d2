"""Options declared once: each is a field of a frozen dataclass, its type, bounds, default and help in one place.

A field is ``Annotated[type, Spec]``::

    @dataclass(frozen=True)
    class Recipe(Options):
        epochs: Annotated[int, Int(1, help="epochs to train")] = 164

From that one declaration come the check (:meth:`Options.__post_init__` runs every field's :class:`Spec`, then
the class's own :meth:`Options.validate` for rules between fields), the command line's option (``seprobe.cli.options``
reads :func:`fields`), and the field table of study files (:func:`from_table`). Adding an option is adding a field.

Torch-free and typer-free: the bottom layer, read by the models, the measurements, the studies and the CLI.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .choices import DTYPES
from .errors import SeprobeError, check_bool, check_choice, int_bound, suggest


@dataclass(frozen=True, kw_only=True)
class Spec:
    """What one option accepts; ``help`` / ``metavar`` / ``flags`` are how the command line shows it (``flags``:
    its option names, by default ``--name-with-dashes``; ``()`` and ``cli=False``: not on the command line)."""

    help: str = ""
    metavar: str | None = None
    flags: tuple[str, ...] = ()
    cli: bool = True
    what: str | None = None         # the value's name in errors, if not the argument's (``reduction ratio``)
    description: str | None = None  # what is valid, if not the spec's own words (``an integer r >= 1``)

    def valid(self, value: Any) -> bool:
        raise NotImplementedError

    def expected(self) -> str:
        """What is valid, as an error's ``valid: ...`` says it."""
        return self.description or self._expected()

    def _expected(self) -> str:
        raise NotImplementedError

    def toml_expected(self) -> str:
        return f"{self.expected()} (without quotes)"

    def error(self, name: str, value: Any) -> SeprobeError:
        return SeprobeError(f"invalid {self.what or name} {value!r}; valid: {self.expected()}", argument=name)

    def check(self, name: str, value: Any) -> Any:
        """``value``, normalised (a list becomes a tuple), or a :class:`~seprobe.errors.SeprobeError` naming
        ``name``."""
        if not self.valid(value):
            raise self.error(name, value)
        return value

    def python_type(self) -> Any:
        """The type the command line parses the option's text into (``str``: text, then :meth:`parse`)."""
        return str

    def parse(self, name: str, text: str) -> Any:
        return text


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Int(Spec):
    """An integer in ``[minimum, maximum]`` (a bool or a float is not one)."""

    minimum: int = 1
    maximum: int | None = None

    def python_type(self) -> Any:
        return int

    def valid(self, value: Any) -> bool:
        return _is_int(value) and value >= self.minimum and (self.maximum is None or value <= self.maximum)

    def _expected(self) -> str:
        return int_bound(self.minimum, self.maximum)


@dataclass(frozen=True)
class Number(Spec):
    """A finite number ``>= low`` (``> low`` with ``open_low``) and ``< high`` (``<= high`` with
    ``closed_high``); an integer is one too."""

    low: float = 0.0
    high: float | None = None
    open_low: bool = False
    closed_high: bool = False

    def python_type(self) -> Any:
        return float

    def valid(self, value: Any) -> bool:
        return _is_number(value) and (value > self.low if self.open_low else value >= self.low) and (
            self.high is None or (value <= self.high if self.closed_high else value < self.high))

    def _expected(self) -> str:
        return (f"a finite number {'>' if self.open_low else '>='} {self.low}"
                + (f" and {'<=' if self.closed_high else '<'} {self.high}" if self.high is not None else ""))


@dataclass(frozen=True)
class Bool(Spec):
    """True or False (not 0, 1 or a string)."""

    def python_type(self) -> Any:
        return bool

    def valid(self, value: Any) -> bool:
        return isinstance(value, bool)

    def check(self, name: str, value: Any) -> Any:
        return check_bool(name, value)

    def _expected(self) -> str:
        return "True or False"

    def toml_expected(self) -> str:
        return "true or false (a TOML boolean, without quotes)"


@dataclass(frozen=True)
class Choice(Spec):
    """One of ``choices`` (a ``Literal``'s values, :mod:`seprobe.choices`); ``what`` names it in errors."""

    choices: tuple[str, ...] = ()

    def valid(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.choices

    def _expected(self) -> str:
        return ", ".join(repr(c) for c in self.choices)

    def toml_expected(self) -> str:
        return f"one of {self.expected()}"

    def check(self, name: str, value: Any) -> Any:
        return check_choice(self.what or name, value, self.choices, argument=name)

    def python_type(self) -> Any:
        return typing.Literal[self.choices]  # typer offers the choices


@dataclass(frozen=True)
class Text(Spec):
    """A string (free text or a name checked elsewhere)."""

    def valid(self, value: Any) -> bool:
        return isinstance(value, str)

    def _expected(self) -> str:
        return "a string"

    def toml_expected(self) -> str:
        return "a string"


@dataclass(frozen=True)
class PathText(Text):
    """A file or folder: a string (a study file's, relative to its folder until read) or a path."""

    def valid(self, value: Any) -> bool:
        return isinstance(value, (str, os.PathLike)) and os.fspath(value) != ""  # Path('') is the current folder

    def _expected(self) -> str:
        return "a path"


@dataclass(frozen=True)
class Items(Spec):
    """A sequence of values, each valid for ``item``, kept as a tuple; ``rule(name, values)`` checks the whole
    (order, uniqueness) and may normalise it. On the command line, comma-separated; in TOML, an array."""

    item: Spec = dataclasses.field(default_factory=Int)
    rule: Callable[[str, tuple], tuple] | None = None
    example: str = "1,2"
    item_name: str | None = None  # an item's name in errors (``invalid milestone 1.5 in milestones``)
    parser: Callable[[str, str], tuple] | None = None  # text other than comma-separated items (``both``)

    def valid(self, value: Any) -> bool:
        return isinstance(value, (list, tuple)) and all(self.item.valid(v) for v in value)

    def python_type(self) -> Any:
        return list[str]  # the option repeated, or comma-separated, or both (``--stage 4 --stage 5``, ``4,5``)

    def _expected(self) -> str:
        return f"a list of values, each {self.item.expected()}"

    def toml_expected(self) -> str:
        numbers = isinstance(self.item, (Int, Number))
        example = ", ".join(e if numbers else f'"{e}"' for e in self.example.split(","))
        return f"an array such as [{example}], each {self.item.expected()}"

    def check(self, name: str, value: Any) -> Any:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise SeprobeError(f"invalid {name} {value!r}; valid: {self.expected()}, e.g. [{self.example}]",
                               argument=name)
        for v in value:
            if not self.item.valid(v):
                raise SeprobeError(f"invalid {self.item_name or name} {v!r}"
                                   f"{f' in {name}' if self.item_name else ''}; valid: {self.item.expected()}",
                                   argument=name)
        value = tuple(value)
        return self.rule(name, value) if self.rule else value

    def parse(self, name: str, text: str) -> tuple:
        if self.parser is not None:
            return self.parser(name, text)
        parts = [t.strip() for t in text.split(",") if t.strip()]
        convert = int if isinstance(self.item, Int) else float if isinstance(self.item, Number) else str
        try:
            return tuple(convert(p) for p in parts)
        except ValueError:
            raise SeprobeError(f"invalid {name} {text!r}; valid: comma-separated values, e.g. {self.example}",
                               argument=name) from None


@dataclass(frozen=True)
class Custom(Spec):
    """A value checked by its own function ``checker(name, value) -> value`` (raising a
    :class:`~seprobe.errors.SeprobeError`); ``parser(name, text)`` reads it from the command line."""

    checker: Callable[[str, Any], Any] | None = None
    parser: Callable[[str, str], Any] | None = None
    own_error: bool = False  # a study file's error is the checker's own words, not "invalid value ... expected"

    def valid(self, value: Any) -> bool:
        try:
            self.check("value", value)
        except SeprobeError:
            return False
        return True

    def _expected(self) -> str:
        return "a value"

    def toml_expected(self) -> str:
        return self.expected()

    def check(self, name: str, value: Any) -> Any:
        return self.checker(name, value) if self.checker else value

    def parse(self, name: str, text: str) -> Any:
        return self.parser(name, text) if self.parser else text


# --- a dataclass's options ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One field of an option dataclass: its name, its :class:`Spec`, its default and whether ``None`` (not
    given) is allowed."""

    name: str
    spec: Spec
    default: Any
    optional: bool

    def check(self, value: Any) -> Any:
        if value is None and self.optional:
            return None
        return self.spec.check(self.name, value)

    @property
    def flags(self) -> tuple[str, ...]:
        return self.spec.flags or ("--" + self.name.replace("_", "-"),)


_FIELDS: dict[type, dict[str, Option]] = {}


def fields(cls: type) -> dict[str, Option]:
    """The declared options of an option dataclass (class or instance), in field order."""
    cls = cls if isinstance(cls, type) else type(cls)
    if cls not in _FIELDS:
        hints = typing.get_type_hints(cls, include_extras=True)
        found = {}
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            specs = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Spec)]
            if not specs:
                continue
            base = typing.get_args(hint)[0]
            optional = type(None) in typing.get_args(base)
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
            found[f.name] = Option(f.name, specs[0], default, optional)
        _FIELDS[cls] = found
    return _FIELDS[cls]


class Options:
    """Base of seprobe's option dataclasses: checked field by field when made (:func:`fields`), then by
    :meth:`validate`. Subclasses are frozen dataclasses whose fields are ``Annotated[type, Spec]``."""

    registry: typing.ClassVar[list[type]] = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Options.registry.append(cls)

    def __post_init__(self):
        for name, option in fields(self).items():
            value = option.check(getattr(self, name))
            if value is not getattr(self, name):
                object.__setattr__(self, name, value)
        self.validate()

    def validate(self) -> None:
        """Rules between fields (one field's bound that depends on another's value)."""


def check_values(cls: type, values: Mapping[str, Any], argument: str | None = None,
                 what: str = "field") -> dict[str, Any]:
    """Each of ``values`` checked as the field of ``cls`` it names (without building one: the other fields may
    not be known yet, as the recipe's defaults before the images' size); an unknown name is an error naming
    ``argument`` (or the name), which calls a field ``what``."""
    known = fields(cls)
    out = {}
    for name, value in values.items():
        if name not in known:
            raise SeprobeError(f"unknown {what} {name!r}{suggest(name, known)}; valid: {', '.join(known)}",
                               argument=argument or name)
        out[name] = known[name].check(value)
    return out


# --- study files ------------------------------------------------------------------------------------------------


def toml_type(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


def check_toml(option: Option, value: Any, where: str) -> Any:
    """A TOML value for ``option``: of its type (``where: invalid value ... ; expected ...``), then checked by
    its spec (``where: <the spec's error>``); a string for a list is read as the command line reads it."""
    spec = option.spec
    if isinstance(value, str) and (isinstance(spec, Items) or getattr(spec, "parser", None)):
        value = spec.parse(option.name, value)
    try:
        return option.check(value)
    except SeprobeError as e:
        if isinstance(spec, Choice) or getattr(spec, "own_error", False) or (
                isinstance(spec, Items) and spec.valid(value)):
            raise SeprobeError(f"{where}: {e}") from None
        raise SeprobeError(f"{where}: invalid value {value!r} ({toml_type(value)}); expected "
                           f"{spec.toml_expected()}") from None


def from_table(cls: type, table: Mapping[str, Any], where: str, *, exclude: tuple[str, ...] = (),
               extra: Mapping[str, Option] | None = None) -> dict[str, Any]:
    """A study file's table read as the fields of ``cls`` (less ``exclude``, plus ``extra`` options): every
    key known, every value checked; the checked values by name. ``where`` prefixes errors (``file: key``)."""
    known = {n: o for n, o in fields(cls).items() if n not in exclude} | dict(extra or {})
    out = {}
    for key, value in table.items():
        if key not in known:
            raise SeprobeError(f"{where}{key}: unknown field {key!r}{suggest(key, known)}; valid: "
                               f"{', '.join(known)}")
        out[key] = check_toml(known[key], value, f"{where}{key}")
    return out


# --- options several dataclasses share, declared once ------------------------------------------------------------

def _device(name: str, value: Any) -> str:
    from .devices import check_device

    if not isinstance(value, str):
        raise SeprobeError(f"invalid {name} {value!r}; valid: cpu, cuda, cuda:N", argument=name)
    return check_device(value)


DEVICE = Custom(checker=_device, description="cpu, cuda or cuda:N", metavar="DEVICE",
                help="cpu, cuda or cuda:N (under torchrun: this rank's GPU)")
DTYPE = Choice(choices=DTYPES, help="autocast dtype (float16: with a gradient scaler when training)")
CHANNELS_LAST = Bool(flags=("--channels-last",), help="channels_last memory format")
COMPILE = Bool(flags=("--compile",), help="torch.compile the network")
