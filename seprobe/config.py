"""Defaults for the inputs every probe command needs: model, weights, data and labels.

Looked up in this order, the first that sets a key wins:

1. the command-line option (``--model`` ...);
2. the environment: ``SEPROBE_MODEL``, ``SEPROBE_WEIGHTS``, ``SEPROBE_DATA``, ``SEPROBE_LABELS``;
3. ``seprobe.toml`` in the working folder (top-level keys), else ``[tool.seprobe]`` of ``pyproject.toml`` there.

Default weights belong to the default model: they are not used for another ``--model``. Relative paths in a
file are relative to that file's folder. Values are checked by type: each must be a string,
and an unknown key is an error naming the file, the key and the valid keys. Torch-free.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .defaults import WEIGHT_SOURCES
from .errors import SeprobeError

KEYS = ("model", "weights", "data", "labels")
PATH_KEYS = ("weights", "data", "labels")


@dataclass(frozen=True)
class Defaults:
    values: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # key -> where its value came from

    def get(self, key: str) -> str | None:
        return self.values.get(key)


def _from_file(path: Path, table: dict, where: str) -> dict[str, str]:
    out = {}
    for key, value in table.items():
        if key not in KEYS:
            raise SeprobeError(f"{path}: {where}{key}: unknown key; valid: {', '.join(KEYS)}")
        if not isinstance(value, str) or not value:
            raise SeprobeError(f"{path}: {where}{key}: {value!r} is a {type(value).__name__}; valid: a non-empty "
                               "string")
        if key in PATH_KEYS and not (key == "weights" and value in WEIGHT_SOURCES):
            value = str(path.parent / value) if not Path(value).is_absolute() else value
        out[key] = value
    return out


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SeprobeError(f"{path}: not UTF-8 text; valid: a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise SeprobeError(f"{path}: invalid TOML: {e}") from None


def load_defaults(folder: str | os.PathLike | None = None, environ: dict[str, str] | None = None) -> Defaults:
    """The defaults in force in ``folder`` (the working folder by default)."""
    folder = Path(folder or os.getcwd())
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    own = folder / "seprobe.toml"
    pyproject = folder / "pyproject.toml"
    if own.is_file():
        found = _from_file(own, _read_toml(own), "")
        sources.update(dict.fromkeys(found, str(own)))
        values.update(found)
    elif pyproject.is_file():
        table = _read_toml(pyproject).get("tool", {}).get("seprobe", {})
        if not isinstance(table, dict):
            raise SeprobeError(f"{pyproject}: tool.seprobe: not a table; valid: [tool.seprobe] with keys "
                               f"{', '.join(KEYS)}")
        found = _from_file(pyproject, table, "tool.seprobe.")
        sources.update(dict.fromkeys(found, f"{pyproject} [tool.seprobe]"))
        values.update(found)
    for key in KEYS:
        env = f"SEPROBE_{key.upper()}"
        if environ.get(env):
            values[key], sources[key] = environ[env], env
    return Defaults(values, sources)
