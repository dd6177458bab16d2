"""BN-Inception and Inception-ResNet-v2, with and without SE (paper Fig. 2, Fig. 3, Table 2).

* BN-Inception (Ioffe & Szegedy 2015, Table 1: "Inception-v2"): the SE block recalibrates each Inception
  module's output (Fig. 2). Modules 3a-3c, 4a-4e, 5a-5b are stages 3, 4, 5: ``SE_4_2`` follows module 4b.
* Inception-ResNet-v2 (Szegedy et al. 2017), at 299x299, laid out as timm's ``inception_resnet_v2`` (timm is the
  reference in the tests): the SE block recalibrates the residual branch (after its 1x1 conv, before the scaling
  and the sum). Its 10 + 20 + 10 residual blocks work at 35x35, 17x17 and 8x8, stages 3, 4, 5 by output
  stride (``log2(299 / side)`` rounded): ``SE_4_20`` is the last 17x17 block.

Convolutions are torchvision's ``Conv2dNormActivation`` (conv without bias, BatchNorm, ReLU).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from .se_config import SEConfig

INCEPTION_STAGES = (3, 4, 5)

# BN-Inception, Table 1 of Ioffe & Szegedy: name -> (#1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3,
# pool, pool projection (0: pass-through), stride)
BN_INCEPTION_MODULES = (
    ("3a", 64, 64, 64, 64, 96, "avg", 32, 1),
    ("3b", 64, 64, 96, 64, 96, "avg", 64, 1),
    ("3c", 0, 128, 160, 64, 96, "max", 0, 2),
    ("4a", 224, 64, 96, 96, 128, "avg", 128, 1),
    ("4b", 192, 96, 128, 96, 128, "avg", 128, 1),
    ("4c", 160, 128, 160, 128, 160, "avg", 128, 1),
    ("4d", 96, 128, 192, 160, 192, "avg", 128, 1),
    ("4e", 0, 128, 192, 192, 256, "max", 0, 2),
    ("5a", 352, 192, 320, 160, 224, "avg", 128, 1),
    ("5b", 352, 192, 320, 192, 224, "max", 128, 1),
)


class InceptionModule(nn.Module):
    """Four branches concatenated: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 -> 3x3; pool (-> 1x1 projection)."""

    def __init__(self, cin, n1x1, n3r, n3, nd3r, nd3, pool, proj, stride, se: SEConfig | None = None):
        super().__init__()
        conv = Conv2dNormActivation
        self.branch1 = conv(cin, n1x1, 1) if n1x1 else None
        self.branch3 = nn.Sequential(conv(cin, n3r, 1), conv(n3r, n3, 3, stride))
        self.branch33 = nn.Sequential(conv(cin, nd3r, 1), conv(nd3r, nd3, 3), conv(nd3, nd3, 3, stride))
        if pool == "avg":
            pooling = nn.AvgPool2d(3, stride, 1, count_include_pad=False)
        else:  # Caffe's stride-2 pool: no padding, rounded up (28 -> 14)
            pooling = nn.MaxPool2d(3, stride, 0, ceil_mode=True) if stride == 2 else nn.MaxPool2d(3, 1, 1)
        self.pool = nn.Sequential(pooling, conv(cin, proj, 1)) if proj else pooling
        self.out_channels = n1x1 + n3 + nd3 + (proj or cin)
        self.se = se.block(self.out_channels) if se is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch3(x), self.branch33(x), self.pool(x)]
        if self.branch1 is not None:
            branches.insert(0, self.branch1(x))
        out = torch.cat(branches, 1)
        return self.se(out) if self.se is not None else out


class BNInception(nn.Module):
    def __init__(self, num_classes: int = 1000, se: SEConfig | None = None):
        super().__init__()
        if se is not None:
            se.check_stages(INCEPTION_STAGES)
        conv = Conv2dNormActivation
        self.stem = nn.Sequential(conv(3, 64, 7, 2), nn.MaxPool2d(3, 2, ceil_mode=True), conv(64, 64, 1),
                                  conv(64, 192, 3), nn.MaxPool2d(3, 2, ceil_mode=True))
        modules, cin = {}, 192
        for name, *spec in BN_INCEPTION_MODULES:
            stage, index = int(name[0]), ord(name[1]) - ord("a") + 1
            module = InceptionModule(cin, *spec, se=se if se is not None and se.carries(stage) else None)
            if module.se is not None:
                module.se.name = f"SE_{stage}_{index}"
            modules[f"inception_{name}"] = module
            cin = module.out_channels
        self.inception = nn.Sequential()
        for name, module in modules.items():
            self.inception.add_module(name, module)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.inception(self.stem(x)).mean((2, 3)))


_conv = partial(Conv2dNormActivation, padding=0, norm_layer=partial(nn.BatchNorm2d, eps=1e-3))


class _Residual(nn.Module):
    """An Inception-ResNet block: branches, concatenation, a 1x1 conv back to ``channels``, (SE,) scaled sum."""

    def __init__(self, branches: list[nn.Module], concat: int, channels: int, scale: float, relu: bool,
                 se: SEConfig | None):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.conv2d = nn.Conv2d(concat, channels, 1)
        self.scale = scale
        self.se = se.block(channels) if se is not None else None
        self.relu = nn.ReLU() if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d(torch.cat([b(x) for b in self.branches], 1))
        if self.se is not None:
            out = self.se(out)
        out = out * self.scale + x
        return self.relu(out) if self.relu is not None else out


def _block35(se):
    return _Residual([_conv(320, 32, 1),
                      nn.Sequential(_conv(320, 32, 1), _conv(32, 32, 3, padding=1)),
                      nn.Sequential(_conv(320, 32, 1), _conv(32, 48, 3, padding=1), _conv(48, 64, 3, padding=1))],
                     128, 320, 0.17, True, se)


def _block17(se):
    return _Residual([_conv(1088, 192, 1),
                      nn.Sequential(_conv(1088, 128, 1), _conv(128, 160, (1, 7), padding=(0, 3)),
                                    _conv(160, 192, (7, 1), padding=(3, 0)))],
                     384, 1088, 0.10, True, se)


def _block8(se, scale=0.20, relu=True):
    return _Residual([_conv(2080, 192, 1),
                      nn.Sequential(_conv(2080, 192, 1), _conv(192, 224, (1, 3), padding=(0, 1)),
                                    _conv(224, 256, (3, 1), padding=(1, 0)))],
                     448, 2080, scale, relu, se)


class _Concat(nn.Module):
    def __init__(self, *branches: nn.Module):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], 1)


class InceptionResNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, se: SEConfig | None = None):
        super().__init__()
        if se is not None:
            se.check_stages(INCEPTION_STAGES)
        self.stem = nn.Sequential(
            _conv(3, 32, 3, 2), _conv(32, 32, 3), _conv(32, 64, 3, padding=1), nn.MaxPool2d(3, 2),
            _conv(64, 80, 1), _conv(80, 192, 3), nn.MaxPool2d(3, 2),
            _Concat(_conv(192, 96, 1), nn.Sequential(_conv(192, 48, 1), _conv(48, 64, 5, padding=2)),
                    nn.Sequential(_conv(192, 64, 1), _conv(64, 96, 3, padding=1), _conv(96, 96, 3, padding=1)),
                    nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), _conv(192, 64, 1))))

        def stage_se(stage):
            return se if se is not None and se.carries(stage) else None

        self.repeat = nn.Sequential(*[_block35(stage_se(3)) for _ in range(10)])
        self.mixed_6a = _Concat(_conv(320, 384, 3, 2),
                                nn.Sequential(_conv(320, 256, 1), _conv(256, 256, 3, padding=1), _conv(256, 384, 3, 2)),
                                nn.MaxPool2d(3, 2))
        self.repeat_1 = nn.Sequential(*[_block17(stage_se(4)) for _ in range(20)])
        self.mixed_7a = _Concat(nn.Sequential(_conv(1088, 256, 1), _conv(256, 384, 3, 2)),
                                nn.Sequential(_conv(1088, 256, 1), _conv(256, 288, 3, 2)),
                                nn.Sequential(_conv(1088, 256, 1), _conv(256, 288, 3, padding=1),
                                              _conv(288, 320, 3, 2)),
                                nn.MaxPool2d(3, 2))
        self.repeat_2 = nn.Sequential(*[_block8(stage_se(5)) for _ in range(9)], _block8(stage_se(5), 1.0, False))
        self.conv2d_7b = _conv(2080, 1536, 1)
        self.fc = nn.Linear(1536, num_classes)
        for stage, blocks in ((3, self.repeat), (4, self.repeat_1), (5, self.repeat_2)):
            for index, block in enumerate(blocks, start=1):
                if block.se is not None:
                    block.se.name = f"SE_{stage}_{index}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.repeat_2(self.mixed_7a(self.repeat_1(self.mixed_6a(self.repeat(self.stem(x))))))
        return self.fc(self.conv2d_7b(x).mean((2, 3)))
