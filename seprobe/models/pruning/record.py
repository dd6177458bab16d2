"""What a pruned network records of its surgery, as plain data, so that its architecture can be rebuilt from a
checkpoint read with ``weights_only=True`` (as :mod:`~seprobe.models.ablated` rebuilds an exported ablation).

The record is the pruned model's attribute :data:`ATTRIBUTE`::

    {"format": "seprobe-pruning/1",
     "base_widths": {"stage3": 512, "layer2.0.conv1": 128, ...},
     "kept": {"stage3": [0, 2, 5, ...], "layer2.0.conv1": [...], ...}}

``kept`` holds, for each group that lost channels, the indices of the channels kept **in the unpruned network**
(``base_widths`` its widths there), so that a network pruned again (iterative pruning) records the composition,
and the base architecture (from its model name and knobs) with this surgery applied once
(:func:`~seprobe.models.pruning.surgery.apply_pruning`) takes the pruned state dict strictly. The option-A and ECA
channel maps are rebuilt from ``kept``: they hold no weights, and their buffers are not saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ...errors import SeprobeError

FORMAT = "seprobe-pruning/1"
ATTRIBUTE = "pruning"


def pruning_record(model: nn.Module) -> dict[str, Any] | None:
    """The record of the pruning ``model`` went through (a copy), ``None`` for a network never pruned."""
    record = getattr(model, ATTRIBUTE, None)
    if record is None:
        return None
    return {"format": record["format"], "base_widths": dict(record["base_widths"]),
            "kept": {name: list(kept) for name, kept in record["kept"].items()}}


def composed(previous: Mapping[str, Any] | None, widths: Mapping[str, int],
             keep: Mapping[str, list[int]]) -> dict[str, Any]:
    """The record after keeping ``keep`` (indices into the current channels, whose widths are ``widths``) of a
    network whose record was ``previous``: each kept index mapped back to the unpruned network's."""
    base_widths = dict(previous["base_widths"]) if previous else {}
    kept = {name: list(k) for name, k in previous["kept"].items()} if previous else {}
    for name, indices in keep.items():
        before = kept.get(name, range(widths[name]))
        base_widths.setdefault(name, widths[name])
        kept[name] = [before[i] for i in indices]
    return {"format": FORMAT, "base_widths": base_widths, "kept": kept}


def check_record(record: Any, widths: Mapping[str, int]) -> dict[str, list[int]]:
    """The ``kept`` sets of a record, after checking that it is one and fits a base network whose group widths
    are ``widths``."""
    if not isinstance(record, Mapping) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, Mapping) else type(record).__name__
        raise SeprobeError(f"not a pruning record (format {found!r}); valid: a record of format {FORMAT!r}, as a "
                           "pruned network carries it")
    widths_ok = isinstance(record.get("base_widths"), Mapping) and all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in record["base_widths"].items())
    kept_ok = isinstance(record.get("kept"), Mapping) and all(
        isinstance(k, str) and isinstance(v, (list, tuple)) for k, v in record["kept"].items())
    if not (widths_ok and kept_ok) or set(record["kept"]) - set(record["base_widths"]):
        raise SeprobeError("malformed pruning record: 'base_widths' must map group names to channel counts and "
                           "'kept' each of those groups to the list of its kept channels; valid: the record a pruned "
                           "network carries")
    for name, width in record["base_widths"].items():
        if widths.get(name) != width:
            have = f"{widths[name]} channels" if name in widths else "no such group"
            raise SeprobeError(f"the pruning record does not fit this network: group {name!r} had {width} channels "
                               f"before pruning, this network has {have}; valid: the base architecture the pruned "
                               "network was cut from (same model and knobs)")
    return {name: list(kept) for name, kept in record["kept"].items()}
