"""Each SE placement of Fig. 5 / Table 15 against a residual unit written out by hand with functional ops."""

import pytest
import torch
import torch.nn.functional as F

from seprobe.models.resnet import SEBasicBlock, SEBottleneck
from seprobe.models.se_config import SEConfig

from .conftest import randomize_batchnorm
from .helpers import bn, se_ref


def bottleneck_ref(b, x, where, stride_at):
    s1, s3 = (2, 1) if stride_at == "1x1" else (1, 2)
    inp = se_ref(b.se, x) if where == "pre" else x
    out = F.relu(bn(b.bn1, F.conv2d(inp, b.conv1.weight, stride=s1)))
    out = F.relu(bn(b.bn2, F.conv2d(out, b.conv2.weight, stride=s3, padding=1, groups=b.conv2.groups)))
    if where == "3x3":
        out = se_ref(b.se, out)
    return residual_tail(b, bn(b.bn3, F.conv2d(out, b.conv3.weight)), x, where)


def residual_tail(b, out, x, where):
    """The end of the unit written out: SE on the branch, the projection shortcut, the sum, SE after it."""
    if where == "standard":
        out = se_ref(b.se, out)
    shortcut = bn(b.downsample[1], F.conv2d(x, b.downsample[0].weight, stride=2))
    if where == "identity":
        shortcut = se_ref(b.se, shortcut)
    out = F.relu(out + shortcut)
    return se_ref(b.se, out) if where == "post" else out


def _downsample(cin, cout):
    return torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride=2, bias=False), torch.nn.BatchNorm2d(cout))


@pytest.mark.parametrize("where", ["standard", "pre", "post", "identity", "3x3"])
@pytest.mark.parametrize("stride_at", ["1x1", "3x3"])
@pytest.mark.parametrize("groups", [1, 2])
def test_bottleneck_integration(where, stride_at, groups):
    block = SEBottleneck(8, 4, stride=2, downsample=_downsample(8, 16), groups=groups, base_width=64,
                         stride_at=stride_at, se=SEConfig(reduction=2, integration=where))
    randomize_batchnorm(block).eval()
    expected_channels = {"pre": 8, "3x3": 4 * groups}.get(where, 16)
    assert block.se.channels == expected_channels
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(block(x), bottleneck_ref(block, x, where, stride_at), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("where", ["standard", "pre", "post", "identity", "3x3"])
def test_basic_block_integration(where):
    b = SEBasicBlock(4, 8, stride=2, downsample=_downsample(4, 8), se=SEConfig(reduction=2, integration=where))
    randomize_batchnorm(b).eval()
    x = torch.randn(2, 4, 6, 6)
    inp = se_ref(b.se, x) if where == "pre" else x
    out = F.relu(bn(b.bn1, F.conv2d(inp, b.conv1.weight, stride=2, padding=1)))
    if where == "3x3":
        out = se_ref(b.se, out)
    out = residual_tail(b, bn(b.bn2, F.conv2d(out, b.conv2.weight, padding=1)), x, where)
    torch.testing.assert_close(b(x), out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("unit", ["bottleneck", "basic"])
def test_pre_integration_without_downsampling_keeps_the_raw_identity(unit):
    """``pre`` in a unit whose shortcut is the plain input: SE rescales what enters the residual branch only;
    the identity path adds the raw input x (the downsampling units above project x, which hides which one)."""
    se = SEConfig(reduction=2, integration="pre")
    if unit == "bottleneck":
        b = randomize_batchnorm(SEBottleneck(16, 4, stride=1, se=se)).eval()
    else:
        b = randomize_batchnorm(SEBasicBlock(8, 8, stride=1, se=se)).eval()
    assert b.downsample is None and b.se.channels == b.conv1.in_channels
    x = torch.randn(2, b.conv1.in_channels, 6, 6)
    out = se_ref(b.se, x)
    if unit == "bottleneck":
        out = F.relu(bn(b.bn1, F.conv2d(out, b.conv1.weight)))
        out = F.relu(bn(b.bn2, F.conv2d(out, b.conv2.weight, padding=1)))
        out = bn(b.bn3, F.conv2d(out, b.conv3.weight))
    else:
        out = F.relu(bn(b.bn1, F.conv2d(out, b.conv1.weight, padding=1)))
        out = bn(b.bn2, F.conv2d(out, b.conv2.weight, padding=1))
    expected = F.relu(out + x)
    torch.testing.assert_close(b(x), expected, rtol=1e-5, atol=1e-5)
    # the test bites: the SE'd input on the shortcut is another unit
    assert not torch.allclose(expected, F.relu(out + se_ref(b.se, x)), atol=1e-3)
