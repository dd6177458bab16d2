"""The parameter-free channel maps of a pruned network, where a layer's channels are read by position.

Two layers of seprobe's networks see a channel's index, not only its values, and so cannot be cut as a tensor is:

* He et al. 2015's option-A shortcut (:class:`~seprobe.models.cifar_resnet.OptionAShortcut`) places the
  ``C_s`` channels of stage ``s`` at the first ``C_s`` positions of stage ``s + 1``'s ``C_{s+1}`` and pads the
  rest with zeros. Once either side is pruned, input channel ``i`` must still land where its output channel went:
  :class:`ScatterShortcut` is option A with that map written out (a kept input channel goes to its output
  channel's new position; an input channel whose output channel was pruned, or the other way round, is dropped,
  which is what zeroing it did).
* ECA's 1-D convolution across the channels (Wang et al. 2020, ``excitation="conv1d"``) mixes each channel's
  descriptor ``z_c`` with its ``k - 1`` neighbours. After pruning, the kept channels' descriptors go back to
  their positions in the unpruned block (zeros at the pruned positions, which is what a zeroed channel's ``z_c``
  is): :class:`PositionedConv1d`, so that every kept gate reads the neighbours it read before.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..cifar_resnet import OptionAShortcut


def _long(values: Sequence[int], device: torch.device | None) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.long, device=device)


def _kept(indices: Sequence[int] | None, width: int) -> dict[int, int]:
    """Old index -> new index of the channels kept (all of them when ``indices`` is ``None``)."""
    return {old: new for new, old in enumerate(range(width) if indices is None else indices)}


class ScatterShortcut(nn.Module):
    """Option A, generalised: subsample by ``stride``, then input channel ``sources[k]`` becomes output channel
    ``targets[k]``; every other output channel is zero (no parameters). He et al.'s option A is
    ``sources = targets = 0 .. cin - 1``."""

    def __init__(self, cin: int, cout: int, stride: int, sources: Sequence[int], targets: Sequence[int],
                 device: torch.device | None = None):
        super().__init__()
        if len(sources) != len(targets):
            raise ValueError(f"{len(sources)} sources for {len(targets)} targets")
        self.cin, self.cout, self.stride = cin, cout, stride
        # not persistent: the map is rebuilt by the surgery that made it, the state dict holds weights only
        self.register_buffer("sources", _long(sources, device), persistent=False)
        self.register_buffer("targets", _long(targets, device), persistent=False)

    @classmethod
    def of(cls, shortcut: OptionAShortcut | ScatterShortcut) -> ScatterShortcut:
        """``shortcut`` as a scatter (itself when it is one)."""
        if isinstance(shortcut, ScatterShortcut):
            return shortcut
        identity = range(shortcut.cin)
        return cls(shortcut.cin, shortcut.cout, shortcut.stride, identity, identity)

    def pruned(self, inputs: Sequence[int] | None, outputs: Sequence[int] | None) -> ScatterShortcut:
        """The shortcut between the kept ``inputs`` and kept ``outputs`` (sorted old indices; ``None``: all)."""
        new_in, new_out = _kept(inputs, self.cin), _kept(outputs, self.cout)
        pairs = [(new_in[s], new_out[t]) for s, t in zip(self.sources.tolist(), self.targets.tolist(), strict=True)
                 if s in new_in and t in new_out]
        return ScatterShortcut(len(new_in), len(new_out), self.stride, [s for s, _ in pairs], [t for _, t in pairs],
                               device=self.sources.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        out = x.new_zeros((x.shape[0], self.cout, *x.shape[2:]))
        return out.index_copy(1, self.targets, x.index_select(1, self.sources))

    def extra_repr(self) -> str:
        return f"{self.cin}, {self.cout}, stride={self.stride}, channels carried={self.sources.numel()}"


class PositionedConv1d(nn.Conv1d):
    """ECA's ``Conv1d(1, 1, k)`` across the channels of a pruned block: the ``C'`` kept descriptors are put back
    at their ``positions`` among the unpruned block's ``width`` channels (zeros elsewhere), convolved as before,
    and read back at the same positions. The weight keeps its name (``weight``): the state dict is the
    unpruned block's."""

    def __init__(self, kernel_size: int, padding: int, width: int, positions: Sequence[int], bias: bool = False,
                 device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__(1, 1, kernel_size, padding=padding, bias=bias, device=device, dtype=dtype)
        self.width = width
        self.register_buffer("positions", _long(positions, device), persistent=False)

    @classmethod
    def of(cls, conv: nn.Conv1d, width: int) -> PositionedConv1d:
        """``conv`` (ECA's, over ``width`` channels) as a positioned convolution (itself when it is one)."""
        if isinstance(conv, PositionedConv1d):
            return conv
        if conv.in_channels != 1 or conv.out_channels != 1 or conv.stride != (1,) or conv.dilation != (1,):
            raise ValueError(f"not ECA's 1-D convolution across channels: {conv}")
        return cls._like(conv, width, range(width))

    @classmethod
    def _like(cls, conv: nn.Conv1d, width: int, positions: Sequence[int]) -> PositionedConv1d:
        new = cls(conv.kernel_size[0], conv.padding[0], width, positions, bias=conv.bias is not None,
                  device=conv.weight.device, dtype=conv.weight.dtype)
        new.weight = conv.weight
        if conv.bias is not None:
            new.bias = conv.bias
        return new

    def pruned(self, keep: Sequence[int]) -> PositionedConv1d:
        """The convolution for the kept channels ``keep`` (sorted indices into the current ones)."""
        return self._like(self, self.width, self.positions[_long(keep, self.positions.device)].tolist())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = x.new_zeros((*x.shape[:-1], self.width)).index_copy(-1, self.positions, x)
        return super().forward(full).index_select(-1, self.positions)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, channels={self.positions.numel()} of {self.width}"
