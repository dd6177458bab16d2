"""MobileNet 1.0-224 (v1, Howard et al. 2017), with and without SE (paper Table 3).

Thirteen depthwise-separable blocks (3x3 depthwise conv, 1x1 pointwise conv, each with BN and ReLU), built
from torchvision's ``Conv2dNormActivation``; the SE block recalibrates each block's output. Stages follow the
output stride: stage ``log2(stride)``, so the 112x112 block is stage 1 and the two 7x7 blocks stage 5.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from .se_config import ALL_STAGES, SEConfig

#: (output channels, stride) of the 13 depthwise-separable blocks
MOBILENET_V1 = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
                (512, 1), (1024, 2), (1024, 1))


class DepthwiseSeparable(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, se: SEConfig | None = None):
        super().__init__()
        self.dw = Conv2dNormActivation(cin, cin, 3, stride, groups=cin)
        self.pw = Conv2dNormActivation(cin, cout, 1)
        self.se = se.block(cout) if se is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pw(self.dw(x))
        return self.se(x) if self.se is not None else x


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int = 1000, se: SEConfig | None = None):
        super().__init__()
        if se is not None:
            se.check_stages(ALL_STAGES)
        self.stem = Conv2dNormActivation(3, 32, 3, 2)
        blocks, cin, stride_so_far, counters = [], 32, 2, {}
        for cout, stride in MOBILENET_V1:
            stride_so_far *= stride
            stage = int(math.log2(stride_so_far))
            block = DepthwiseSeparable(cin, cout, stride, se if se is not None and se.carries(stage) else None)
            counters[stage] = counters.get(stage, 0) + 1
            if block.se is not None:
                block.se.name = f"SE_{stage}_{counters[stage]}"
            blocks.append(block)
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))
