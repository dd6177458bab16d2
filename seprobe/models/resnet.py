"""ResNet and ResNeXt with and without SE (paper Sec. 3.3, Table 1), on torchvision's ``ResNet``.

Two knobs decide which published ResNet this is:

* ``stride_at``: where a downsampling bottleneck puts its stride 2. ``"1x1"`` is the original Caffe ResNet the
  paper used (3.86 GFLOPs for ResNet-50): the stride is in the first 1x1 conv. ``"3x3"`` is torchvision's
  "v1.5" (4.09 GFLOPs), also used by timm's ``seresnet*`` and by the paper's own SE-ResNeXt models. The
  registry's default is the paper's: ``1x1`` for ResNets, ``3x3`` for ResNeXts. BasicBlock models (ResNet-18/34)
  have no 1x1 conv on their residual branch: the knob has no effect there.
* ``stem_pool``: the stem's 3x3 max-pool. ``"ceil"`` is Caffe's (no padding, rounded up), which the
  paper's models and timm's ``legacy_seresnet*`` use; ``"pad"`` is torchvision's (padding 1). Both give a
  56x56 map at 224x224 input and the same FLOPs, but not the same values. ``None`` picks ``"ceil"`` with
  ``stride_at="1x1"`` and ``"pad"`` with ``"3x3"``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.models.resnet import ResNet, conv1x1, conv3x3

from .arch_config import STEM_POOL, STRIDE_AT
from .se_config import STAGES, SEConfig, attach_se


def stage_of(planes: int) -> int:
    """The paper's stage number (2..5) of a torchvision ResNet layer, from its ``planes`` (64..512)."""
    return int(math.log2(planes // 64)) + 2


class SEBasicBlock(nn.Module):
    """ResNet-18/34's two-3x3 residual unit, with an optional SE block (``integration="3x3"``: after the
    first 3x3 conv)."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1,
                 norm_layer=None, *, stride_at="1x1", se: SEConfig | None = None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride
        attach_se(self, se, pre=inplanes, inner=planes, out=planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.se(x) if self.integration == "pre" else x
        out = self.relu(self.bn1(self.conv1(out)))
        if self.integration == "3x3":
            out = self.se(out)
        out = self.bn2(self.conv2(out))
        return _merge(self, out, x, identity)


class SEBottleneck(nn.Module):
    """The 1x1-3x3-1x1 bottleneck (grouped 3x3 for ResNeXt), with an optional SE block.

    ``stride_at="1x1"`` puts the downsampling stride in ``conv1`` (Caffe), ``"3x3"`` in ``conv2``.
    """

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1,
                 norm_layer=None, *, stride_at="1x1", se: SEConfig | None = None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        s1, s3 = (stride, 1) if stride_at == "1x1" else (1, stride)
        self.conv1 = conv1x1(inplanes, width, s1)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, s3, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        attach_se(self, se, pre=inplanes, inner=width, out=planes * self.expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.se(x) if self.integration == "pre" else x
        out = self.relu(self.bn1(self.conv1(out)))
        out = self.relu(self.bn2(self.conv2(out)))
        if self.integration == "3x3":
            out = self.se(out)
        out = self.bn3(self.conv3(out))
        return _merge(self, out, x, identity)


def _merge(block: nn.Module, out: torch.Tensor, x: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
    """The end of a residual unit: the standard, identity and post placements of Fig. 5."""
    if block.integration == "standard":
        out = block.se(out)
    if block.downsample is not None:
        identity = block.downsample(x)
    if block.integration == "identity":
        identity = block.se(identity)
    out = block.relu(out + identity)
    if block.integration == "post":
        out = block.se(out)
    return out


class _StagedBlock:
    """What torchvision's ``ResNet._make_layer`` calls to build a block: passes the stride placement, and the
    SE configuration only to the blocks of the stages that carry SE (with that stage's ECA kernel)."""

    def __init__(self, block: type[nn.Module], stride_at: str, se: SEConfig | None):
        self.block, self.stride_at, self.se = block, stride_at, se
        self.expansion = block.expansion

    def __call__(self, inplanes, planes, *args, **kwargs):
        stage = stage_of(planes)
        se = self.se.for_stage(stage, STAGES) if self.se and self.se.carries(stage) else None
        return self.block(inplanes, planes, *args, stride_at=self.stride_at, se=se, **kwargs)


class SEResNet(ResNet):
    """torchvision's ResNet with the stride placement, the Caffe stem pool and SE blocks as knobs.

    Every SE block is named the paper's way, ``SE_<stage>_<block>`` (1-based; ``SE_4_6`` is stage 4's sixth
    block), in its ``name`` attribute. Without ``se`` this is the plain ResNet/ResNeXt.
    """

    def __init__(self, block, layers, *, groups=1, width_per_group=64, num_classes=1000,
                 stride_at="1x1", stem_pool=None, se: SEConfig | None = None):
        STRIDE_AT.check("stride_at", stride_at)
        if se is not None:
            se.check_stages(STAGES)
        if stem_pool is None:
            stem_pool = "ceil" if stride_at == "1x1" else "pad"
        STEM_POOL.check("stem_pool", stem_pool)
        super().__init__(_StagedBlock(block, stride_at, se), layers, num_classes=num_classes,
                         groups=groups, width_per_group=width_per_group)
        if stem_pool == "ceil":
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        self.stride_at, self.stem_pool, self.se_config = stride_at, stem_pool, se
        for stage, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), start=2):
            for index, unit in enumerate(layer, start=1):
                if unit.se is not None:
                    unit.se.name = f"SE_{stage}_{index}"
