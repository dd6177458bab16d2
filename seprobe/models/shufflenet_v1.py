"""ShuffleNet 1x (g = 3) (v1, Zhang et al. 2018), with and without SE (paper Table 3).

A unit is 1x1 group conv (BN, ReLU), channel shuffle, 3x3 depthwise conv (BN), 1x1 group conv (BN); stride-1
units add the input, stride-2 units concatenate a 3x3 average pool of it. The bottleneck width is a quarter of
the stage's output channels; the first 1x1 conv of stage 2 is not grouped (its input has only 24 channels). The
SE block recalibrates the residual branch before the sum or concatenation. Stages follow the output stride
(``log2(stride)``): the ShuffleNet paper's stages 2, 3, 4 (28x28, 14x14, 7x7) are stages 3, 4, 5 here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from .se_config import SEConfig

#: g = 3, 1x: (output channels, units) of stages 3, 4, 5 (the ShuffleNet paper's stages 2, 3, 4)
SHUFFLENET_V1_G3 = ((240, 4), (480, 8), (960, 4))
SHUFFLENET_STAGES = (3, 4, 5)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, groups: int, first_grouped: bool,
                 se: SEConfig | None = None):
        super().__init__()
        self.stride, self.groups = stride, groups
        mid = cout // 4
        branch_out = cout - cin if stride == 2 else cout
        self.reduce = Conv2dNormActivation(cin, mid, 1, groups=groups if first_grouped else 1)
        self.depthwise = Conv2dNormActivation(mid, mid, 3, stride, groups=mid, activation_layer=None)
        self.expand = Conv2dNormActivation(mid, branch_out, 1, groups=groups, activation_layer=None)
        self.se = se.block(branch_out) if se is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(self.depthwise(channel_shuffle(self.reduce(x), self.groups)))
        if self.se is not None:
            out = self.se(out)
        if self.stride == 2:
            return F.relu(torch.cat((F.avg_pool2d(x, 3, 2, 1), out), 1))
        return F.relu(x + out)


class ShuffleNetV1(nn.Module):
    def __init__(self, stages=SHUFFLENET_V1_G3, groups: int = 3, num_classes: int = 1000,
                 se: SEConfig | None = None):
        super().__init__()
        if se is not None:
            se.check_stages(SHUFFLENET_STAGES)
        self.stem = Conv2dNormActivation(3, 24, 3, 2)
        self.pool = nn.MaxPool2d(3, 2, 1)
        units, cin = [], 24
        for stage, (cout, repeats) in zip(SHUFFLENET_STAGES, stages, strict=True):
            for i in range(repeats):
                carries = se is not None and se.carries(stage)
                unit = ShuffleUnit(cin, cout, 2 if i == 0 else 1, groups, first_grouped=cin != 24,
                                   se=se if carries else None)
                if unit.se is not None:
                    unit.se.name = f"SE_{stage}_{i + 1}"
                units.append(unit)
                cin = cout
        self.units = nn.Sequential(*units)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.units(self.pool(self.stem(x)))
        return self.fc(x.mean((2, 3)))
