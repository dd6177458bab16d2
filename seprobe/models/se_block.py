"""The Squeeze-and-Excitation block (Hu et al., "Squeeze-and-Excitation Networks", Sec. 3, Eq. 1-4), and the
blocks of SE's successors, each a choice of its parts.

For a feature map ``u`` of ``C`` channels (Eq. 1 is the transformation that produced it):

* squeeze (Eq. 2): ``z_c = 1/(H*W) * sum_ij u_c(i, j)``, global average pooling (``squeeze="avg"``);
  the ablation of Table 11 uses global max pooling (``"max"``), and Table 16's NoSqueeze drops the
  pooling altogether (``"none"``). CBAM's channel branch (Woo et al. 2018, Eq. 2) pools both ways
  (``"avgmax"``): each descriptor passes the same excitation, and the two are summed before the gate. SRM's
  style pooling (Lee et al. 2019) keeps each channel's mean and standard deviation (``"meanstd"``);
* excitation (Eq. 3): ``s = gate(W2 . relu(W1 . z))`` with ``W1: C/r x C`` and ``W2: C x C/r``
  (``excitation="bottleneck"``); the gate is the sigmoid by default and ReLU or tanh in Table 12's ablation
  (hard-sigmoid is MobileNetV3's). The ECA-Net paper's variants (Wang et al. 2020, Table 2): SE-Var1
  ``s = gate(z)`` (``"none"``), SE-Var2 ``s = gate(w * z)``, one weight per channel (``"diagonal"``), SE-Var3
  ``s = gate(W z)`` with one ``C x C`` FC (``"full"``), and ECA ``s = gate(conv1d_k(z))``, a 1-D convolution of
  kernel ``k`` across the channels, no bias (``"conv1d"``). SRM's style integration (``"srm"``): ``s_c =
  gate(BN(w_c1 * mean_c + w_c2 * std_c))``, a channel-wise FC then BatchNorm;
* scale (Eq. 4): ``x~_c = s_c * u_c``.

``W1`` and ``W2`` are 1x1 convolutions, as in the paper's Caffe models: on a pooled 1x1 map they are the
paper's fully connected layers, and with ``squeeze="none"`` they become the NoSqueeze 1x1 convolutions of the
same widths, applied at every position, so the gate is per position and per channel (as are SE-Var1/2/3's and
ECA's, which act on the channel vector at each position).

The gate output ``s`` is produced by the submodule ``gate``: a forward hook on it reads the excitation. CBAM's
spatial gate (:class:`SpatialGate`) follows the channel block in a :class:`CBAM`, with its own ``gate``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import SeprobeError
from .knobs import BIASED, ECA_KERNEL, EXCITATION, GATE, REDUCTION, SQUEEZE


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
    """Eq. 2: global average (or max) pooling to ``N x C x 1 x 1``; ``"none"`` passes the map through;
    ``"avgmax"`` gives both pooled descriptors (a pair); ``"meanstd"`` SRM's style descriptor ``N x C x 2``
    (mean, standard deviation)."""

    def __init__(self, kind: str = "avg"):
        super().__init__()
        self.kind = SQUEEZE.check("squeeze", kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "avg":
            return x.mean((2, 3), keepdim=True)
        if self.kind == "max":
            return x.amax((2, 3), keepdim=True)
        if self.kind == "avgmax":
            return x.mean((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
        if self.kind == "meanstd":
            # As SRM's official code: torch's std, with Bessel's correction (1 / (HW - 1)); undefined on a 1x1 map.
            flat = x.flatten(2)
            return torch.stack((flat.mean(2), flat.std(2)), dim=2)
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


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA-Net's adaptive kernel ``k = psi(C) = |log2(C) / gamma + b / gamma|_odd`` (the nearest odd integer),
    with ``gamma = 2``, ``b = 1``; a tie (``t`` an even integer, ``C = 2048``: ``t = 6``) goes up, as timm's
    ``EcaModule`` rounds (``int(t)``, plus one if even). timm also raises ``k`` to at least 3 (for ``C < 8``); the
    paper's rule gives 1 there. ECA-Net's released ResNets do not use the rule: their kernels are given per stage
    (ResNet-50: 3, 5, 5, 7, where the rule gives 5, 5, 5, 7)."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class SqueezeExcite(nn.Module):
    """Squeeze, excite, scale (Eq. 2-4) for a ``C``-channel feature map.

    Args:
        channels: ``C``, the channels of the feature map the block recalibrates.
        reduction: the reduction ratio ``r`` of the bottleneck; the hidden width is ``C // r``.
        hidden_channels: an explicit hidden width, instead of ``reduction``.
        squeeze: ``"avg"`` (Eq. 2), ``"max"`` (Table 11), ``"none"`` (Table 16's NoSqueeze), ``"avgmax"`` (CBAM),
            ``"meanstd"`` (SRM, with ``excitation="srm"`` only).
        gate: ``"sigmoid"`` (Eq. 3), ``"tanh"``, ``"relu"`` (Table 12) or ``"hardsigmoid"``.
        bias: biases on the FCs (the Caffe models have them on ``W1`` and ``W2``; the paper's ablations remove
            them); ``None``: on for the bottleneck, off for SE-Var2/3 (``w * z``, ``W z``); refused by the
            excitations without FCs.
        act_layer: the non-linearity between ``W1`` and ``W2`` (``delta`` in Eq. 3, a ReLU).
        excitation: ``"bottleneck"`` (Eq. 3), ``"none"`` / ``"diagonal"`` / ``"full"`` (SE-Var1/2/3),
            ``"conv1d"`` (ECA), ``"srm"`` (SRM's style integration).
        eca_kernel: ECA's kernel ``k`` (odd); ``None``: :func:`eca_kernel_size` of ``C``.

    Submodules by excitation: ``fc1``, ``act``, ``fc2`` (bottleneck); ``fc`` (diagonal: a depthwise 1x1
    convolution, ``C`` weights; full: a 1x1 convolution, ``C x C``); ``conv`` (conv1d: ``Conv1d(1, 1, k)`` with
    zero padding ``k // 2``, as ECA-Net's and timm's); ``cfc`` (``C`` groups of 2 weights, a grouped
    ``Conv1d``, the official code's ``C x 2`` parameter) and ``norm`` (``BatchNorm2d(C)``) for srm.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        hidden_channels: int | None = None,
        squeeze: str = "avg",
        gate: str = "sigmoid",
        bias: bool | None = None,
        act_layer: type[nn.Module] = nn.ReLU,
        *,
        excitation: str = "bottleneck",
        eca_kernel: int | None = None,
    ):
        super().__init__()
        EXCITATION.check("excitation", excitation)
        if (squeeze == "meanstd") != (excitation == "srm"):
            raise SeprobeError(f"invalid squeeze {squeeze!r} with excitation {excitation!r}; valid: squeeze "
                               "'meanstd' with excitation 'srm' (SRM), or neither", argument="squeeze")
        if bias is not None and excitation not in BIASED:
            raise SeprobeError(f"invalid bias {bias} with excitation {excitation!r}, which has none; valid: "
                               f"bias=None, or excitation {', '.join(map(repr, BIASED))}", argument="bias")
        bias = BIASED.get(excitation, False) if bias is None else bias
        if excitation != "bottleneck":
            hidden_channels = channels  # no reduction
        elif hidden_channels is None:
            hidden_channels = hidden_width(channels, reduction)
        elif hidden_channels < 1:
            raise SeprobeError(f"invalid hidden width {hidden_channels}; valid: an integer >= 1")
        self.channels = channels
        self.hidden_channels = hidden_channels
        self.excitation = excitation
        self.name: str | None = None  # "SE_<stage>_<block>", given by the architecture that holds the block
        self.squeeze = Squeeze(squeeze)
        if excitation == "bottleneck":
            self.fc1 = nn.Conv2d(channels, hidden_channels, kernel_size=1, bias=bias)
            self.act = act_layer(inplace=True)
            self.fc2 = nn.Conv2d(hidden_channels, channels, kernel_size=1, bias=bias)
        elif excitation in ("diagonal", "full"):
            self.fc = nn.Conv2d(channels, channels, kernel_size=1, bias=bias,
                                groups=channels if excitation == "diagonal" else 1)
        elif excitation == "conv1d":
            k = eca_kernel_size(channels) if eca_kernel is None else ECA_KERNEL.check("eca_kernel", eca_kernel)
            if not isinstance(k, int):
                raise SeprobeError(f"invalid eca_kernel {k!r} for one block; valid: an odd integer",
                                   argument="eca_kernel")
            self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=k // 2, bias=False)
        elif excitation == "srm":
            self.cfc = nn.Conv1d(channels, channels, kernel_size=2, groups=channels, bias=False)
            nn.init.zeros_(self.cfc.weight)  # as the official code: every gate starts at sigmoid(0) = 1/2
            self.norm = nn.BatchNorm2d(channels)
        self.gate = create_gate(gate)

    def excite(self, z: torch.Tensor) -> torch.Tensor:
        """The excitation before its gate, for one squeezed descriptor ``z`` (Eq. 3 without the gate)."""
        e = self.excitation
        if e == "bottleneck":
            return self.fc2(self.act(self.fc1(z)))
        if e in ("diagonal", "full"):
            return self.fc(z)
        if e == "conv1d":
            # across the channel axis, at each position: N x C x H x W -> (N H W) x 1 x C and back
            n, c, h, w = z.shape
            y = self.conv(z.permute(0, 2, 3, 1).reshape(-1, 1, c))  # -1: no size product for the tracer to count
            return y.reshape(n, h, w, c).permute(0, 3, 1, 2)
        if e == "srm":
            return self.norm(self.cfc(z).unsqueeze(-1))  # N x C x 2 -> N x C x 1 -> N x C x 1 x 1
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.squeeze(x)
        if isinstance(z, tuple):  # CBAM: both descriptors through the same excitation, summed
            avg, peak = z
            return x * self.gate(self.excite(avg) + self.excite(peak))
        return x * self.gate(self.excite(z))

    def extra_repr(self) -> str:
        parts = [f"name={self.name!r}"] if self.name else []
        if self.excitation != "bottleneck":
            parts.append(f"excitation={self.excitation!r}")
        return ", ".join(parts)


class SpatialGate(nn.Module):
    """CBAM's spatial attention (Woo et al. 2018, Eq. 3): ``M_s(F) = sigmoid(f7x7([AvgPool(F); MaxPool(F)]))``,
    the average and the maximum over the channels (two ``H x W`` maps, in that order), a 7x7 convolution to one
    map (zero padding 3, no bias), BatchNorm (the official code's, momentum 0.01), the sigmoid, then
    ``F' = M_s(F) * F`` at every position and channel. The gate's output (``N x 1 x H x W``) is the submodule
    ``gate``'s.

    The official code stacks the maps the other way (max, then mean: its conv's two input channels swapped)
    and starts the BatchNorm's weight at 0; timm's ``SpatialAttn`` stacks them as here, with torch's BatchNorm
    momentum (0.1).
    """

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, momentum=0.01)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = torch.cat((x.mean(1, keepdim=True), x.amax(1, keepdim=True)), dim=1)
        return x * self.gate(self.bn(self.conv(maps)))


class CBAM(nn.Module):
    """A channel block, then CBAM's spatial gate (Woo et al. 2018, Fig. 1: ``F' = M_c(F) * F``, ``F'' = M_s(F')
    * F'``). With the ``avgmax`` squeeze and the bottleneck excitation, ``channel`` is CBAM's channel attention
    module; any channel block may precede the spatial gate.

    The block's name is its channel part's (``name``): the channel gate is ``channel.gate``, the spatial gate
    ``spatial.gate`` (:class:`~seprobe.models.blocks.SEBlockInfo` names both).
    """

    def __init__(self, channel: SqueezeExcite, spatial: SpatialGate):
        super().__init__()
        self.channel = channel
        self.spatial = spatial

    @property
    def name(self) -> str | None:
        return self.channel.name

    @name.setter
    def name(self, value: str | None) -> None:
        self.channel.name = value

    @property
    def channels(self) -> int:
        return self.channel.channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))
