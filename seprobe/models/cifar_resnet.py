"""The CIFAR networks of the paper's Tables 4 and 5, with and without SE, for 32x32 images.

Three families, each a 3x3 stem of 16 channels and three stages of residual units:

* the CIFAR ResNets of He et al. 2015 ("Deep Residual Learning", Sec. 4.2): ResNet-20/32/44/56/110, depth
  ``6n + 2``: ``n`` basic blocks (conv-BN-ReLU, conv-BN, sum, ReLU: :class:`~seprobe.models.resnet.SEBasicBlock`)
  per stage at 16, 32, 64 channels. Where the shape changes the shortcut is the parameter-free "option A"
  (:class:`OptionAShortcut`): the stride-2 subsampling ``x[:, :, ::2, ::2]`` and zero channels appended after
  the existing ones (as fb.resnet.torch's shortcut type A concatenates ``x`` and ``0 * x``; some PyTorch ports
  pad both sides instead, which changes no count). The stem is conv-BN-ReLU.
* the pre-activation ResNets of He et al. 2016 ("Identity Mappings", Fig. 4e): ResNet-110 (basic units,
  ``n = 18``) and ResNet-164 (bottleneck units 1x1-3x3-1x1 with 4x expansion, ``n = 18``, outputs 64/128/256,
  the stride in the 3x3 conv). Each unit is BN-ReLU-conv, twice (three times), plus the shortcut, with nothing
  after the sum; the stem is a bare conv and the network ends with BN-ReLU before the pooling. Where the shape
  changes the shortcut is a 1x1 projection (no BN) of the unit's pre-activated input ``relu(bn1(x))``, shared
  by the two branches as in the authors' Torch code (``both_preact``), the WRN code and timm's ``ResNetV2``
  (elsewhere the shortcut is ``x`` itself).
* WRN-16-8 (Zagoruyko & Komodakis 2016): the same pre-activation basic units at 16*8 = 128, 256, 512 channels,
  ``n = (16 - 4) / 6 = 2`` per stage, 1x1 projections where the shape changes (also in stage 1: 16 -> 128),
  no dropout.

Stages and SE block names: the stages are numbered 1, 2, 3 (the CIFAR paper's three maps; stage ``s`` works at
``32 / 2^(s-1)``: 32x32, 16x16, 8x8 for a 32x32 image), blocks 1-based within a stage: ``SE_<stage>_<block>``,
so ``SE_3_18`` is the last unit of ResNet-110. The ``stages`` knob takes a subset of 1, 2, 3; there is no
stage 5, so ``drop_stage5=True`` is refused (use ``stages``).

SE placements (paper Fig. 5, ``integration``): in the post-activation ResNets exactly as
:class:`~seprobe.models.resnet.SEBasicBlock` (this module reuses it). In a pre-activation unit ``x -> a =
relu(bn1(x))``:

* ``standard`` (the paper's SE-ResNet module, Fig. 3): on the residual branch, after its last conv, before the
  sum (``C`` = the unit's output channels);
* ``pre``: on ``a``, the residual branch's input (the shortcut reads ``x``, or ``a`` for a projection, without
  SE), on the unit's input channels;
* ``post``: after the sum (a pre-activation unit has no ReLU there);
* ``identity``: on the shortcut (after the projection, where there is one);
* ``3x3``: after the (first) 3x3 conv and the BN-ReLU that follows it, on the branch's narrower width.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import conv1x1, conv3x3

from ..data.images import Preprocessing
from ..errors import SeprobeError
from .arch_config import NUM_CLASSES
from .resnet import SEBasicBlock
from .se_config import SEConfig, attach_se, parse_stages

#: the evaluation transform of a CIFAR network: the 32x32 image as it is, normalised by CIFAR-10's training-set
#: per-channel mean and standard deviation (of the original images; the JPEG copy in shared/ differs by < 0.003)
EVALUATION = Preprocessing(resize=32, crop=32, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
CIFAR_STAGES = (1, 2, 3)  # the three maps of a CIFAR ResNet: 32x32, 16x16, 8x8 at 32x32 input
STEM_WIDTH = 16
#: The smallest side measured: stage 3 at one pixel, as the ImageNet models' 32 puts stage 5 at one pixel. (The
#: forward pass accepts any side >= 1: every conv pads, and the strides and option A's subsampling both round up.)
MIN_INPUT_SIZE = 4


class OptionAShortcut(nn.Module):
    """He et al. 2015's option A: identity, subsampled by ``stride`` and with ``cout - cin`` zero channels
    appended (no parameters)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        if cout < cin:
            raise ValueError(f"option A pads channels: {cout} < {cin}")
        self.cin, self.cout, self.stride = cin, cout, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.cout - self.cin))

    def extra_repr(self) -> str:
        return f"{self.cin}, {self.cout}, stride={self.stride}"


def _preact_merge(block: nn.Module, out: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
    """The end of a pre-activation unit: the standard, identity and post placements of Fig. 5; no ReLU."""
    if block.integration == "standard":
        out = block.se(out)
    if block.integration == "identity":
        shortcut = block.se(shortcut)
    out = out + shortcut
    if block.integration == "post":
        out = block.se(out)
    return out


class PreActBasicBlock(nn.Module):
    """The full pre-activation unit with two 3x3 convs (He et al. 2016, Fig. 4e): BN-ReLU-conv, BN-ReLU-conv."""

    expansion = 1
    preact = True

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, *,
                 se: SEConfig | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample
        self.stride = stride
        attach_se(self, se, pre=inplanes, inner=planes, out=planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.bn1(x))
        shortcut = self.downsample(a) if self.downsample is not None else x
        out = self.conv1(self.se(a) if self.integration == "pre" else a)
        out = self.relu(self.bn2(out))
        if self.integration == "3x3":
            out = self.se(out)
        return _preact_merge(self, self.conv2(out), shortcut)


class PreActBottleneck(nn.Module):
    """The full pre-activation bottleneck (He et al. 2016): BN-ReLU-1x1, BN-ReLU-3x3 (with the stride),
    BN-ReLU-1x1 to ``4 * planes``."""

    expansion = 4
    preact = True

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, *,
                 se: SEConfig | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = conv1x1(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.downsample = downsample
        self.stride = stride
        attach_se(self, se, pre=inplanes, inner=planes, out=planes * self.expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.bn1(x))
        shortcut = self.downsample(a) if self.downsample is not None else x
        out = self.conv1(self.se(a) if self.integration == "pre" else a)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.relu(self.bn3(out))
        if self.integration == "3x3":
            out = self.se(out)
        return _preact_merge(self, self.conv3(out), shortcut)


def check_se(se: SEConfig) -> None:
    """Raise unless ``se`` fits a three-stage CIFAR network (stages 1..3, no stage 5 to drop)."""
    if se.drop_stage5:
        raise SeprobeError("invalid drop_stage5=True: a CIFAR ResNet has no stage 5 (its stages are 1, 2, 3); "
                           "valid: drop_stage5=False, and stages= a subset of 1, 2, 3")
    se.check_stages(CIFAR_STAGES)


def se_config(**knobs: Any) -> SEConfig:
    """The SE knobs of a CIFAR model, with ``stages`` checked against 1, 2, 3 (not the ImageNet 1..5)."""
    stages: Iterable[int] | None = knobs.get("stages")
    if stages is not None:
        knobs["stages"] = parse_stages(stages, CIFAR_STAGES)
    se = SEConfig(**knobs)
    check_se(se)
    return se


class CifarResNet(nn.Module):
    """A three-stage CIFAR ResNet: stem, ``layer1..layer3`` (strides 1, 2, 2), global average pool, FC.

    ``block`` is :class:`~seprobe.models.resnet.SEBasicBlock` (post-activation, option-A shortcuts, conv-BN-ReLU
    stem) or a pre-activation unit (1x1 projection shortcuts, bare conv stem, final BN-ReLU). Every SE block is
    named ``SE_<stage>_<block>`` (stages 1..3) in its ``name`` attribute.
    """

    def __init__(self, block: type[nn.Module], layers: tuple[int, int, int],
                 widths: tuple[int, int, int] = (16, 32, 64), *, num_classes: int = 10, se: SEConfig | None = None):
        super().__init__()
        NUM_CLASSES.check("num_classes", num_classes)
        if se is not None:
            check_se(se)
        self.preact = getattr(block, "preact", False)
        self.se_config = se
        self.conv1 = conv3x3(3, STEM_WIDTH)
        self.relu = nn.ReLU(inplace=True)
        if not self.preact:
            self.bn1 = nn.BatchNorm2d(STEM_WIDTH)
        inplanes = STEM_WIDTH
        for stage, (n, width) in enumerate(zip(layers, widths, strict=True), start=1):
            out = width * block.expansion
            stage_se = se.for_stage(stage, CIFAR_STAGES) if se is not None and se.carries(stage) else None
            units = []
            for index in range(1, n + 1):
                stride = 2 if stage > 1 and index == 1 else 1
                downsample = None
                if stride != 1 or inplanes != out:
                    downsample = conv1x1(inplanes, out, stride) if self.preact else \
                        OptionAShortcut(inplanes, out, stride)
                unit = block(inplanes, width, stride, downsample, se=stage_se)
                if unit.se is not None:
                    unit.se.name = f"SE_{stage}_{index}"
                units.append(unit)
                inplanes = out
            self.add_module(f"layer{stage}", nn.Sequential(*units))
        if self.preact:
            self.final_bn = nn.BatchNorm2d(inplanes)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():  # He et al.'s initialisation, as torchvision's ResNet
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if not self.preact:
            x = self.relu(self.bn1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.preact:
            x = self.relu(self.final_bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


#: name -> (unit, units per stage, stage widths, title); stage outputs are the widths times the unit's expansion
CIFAR_MODELS: dict[str, tuple[type[nn.Module], tuple[int, int, int], tuple[int, int, int], str]] = {
    **{f"resnet{6 * n + 2}_cifar": (SEBasicBlock, (n, n, n), (16, 32, 64), f"ResNet-{6 * n + 2} (CIFAR)")
       for n in (3, 5, 7, 9, 18)},
    "preact_resnet110_cifar": (PreActBasicBlock, (18, 18, 18), (16, 32, 64), "Pre-act ResNet-110 (CIFAR)"),
    "preact_resnet164_cifar": (PreActBottleneck, (18, 18, 18), (16, 32, 64), "Pre-act ResNet-164 (CIFAR)"),
    "wrn16_8_cifar": (PreActBasicBlock, (2, 2, 2), (128, 256, 512), "WRN-16-8 (CIFAR)"),
}


def cifar_resnet(name: str, *, num_classes: int = 10, se: SEConfig | None = None) -> CifarResNet:
    """One of :data:`CIFAR_MODELS` by name."""
    block, layers, widths, _ = CIFAR_MODELS[name]
    return CifarResNet(block, layers, widths, num_classes=num_classes, se=se)
