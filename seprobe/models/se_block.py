"""The Squeeze-and-Excitation block (Hu et al., "Squeeze-and-Excitation Networks", Sec. 3, Eq. 1-4).

For a feature map ``u`` of ``C`` channels (Eq. 1 is the transformation that produced it):

* squeeze (Eq. 2): ``z_c = 1/(H*W) * sum_ij u_c(i, j)``, global average pooling (``squeeze="avg"``);
  the ablation of Table 11 uses global max pooling (``"max"``), and Table 16's NoSqueeze drops the
  pooling altogether (``"none"``);
* excitation (Eq. 3): ``s = gate(W2 . relu(W1 . z))`` with ``W1: C/r x C`` and ``W2: C x C/r``; the gate is
  the sigmoid by default and ReLU or tanh in Table 12's ablation (hard-sigmoid is MobileNetV3's);
* scale (Eq. 4): ``x~_c = s_c * u_c``.

``W1`` and ``W2`` are 1x1 convolutions, as in the paper's Caffe models: on a pooled 1x1 map they are the
paper's fully connected layers, and with ``squeeze="none"`` they become the NoSqueeze 1x1 convolutions of the
same widths, applied at every position, so the gate is per position and per channel.

The gate output ``s`` is produced by the submodule ``gate``: a forward hook on it reads the excitation.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import SeprobeError
from .knobs import GATE, REDUCTION, SQUEEZE


def create_gate(name: str) -> nn.Module:
    """The excitation's final non-linearity, by name (Table 12's ablation)."""
    GATE.check("gate", name)
    return {
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "relu": nn.ReLU,
        "hardsigmoid": nn.Hardsigmoid,
    }[name]()


class Squeeze(nn.Module):
    """Eq. 2: global average (or max) pooling to ``N x C x 1 x 1``; ``"none"`` passes the map through."""

    def __init__(self, kind: str = "avg"):
        super().__init__()
        self.kind = SQUEEZE.check("squeeze", kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "avg":
            return x.mean((2, 3), keepdim=True)
        if self.kind == "max":
            return x.amax((2, 3), keepdim=True)
        return x

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


def hidden_width(channels: int, reduction: int) -> int:
    """The bottleneck width ``C // r`` of the excitation (the paper's and the Caffe models' rounding)."""
    REDUCTION.check("reduction", reduction)
    if reduction > channels:
        raise SeprobeError(
            f"invalid reduction ratio {reduction}: larger than an SE block's {channels} channels; "
            f"valid: 1 <= r <= {channels}", argument="reduction"
        )
    return channels // reduction


class SqueezeExcite(nn.Module):
    """Squeeze, excite, scale (Eq. 2-4) for a ``C``-channel feature map.

    Args:
        channels: ``C``, the channels of the feature map the block recalibrates.
        reduction: the reduction ratio ``r``; the hidden width is ``C // r``.
        hidden_channels: an explicit hidden width, instead of ``reduction``.
        squeeze: ``"avg"`` (Eq. 2), ``"max"`` (Table 11) or ``"none"`` (Table 16's NoSqueeze).
        gate: ``"sigmoid"`` (Eq. 3), ``"tanh"``, ``"relu"`` (Table 12) or ``"hardsigmoid"``.
        bias: biases on ``W1`` and ``W2`` (the Caffe models have them; the paper's ablations remove them).
        act_layer: the non-linearity between ``W1`` and ``W2`` (``delta`` in Eq. 3, a ReLU).
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        hidden_channels: int | None = None,
        squeeze: str = "avg",
        gate: str = "sigmoid",
        bias: bool = True,
        act_layer: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        if hidden_channels is None:
            hidden_channels = hidden_width(channels, reduction)
        elif hidden_channels < 1:
            raise SeprobeError(f"invalid hidden width {hidden_channels}; valid: an integer >= 1")
        self.channels = channels
        self.hidden_channels = hidden_channels
        self.name: str | None = None  # "SE_<stage>_<block>", given by the architecture that holds the block
        self.squeeze = Squeeze(squeeze)
        self.fc1 = nn.Conv2d(channels, hidden_channels, kernel_size=1, bias=bias)
        self.act = act_layer(inplace=True)
        self.fc2 = nn.Conv2d(hidden_channels, channels, kernel_size=1, bias=bias)
        self.gate = create_gate(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gate(self.fc2(self.act(self.fc1(self.squeeze(x)))))
        return x * s

    def extra_repr(self) -> str:
        return f"name={self.name!r}" if self.name else ""
