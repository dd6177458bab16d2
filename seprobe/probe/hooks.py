"""Forward hooks on the gates of an SE network: read ``s`` (Eq. 3), or replace it by a constant.

One hook per gate module (:attr:`~seprobe.models.blocks.SEBlockInfo.gate_path`). Each keeps the latest output,
by block name (:attr:`GateHooks.values`); for the blocks :meth:`GateHooks.replace` names, it returns a constant
instead (a hook that returns a tensor replaces the module's output):

* ``identity``: ``s = 1``, the block is removed (the paper's reading of a saturated block, Sec. 7.2);
* ``mean``: ``s_c = E[s_c]``, a fixed per-channel scale (the calibration means given), shaped ``1 x C x 1 x 1``
  and expanded to the gate's output, so per-position NoSqueeze gates get it at every position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ..choices import REPLACEMENTS
from ..errors import SeprobeError
from ..models.blocks import SEBlockInfo


class GateHooks:
    """Hooks on the gates of ``blocks``; use as a context manager, or call :meth:`remove`."""

    def __init__(self, model: nn.Module, blocks: Sequence[SEBlockInfo],
                 means: Mapping[str, torch.Tensor] | None = None):
        self.blocks = {b.name: b for b in blocks}
        self.means = dict(means or {})
        self.values: dict[str, torch.Tensor] = {}
        self.active: dict[str, str] = {}
        self._handles = [model.get_submodule(b.gate_path).register_forward_hook(self._hook(b.name)) for b in blocks]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            mode = self.active.get(name)
            if mode is None:
                self.values[name] = output.detach()
                return None
            c = output.shape[1]
            value = torch.ones(c) if mode == "identity" else self.means[name]
            shape = (1, c) + (1,) * (output.dim() - 2)
            return value.to(output.device, output.dtype).reshape(shape).expand_as(output)
        return hook

    def replace(self, modes: Mapping[str, str] | None = None) -> None:
        """From the next forward pass on, each block of ``modes`` (block name -> ``identity`` / ``mean``) returns
        that constant; nothing else is replaced (``replace()`` restores every gate)."""
        modes = dict(modes or {})
        for name, mode in modes.items():
            if name not in self.blocks:
                raise SeprobeError(f"unknown block {name!r}; valid: {', '.join(self.blocks)}")
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
    """``with recorded_gates(model, blocks) as values: model(x)``: every gate's output of the last pass."""
    hooks = GateHooks(model, blocks)
    try:
        yield hooks.values
    finally:
        hooks.remove()
