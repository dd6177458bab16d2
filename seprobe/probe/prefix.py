"""Reuse the network's prefix between ablations: what runs before the first replaced gate does not change.

Any network, no knowledge of its ``forward``: one probe pass logs when every module's call starts and ends.
For an ablation whose earliest replaced gate starts at time ``t``, every module called exactly once, returning a
tensor and ending before ``t`` computes what it computed in the full pass. The outermost of those (the
*frontier*) are swapped for stubs that return their output of the full pass, recorded once per batch; the
network's own code still runs around them (residual sums, reshapes), on identical values, so the logits are
those of a plain pass. Modules that work in place (``inplace=True``) are never stubbed themselves: their input
would not be modified as the code may expect.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ..models.blocks import SEBlockInfo, gate_paths


class _Replay(nn.Module):
    """Return a recorded output (a copy: the network may modify it in place)."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = value

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.value.clone()


class PrefixReuse:
    """Frontiers per set of replaced gates, the recording of their outputs in the full pass, and the replay."""

    def __init__(self, model: nn.Module, blocks: Sequence[SEBlockInfo]):
        self.model = model
        self.gate_paths = gate_paths(blocks)  # by gate name: a CBAM block's spatial gate too
        self.start: dict[str, int] = {}
        self.end: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.tensor_out: dict[str, bool] = {}
        self.cache: dict[str, torch.Tensor] = {}
        self._frontiers: dict[tuple[str, ...], tuple[str, ...]] = {}

    def probe(self, x: torch.Tensor) -> None:
        """Log every module's call interval on ``x`` (one image is enough)."""
        clock = [0]
        handles = []

        def pre(path):
            def hook(module, inputs):
                self.calls[path] = self.calls.get(path, 0) + 1
                self.start.setdefault(path, clock[0])
                clock[0] += 1
            return hook

        def post(path):
            def hook(module, inputs, output):
                self.end[path] = clock[0]
                self.tensor_out[path] = isinstance(output, torch.Tensor)
                clock[0] += 1
            return hook

        for path, m in self.model.named_modules():
            if path:
                handles += [m.register_forward_pre_hook(pre(path)), m.register_forward_hook(post(path))]
        try:
            with torch.inference_mode():
                self.model(x)
        finally:
            for h in handles:
                h.remove()

    def frontier(self, blocks: Iterable[str]) -> tuple[str, ...]:
        """The outermost modules that finish before the first of ``blocks``' gates starts."""
        key = tuple(sorted(blocks))
        if key not in self._frontiers:
            t = min(self.start[self.gate_paths[b]] for b in key)
            modules = dict(self.model.named_modules())

            def reusable(path: str) -> bool:
                return (self.calls.get(path) == 1 and self.end[path] < t and self.tensor_out[path]
                        and not getattr(modules[path], "inplace", False))

            chosen = []
            for path in self.start:
                parent = path.rpartition(".")[0]
                if reusable(path) and not (parent and reusable(parent)):
                    chosen.append(path)
            self._frontiers[key] = tuple(chosen)
        return self._frontiers[key]

    @contextmanager
    def recording(self, paths: Iterable[str]):
        """Keep a copy of each module's output during a (full) pass."""
        self.cache = {}

        def keep(path):
            def hook(module, inputs, output):
                self.cache[path] = output.detach().clone()
            return hook

        handles = [self.model.get_submodule(p).register_forward_hook(keep(p)) for p in set(paths)]
        try:
            yield self.cache
        finally:
            for h in handles:
                h.remove()

    @contextmanager
    def replaying(self, paths: Sequence[str]):
        """Swap the modules at ``paths`` for stubs that return their recorded outputs; restore them after."""
        originals = {p: self.model.get_submodule(p) for p in paths}
        try:
            for p in paths:
                self.model.set_submodule(p, _Replay(self.cache[p]))
            yield
        finally:
            for p, m in originals.items():
                self.model.set_submodule(p, m)
