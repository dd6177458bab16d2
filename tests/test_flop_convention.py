"""What the multiply-add convention counts and leaves out, on networks small enough to count by hand."""



import pytest
import torch
from torch import nn

from seprobe.cost.flops import DEFAULT, FlopConvention, count_flops
from seprobe.report.complexity import describe_convention


class ScaledResidual(nn.Module):
    """A 1x1 conv (3 -> 4 channels on 5x5: 300 multiply-adds), its output scaled by 0.17 (100 products), added to
    itself (100 adds): Inception-ResNet-v2's `x + scale * block(x)`."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1, bias=False)

    def forward(self, x):
        y = self.conv(x)
        return y + y * 0.17


def test_non_se_products_are_not_counted_by_default():
    count = count_flops(ScaledResidual(), torch.zeros(1, 3, 5, 5))
    assert count.by_category["conv"] == 300 and count.by_category["mul"] == 100
    assert count.total(DEFAULT) == 300
    assert count.excluded(DEFAULT) == {"mul": 100, "add": 100}
    assert count.total(FlopConvention(muls=True)) == 400 and count.total(FlopConvention(muls=True, adds=True)) == 500
    text = describe_convention(DEFAULT)
    assert "not counted: " in text and "other elementwise products" in text.split("not counted: ")[1]


def test_inception_resnet_v2_counts_what_fvcore_counts_for_conv_and_linear():
    """fvcore on timm's model, conv + linear only: 13,155,794,016 (13.1558 G)."""
    timm = pytest.importorskip("timm")
    from fvcore.nn import FlopCountAnalysis

    from seprobe.cost.complexity import measure

    reference = FlopCountAnalysis(timm.create_model("inception_resnet_v2").eval(), torch.zeros(1, 3, 299, 299))
    reference.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = reference.by_operator()
    assert measure("inception_resnet_v2").total == by_op["conv"] + by_op["linear"]
