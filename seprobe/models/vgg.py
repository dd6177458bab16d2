"""VGG-16 with BatchNorm, with and without SE (paper Sec. 3.3, Table 2), on torchvision's ``VGG``.

An SE block follows every conv + BN + ReLU. VGG's five blocks of convolutions (conv1_x .. conv5_x) are the
stages 1..5: ``SE_3_2`` recalibrates conv3_2. Without SE the model is torchvision's ``vgg16_bn``, key for key.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.vgg import VGG

from .se_config import ALL_STAGES, SEConfig

VGG16_WIDTHS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class SEVGG(VGG):
    def __init__(self, widths=VGG16_WIDTHS, num_classes: int = 1000, se: SEConfig | None = None):
        if se is not None:
            se.check_stages(ALL_STAGES)
        layers: list[nn.Module] = []
        cin = 3
        for stage, convs in enumerate(widths, start=1):
            for index, width in enumerate(convs, start=1):
                layers += [nn.Conv2d(cin, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                if se is not None and se.carries(stage):
                    block = se.block(width)
                    block.name = f"SE_{stage}_{index}"
                    layers.append(block)
                cin = width
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        super().__init__(nn.Sequential(*layers), num_classes=num_classes, init_weights=True)
