"""The resumable state of a run, in a file ``torch.load(..., weights_only=True)`` reads.

``checkpoint.pth`` holds the format tag, the model's and optimiser's state, the grad scaler's, every random
state (torch's CPU and CUDA generators, numpy's, Python's, and the epoch's order / augmentation generator) as
tensors and plain values, the position (epoch, steps done in it), the epoch's running sums, the history so far,
and the record the run was started with: its recipe, meta and data (the data keyed by content), which a resume
must match, and ``info`` (the data's folders and the starting weights as absolute paths, not compared), from
which :func:`seprobe.train` rebuilds a run resumed with no other option.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import SeprobeError
from ..io import atomic_write
from ..models.checkpoints import fit_problems, load_failure
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
    """Write the checkpoint atomically: a full disk (or a file size limit) is one :class:`SeprobeError` saying
    whether the previous checkpoint is there, intact (the write went to a temporary file, now removed)."""
    try:
        atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **state}, tmp))
    except (OSError, RuntimeError) as e:
        reason = write_failure(e)
        if reason is None:
            raise
        kept = (f"the previous {path.name} is intact: resume once there is room" if path.is_file() else
                f"no {path.name} was written before this one")
        raise SeprobeError(f"cannot write checkpoint {str(path)!r}: {reason}; valid: room for it on its file "
                           f"system; {kept}") from None


def write_failure(e: OSError | RuntimeError) -> str | None:
    """Why a file could not be written, when the file system refused it (full, over a size or disk quota, an I/O
    error), or None for any other error. ``torch.save``'s zip writer says only that the write failed."""
    if isinstance(e, OSError):
        return e.strerror or str(e)
    text = str(e)
    if "unexpected pos" in text or "write" in text.lower():
        return "the write failed (no space left on the device, or over a file size limit)"
    return None


def check_exists(path: Path) -> None:
    """Refuse to resume from a checkpoint that is not there (cheap: before any other work)."""
    if not path.is_file():
        raise ResumeRefused(f"cannot resume: {str(path)!r} does not exist; valid: the folder of a run started by "
                           "seprobe's training, or a new run")


def load(path: Path, mmap: bool = False) -> dict:
    """The checkpoint at ``path``; a missing, truncated, foreign or incomplete file is one :class:`ResumeRefused`
    (its contents are checked: :func:`check_state`). ``mmap``: tensors are read when used (for the record)."""
    check_exists(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # truncated zip, pickle with code, random bytes: many types
        raise ResumeRefused(f"checkpoint {str(path)!r} cannot be read ({load_failure(e)}); valid: a "
                           "checkpoint.pth written by seprobe's training") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ResumeRefused(f"checkpoint {str(path)!r} has format {found!r}; valid: {FORMAT!r}")
    problem = check_state(state)
    if problem is not None:
        raise ResumeRefused(f"checkpoint {str(path)!r} is incomplete or damaged: {problem}; valid: a "
                           "checkpoint.pth written by seprobe's training")
    return state


def read_record(path: Path) -> dict:
    """The record a run was started with (recipe, meta, data, info), from its checkpoint (checked as
    :func:`load` checks it; no tensor is read)."""
    return load(path, mmap=True)["record"]


#: what each entry of a checkpoint is: its type, and for dicts the keys it must hold
_STATE = {"record": (dict, ("recipe", "meta", "data")), "model": (Mapping, ()),
          "optimizer": (dict, ("state", "param_groups")), "scaler": (dict, ()), "rng": (list, ()),
          "epoch": (int, ()), "step": (int, ()), "sums": (dict, ("loss", "hits", "seen", "seconds")),
          "history": (list, ()), "world_size": (int, ())}
_RNG = {"torch": torch.Tensor, "cuda": list, "numpy": dict, "python": dict}


def check_state(state: dict) -> str | None:
    """What is wrong with the contents of a checkpoint (a missing entry, one of another type), or None."""
    for key, (kind, keys) in _STATE.items():
        if key not in state:
            return f"it has no {key!r}"
        value = state[key]
        if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 0)):
            return f"{key!r} is {_what(value)}, not {'an integer >= 0' if kind is int else 'a ' + kind.__name__}"
        missing = [k for k in keys if k not in value]
        if missing:
            return f"{key!r} has no {missing[0]!r}"
    for key in ("recipe", "meta", "data"):
        if not isinstance(state["record"][key], dict):
            return f"record {key!r} is {_what(state['record'][key])}, not a dict"
    bad = next((k for k, v in state["model"].items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)),
               None)
    if bad is not None:
        return f"model entry {bad!r} is not a named tensor"
    if "generator" not in state:
        return "it has no 'generator'"
    if state["generator"] is not None and not isinstance(state["generator"], torch.Tensor):
        return f"'generator' is {_what(state['generator'])}, not a tensor"
    if not state["rng"] or not all(isinstance(r, dict) and all(isinstance(r.get(k), t) for k, t in _RNG.items())
                                   for r in state["rng"]):
        return "'rng' is not a list of random states (torch, cuda, numpy, python)"
    if not all(isinstance(row, dict) for row in state["history"]):
        return "'history' is not a list of epoch rows"
    return None


def _what(value) -> str:
    name = type(value).__name__
    return "None" if value is None else f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def check_fits(path: Path, state: dict, model: nn.Module, groups: list[dict]) -> None:
    """Refuse, before any image is decoded, a checkpoint whose tensors are another network's: the model's keys
    and shapes, and the optimiser's groups (``groups``, as :func:`~.steps.param_groups` makes them for the
    recipe) with each momentum buffer's shape."""
    problems = fit_problems(state["model"], model.state_dict())
    if problems is None:
        problems = _optimizer_problems(state["optimizer"], groups)
    if problems is not None:
        raise ResumeRefused(f"checkpoint {str(path)!r} holds another network's state ({problems}); valid: resume "
                           "with the model (and knobs) the run was started with")


def _optimizer_problems(saved: dict, groups: list[dict]) -> str | None:
    found = saved["param_groups"]
    if not isinstance(found, list) or len(found) != len(groups):
        return f"{len(found) if isinstance(found, list) else 'no'} optimiser groups for the model's {len(groups)}"
    buffers = saved["state"] if isinstance(saved["state"], dict) else {}
    for k, (have, want) in enumerate(zip(found, groups, strict=True)):
        ids = have.get("params") if isinstance(have, dict) else None
        if not isinstance(ids, list) or len(ids) != len(want["params"]):
            return f"optimiser group {k} holds {len(ids) if isinstance(ids, list) else 'no'} parameters for the " \
                   f"model's {len(want['params'])}"
        for i, p in zip(ids, want["params"], strict=True):
            buffer = buffers.get(i, {}).get("momentum_buffer") if isinstance(buffers.get(i), dict) else None
            if isinstance(buffer, torch.Tensor) and buffer.shape != p.shape:
                return f"a momentum buffer {tuple(buffer.shape)} for a parameter {tuple(p.shape)}"
    return None


class ResumeRefused(SeprobeError):
    """A run that cannot continue: its checkpoint is missing, unreadable, or of another recipe, model or data.
    Raised before any step, so a caller that trains again from the start loses nothing that could resume."""


def first_difference(saved, current, where: str = "") -> str | None:
    """The dotted name of the first field where two records (dicts, lists, values) differ, or None: in the
    current record's order (the options a caller gives come before what follows from them), then the fields
    only the saved one has."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in [*current, *sorted((k for k in saved if k not in current), key=str)]:
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
    """Refuse to resume with another recipe, meta or data than the run was started with (its ``info``, where
    the data and the weights were, is not compared: a moved folder may resume). A recipe field the saved run
    does not record (one added to :class:`~seprobe.training.Recipe` since) had its default then."""
    saved, current = ({k: v for k, v in r.items() if k != "info"} for r in (saved, current))
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

