"""Forward hooks on the gates of an SE network: read ``s`` (Eq. 3), or replace it by a constant.

One hook per gate module, by gate name (:meth:`~seprobe.models.blocks.SEBlockInfo.gates`): a block's channel
gate (``gate_path``) under the block's name, and CBAM's spatial gate (``spatial_gate_path``, the map ``M_s``,
``N x 1 x H x W``) under ``<block>.spatial``. Each keeps the latest output, by gate name
(:attr:`GateHooks.values`); for the gates :meth:`GateHooks.replace` names, it returns a constant instead (a hook
that returns a tensor replaces the module's output):

* ``identity``: the gate is 1, the block (or its spatial gate) is removed (the paper's reading of a saturated
  block, Sec. 7.2);
* ``mean``: ``s_c = E[s_c]``, a fixed per-channel scale (the calibration means given), shaped ``1 x C x 1 x 1``
  and expanded to the gate's output, so per-position NoSqueeze gates get it at every position; a spatial gate's
  mean is one number (its map's mean over positions and images), at every position;
* ``constant``: every gate value :data:`~seprobe.choices.CONSTANT_GATE` (1/2, a sigmoid's value at zero
  excitation), for a channel gate and a spatial gate alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ..choices import CONSTANT_GATE, REPLACEMENTS
from ..errors import SeprobeError
from ..models.blocks import SEBlockInfo, gate_paths


class GateHooks:
    """Hooks on the gates of ``blocks`` (their spatial gates too); use as a context manager, or call
    :meth:`remove`. ``means``: the ``mean`` mode's values by gate name."""

    def __init__(self, model: nn.Module, blocks: Sequence[SEBlockInfo],
                 means: Mapping[str, torch.Tensor] | None = None):
        self.blocks = {b.name: b for b in blocks}
        self.gates = gate_paths(blocks)
        self.means = dict(means or {})
        self.values: dict[str, torch.Tensor] = {}
        self.active: dict[str, str] = {}
        self._handles = [model.get_submodule(path).register_forward_hook(self._hook(name))
                         for name, path in self.gates.items()]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            mode = self.active.get(name)
            if mode is None:
                self.values[name] = output.detach()
                return None
            c = output.shape[1]
            if mode == "mean":
                value = self.means[name]
            else:
                value = torch.full((c,), 1.0 if mode == "identity" else CONSTANT_GATE)
            shape = (1, c) + (1,) * (output.dim() - 2)
            return value.to(output.device, output.dtype).reshape(shape).expand_as(output)
        return hook

    def replace(self, modes: Mapping[str, str] | None = None) -> None:
        """From the next forward pass on, each gate of ``modes`` (gate name -> ``identity`` / ``mean`` /
        ``constant``) returns that constant; nothing else is replaced (``replace()`` restores every gate)."""
        modes = dict(modes or {})
        for name, mode in modes.items():
            if name not in self.gates:
                raise SeprobeError(f"unknown block {name!r}; valid: {', '.join(self.gates)}")
            if mode not in REPLACEMENTS:
                raise SeprobeError(f"unknown gate replacement {mode!r}; valid: {', '.join(REPLACEMENTS)}")
        missing = [b for b, mode in modes.items() if mode == "mean" and b not in self.means]
        if missing:
            raise SeprobeError(f"no calibration mean for {', '.join(missing)}; valid: calibrate before a mean "
                               "ablation")
        self.active = modes

    def remove(self) -> None:
        self.active = {}
        for h in self._handles:
            h.remove()

    def __enter__(self) -> GateHooks:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


@contextmanager
def recorded_gates(model: nn.Module, blocks: Sequence[SEBlockInfo]):
    """``with recorded_gates(model, blocks) as values: model(x)``: every gate's output of the last pass, by gate
    name (a CBAM block's spatial map under ``<block>.spatial``)."""
    hooks = GateHooks(model, blocks)
    try:
        yield hooks.values
    finally:
        hooks.remove()
