"""The resumable state of a run, in a file ``torch.load(..., weights_only=True)`` reads.

``checkpoint.pth`` holds the format tag, the model's and optimiser's state, the grad scaler's, every random
state (torch's CPU and CUDA generators, numpy's, Python's, and the epoch's order / augmentation generator) as
tensors and plain values, the position (epoch, steps done in it), the epoch's running sums, the history so far,
and the record the run was started with (recipe, meta, data), which a resume must match.
"""

from __future__ import annotations

import random
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from ..errors import SeprobeError
from ..io import atomic_write
from .recipe import Recipe

FORMAT = "seprobe-train/1"


def rng_state() -> dict:
    """Every global random state, as tensors and plain values."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached": float(cached)},
            "python": {"version": version, "words": torch.tensor(words, dtype=torch.int64), "gauss": gauss}}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["words"].tolist()), p["gauss"]))


def save(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **state}, tmp))


def check_exists(path: Path) -> None:
    """Refuse to resume from a checkpoint that is not there (cheap: before any other work)."""
    if not path.is_file():
        raise ResumeRefused(f"cannot resume: {str(path)!r} does not exist; valid: the out folder of a run "
                           "started by seprobe's training, or a new run")


def load(path: Path) -> dict:
    """The checkpoint at ``path``; a missing, truncated or foreign file is one :class:`SeprobeError`."""
    check_exists(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle with code, random bytes: many types
        raise ResumeRefused(f"checkpoint {str(path)!r} cannot be read ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''}); valid: a checkpoint.pth written by "
                           "seprobe's training") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ResumeRefused(f"checkpoint {str(path)!r} has format {found!r}; valid: {FORMAT!r}")
    return state


class ResumeRefused(SeprobeError):
    """A run that cannot continue: its checkpoint is missing, unreadable, or of another recipe, model or data.
    Raised before any step, so a caller that trains again from the start loses nothing that could resume."""


def first_difference(saved, current, where: str = "") -> str | None:
    """The dotted name of the first field where two records (dicts, lists, values) differ, or None."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current), key=str):
            if key not in saved or key not in current:
                return f"{where}{key}"
            found = first_difference(saved[key], current[key], f"{where}{key}.")
            if found:
                return found
        return None
    if isinstance(saved, (list, tuple)) and isinstance(current, (list, tuple)):
        saved, current = list(saved), list(current)
    return None if saved == current else where.rstrip(".")


def check_same_run(saved: dict, current: dict) -> None:
    """Refuse to resume with another recipe, meta or data than the run was started with. A recipe field the
    saved run does not record (one added to :class:`~seprobe.training.Recipe` since) had its default then."""
    if isinstance(saved.get("recipe"), dict):
        defaults = {f.name: f.default for f in fields(Recipe)}
        saved = {**saved, "recipe": {**{k: defaults[k] for k in current.get("recipe", {}) if k in defaults},
                                     **saved["recipe"]}}
    field = first_difference(saved, current)
    if field is not None:
        now, then = _lookup(current, field), _lookup(saved, field)
        now = "not given" if now is _ABSENT else f"{now!r}"
        then = "without it" if then is _ABSENT else f"with {then!r}"
        raise ResumeRefused(f"cannot resume: {field} is {now} but the run was started {then}; valid: "
                           "the same recipe, model and data (device and num_workers may change)")


_ABSENT = object()


def _lookup(record, field: str):
    for key in field.split("."):
        if not isinstance(record, dict) or key not in record:
            return _ABSENT
        record = record[key]
    return record

