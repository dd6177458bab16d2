"""Multiply-adds and parameters counted by hand from each paper's architecture table, for the tests.

Nothing here imports seprobe: every figure is written out from the published layer lists (ResNet/ResNeXt Table 1,
VGG-16 configuration D, MobileNet Table 1, ShuffleNet Table 1, BN-Inception Table 1, the CIFAR ResNets of He et al.
2015 Sec. 4.2 and 2016, WRN-16-8 of Zagoruyko & Komodakis Table 1), one
``C_in / groups * C_out * k_h * k_w * H_out * W_out`` per convolution, ``in * out`` per FC layer. SE adds
``2 * C * (C // r)`` multiply-adds for its FCs and ``C * H * W`` for its scale (Eq. 4) per block.
"""

from __future__ import annotations

import math

RESNET_PLANES = (64, 128, 256, 512)
RESNET_SIDES = (56, 28, 14, 7)  # output side of stages 2..5 at 224x224
RESNET_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def conv(cin, cout, k, side, groups=1):
    """One convolution's multiply-adds: Cin/g * Cout * k^2 per output position (k an int or (kh, kw))."""
    kh, kw = (k, k) if isinstance(k, int) else k
    return cin // groups * cout * kh * kw * side * side


def bottleneck_units(blocks, groups=1, base_width=64):
    """(cin, width, out, side_in, side, first) of every bottleneck unit of a ResNet / ResNeXt."""
    cin, side_in = 64, 56
    for n, planes, side in zip(blocks, RESNET_PLANES, RESNET_SIDES, strict=True):
        width, out = planes * base_width // 64 * groups, 4 * planes
        for i in range(n):
            yield cin, width, out, (side_in if i == 0 else side), side, i == 0
            cin = out
        side_in = side


def resnet_macs(blocks, stride_at="1x1", groups=1, base_width=64):
    """Conv + FC multiply-adds of a bottleneck ResNet (groups=1) or ResNeXt at 224x224."""
    macs = conv(3, 64, 7, 112)
    for cin, width, out, side_in, side, first in bottleneck_units(blocks, groups, base_width):
        macs += conv(cin, width, 1, side_in if (first and stride_at == "3x3") else side)  # 1x1 reduce
        macs += conv(width, width, 3, side, groups)                                        # 3x3
        macs += conv(width, out, 1, side)                                                  # 1x1 expand
        if first:
            macs += conv(cin, out, 1, side)                                                # projection
    return macs + 2048 * 1000


def resnet_se(blocks, r=16, stages=(2, 3, 4, 5)):
    """(FC multiply-adds, scale multiply-adds, parameters without bias) of SE on every bottleneck's output."""
    fc = scale = 0
    for stage, (n, planes, side) in enumerate(zip(blocks, RESNET_PLANES, RESNET_SIDES, strict=True), start=2):
        if stage in stages:
            c = 4 * planes
            fc += n * 2 * c * (c // r)
            scale += n * c * side * side
    return fc, scale, fc


VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))  # configuration D


def vgg16_macs():
    macs, cin, side = 0, 3, 224
    for convs in VGG16:
        for cout in convs:
            macs += conv(cin, cout, 3, side)
            cin = cout
        side //= 2
    return macs + 512 * 7 * 7 * 4096 + 4096 * 4096 + 4096 * 1000


def vgg16_se_blocks():
    """(channels, side) of the map every SE block of SE-VGG-16 recalibrates: after each conv."""
    side, out = 224, []
    for convs in VGG16:
        out += [(c, side) for c in convs]
        side //= 2
    return out


MOBILENET = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)) + ((512, 1),) * 5 + ((1024, 2), (1024, 1))


def mobilenet_macs():
    """MobileNet Table 1: a 3x3 stem, then 3x3 depthwise + 1x1 pointwise pairs; 568.7 M in the paper's table."""
    macs, cin, side = conv(3, 32, 3, 112), 32, 112
    for cout, stride in MOBILENET:
        side //= stride
        macs += conv(cin, cin, 3, side, groups=cin) + conv(cin, cout, 1, side)
        cin = cout
    return macs + 1024 * 1000


def mobilenet_se_blocks():
    side, out = 112, []
    for cout, stride in MOBILENET:
        side //= stride
        out.append((cout, side))
    return out


SHUFFLENET_G3 = ((240, 4, 28), (480, 8, 14), (960, 4, 7))  # ShuffleNet Table 1, g = 3: (out, units, side)


def shufflenet_units():
    """(cin, mid, branch, side_in, side, groups of the first 1x1) of every unit."""
    cin, side_in = 24, 56
    for cout, units, side in SHUFFLENET_G3:
        for i in range(units):
            yield cin, cout // 4, cout - cin if i == 0 else cout, side_in if i == 0 else side, side, \
                1 if cin == 24 else 3
            cin = cout
        side_in = side


def shufflenet_macs():
    macs = conv(3, 24, 3, 112)
    for cin, mid, branch, side_in, side, g1 in shufflenet_units():
        macs += conv(cin, mid, 1, side_in, g1) + conv(mid, mid, 3, side, mid) + conv(mid, branch, 1, side, 3)
    return macs + 960 * 1000


def shufflenet_params():
    """Conv weights, BN (2 per channel) and the FC of ShuffleNet 1x (g = 3)."""
    total = 3 * 24 * 9 + 2 * 24
    for cin, mid, branch, _, _, g1 in shufflenet_units():
        total += cin // g1 * mid + 2 * mid + mid * 9 + 2 * mid + mid // 3 * branch + 2 * branch
    return total + 960 * 1000 + 1000


def shufflenet_se_blocks():
    return [(branch, side) for _, _, branch, _, side, _ in shufflenet_units()]


# Ioffe & Szegedy Table 1: #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool projection, stride
BN_INCEPTION = ((64, 64, 64, 64, 96, 32, 1), (64, 64, 96, 64, 96, 64, 1), (0, 128, 160, 64, 96, 0, 2),
                (224, 64, 96, 96, 128, 128, 1), (192, 96, 128, 96, 128, 128, 1), (160, 128, 160, 128, 160, 128, 1),
                (96, 128, 192, 160, 192, 128, 1), (0, 128, 192, 192, 256, 0, 2), (352, 192, 320, 160, 224, 128, 1),
                (352, 192, 320, 192, 224, 128, 1))


def bn_inception_macs():
    """Stem 7x7/2, pool, 1x1, 3x3, pool; ten modules at 28, 14, 7 (the stride-2 ones downsample in their 3x3s)."""
    macs = conv(3, 64, 7, 112) + conv(64, 64, 1, 56) + conv(64, 192, 3, 56)
    cin, side_in = 192, 28
    for n1, n3r, n3, ndr, nd, proj, stride in BN_INCEPTION:
        side = side_in // stride
        macs += conv(cin, n1, 1, side_in) + conv(cin, n3r, 1, side_in) + conv(n3r, n3, 3, side)
        macs += conv(cin, ndr, 1, side_in) + conv(ndr, nd, 3, side_in) + conv(nd, nd, 3, side)
        macs += conv(cin, proj, 1, side_in)
        cin, side_in = n1 + n3 + nd + (proj or cin), side
    return macs + 1024 * 1000


def bn_inception_se_blocks():
    cin, side, out = 192, 28, []
    for n1, _, n3, _, nd, proj, stride in BN_INCEPTION:
        side //= stride
        cin = n1 + n3 + nd + (proj or cin)
        out.append((cin, side))
    return out


#: (channels, side) of Inception-ResNet-v2's 10 + 20 + 10 residual blocks at 299x299 (35x35, 17x17, 8x8)
INCEPTION_RESNET_V2_SE_BLOCKS = [(320, 35)] * 10 + [(1088, 17)] * 20 + [(2080, 8)] * 10


def se_costs(blocks, r=16):
    """(FC multiply-adds, scale multiply-adds, FC parameters without bias) of SE on (channels, side) maps."""
    fc = sum(2 * c * (c // r) for c, _ in blocks)
    return fc, sum(c * s * s for c, s in blocks), fc


def mobilenet_params():
    """Conv weights, BN (2 per channel) and the FC of MobileNet 1.0 (no conv biases)."""
    total, cin = 3 * 32 * 9 + 2 * 32, 32
    for cout, _ in MOBILENET:
        total += cin * 9 + 2 * cin + cin * cout + 2 * cout
        cin = cout
    return total + 1024 * 1000 + 1000


# CIFAR networks at 32x32: a 3x3 stem of 16 channels, three stages at sides 32, 16, 8 (strides 1, 2, 2).
CIFAR_SIDES = (32, 16, 8)
#: name -> (unit, units per stage, stage output channels). "basic_a": He et al. 2015 Sec. 4.2 (conv-BN-ReLU stem,
#: two 3x3 conv + BN per unit, option-A shortcuts: no parameters); "preact_basic" / "preact_bottleneck": He et
#: al. 2016 and WRN (bare conv stem, BN before every conv, 1x1 projection shortcuts where the shape changes, a final
#: BN); a bottleneck is 1x1 to out/4, 3x3 (with the stride), 1x1 to out.
CIFAR_NETS = {
    **{f"resnet{6 * n + 2}_cifar": ("basic_a", n, (16, 32, 64)) for n in (3, 5, 7, 9, 18)},
    "preact_resnet110_cifar": ("preact_basic", 18, (16, 32, 64)),
    "preact_resnet164_cifar": ("preact_bottleneck", 18, (64, 128, 256)),   # depth 9n + 2
    "wrn16_8_cifar": ("preact_basic", 2, (16 * 8, 32 * 8, 64 * 8)),        # n = (16 - 4) / 6
}


def cifar_units(name):
    """(stage, block, cin, width, out, side_in, side) of every residual unit, in network order."""
    kind, n, outs = CIFAR_NETS[name]
    cin, side_in = 16, 32
    for stage, (out, side) in enumerate(zip(outs, CIFAR_SIDES, strict=True), start=1):
        width = out // 4 if kind == "preact_bottleneck" else out
        for block in range(1, n + 1):
            yield stage, block, cin, width, out, side_in if block == 1 else side, side
            cin = out
        side_in = side


def _projects(kind, cin, out, side_in, side):
    return kind != "basic_a" and (cin != out or side_in != side)


def cifar_params(name, num_classes=10):
    """Conv weights (no biases), BN (2 per channel), the FC; option A adds nothing, a projection cin * out."""
    kind, _, outs = CIFAR_NETS[name]
    total = 3 * 16 * 9 + (2 * 16 if kind == "basic_a" else 0)
    for _, _, cin, width, out, side_in, side in cifar_units(name):
        if kind == "basic_a":
            total += cin * out * 9 + 2 * out + out * out * 9 + 2 * out
        elif kind == "preact_basic":
            total += 2 * cin + cin * out * 9 + 2 * out + out * out * 9
        else:
            total += 2 * cin + cin * width + 2 * width + width * width * 9 + 2 * width + width * out
        if _projects(kind, cin, out, side_in, side):
            total += cin * out
    if kind != "basic_a":
        total += 2 * outs[-1]  # the final BN before pooling
    return total + outs[-1] * num_classes + num_classes


def cifar_macs(name, num_classes=10):
    """Conv + FC multiply-adds at 32x32 (a downsampling unit's first conv runs at the new side, a bottleneck's
    first 1x1 at the old one)."""
    kind, _, outs = CIFAR_NETS[name]
    macs = conv(3, 16, 3, 32)
    for _, _, cin, width, out, side_in, side in cifar_units(name):
        if kind == "preact_bottleneck":
            macs += conv(cin, width, 1, side_in) + conv(width, width, 3, side) + conv(width, out, 1, side)
        else:
            macs += conv(cin, out, 3, side) + conv(out, out, 3, side)
        if _projects(kind, cin, out, side_in, side):
            macs += conv(cin, out, 1, side)
    return macs + outs[-1] * num_classes


def cifar_se_blocks(name, integration="standard", stages=(1, 2, 3)):
    """(channels, side) of the map each SE block recalibrates: the unit's output (standard, post, identity), its
    input (pre, at the input's side) or the 3x3 conv's width (3x3)."""
    out = []
    for stage, _, cin, width, cout, side_in, side in cifar_units(name):
        if stage in stages:
            out.append({"pre": (cin, side_in), "3x3": (width, side)}.get(integration, (cout, side)))
    return out


def se_params(blocks, r=16, bias=True):
    """SE's parameters on (channels, side) maps: ``2 * C * (C // r)`` weights, plus ``C // r + C`` biases."""
    return sum(2 * c * (c // r) + (c // r + c if bias else 0) for c, _ in blocks)


# SE's successors, each from its paper's definition, on (channels, side) maps: the ECA-Net paper's SE-Var1/2/3 and
# ECA (Wang et al. 2020, Table 2: sigma(z), sigma(w * z), sigma(W z), sigma(conv1d_k(z))), CBAM (Woo et al. 2018:
# SE's MLP on the average- and the max-pooled descriptor, then a 7x7 conv of the 2-map [avg; max] over channels and
# BatchNorm), SRM (Lee et al. 2019: a channel-wise FC of (mean, std), 2 weights per channel, then BatchNorm).

def resnet_se_blocks(blocks, stages=(2, 3, 4, 5)):
    """(channels, side) of every bottleneck's output at 224x224, where SE sits (``standard``)."""
    return [(4 * planes, side) for stage, (n, planes, side) in enumerate(
        zip(blocks, RESNET_PLANES, RESNET_SIDES, strict=True), start=2) if stage in stages for _ in range(n)]


def eca_kernel(c, gamma=2, b=1):
    """ECA-Net's k = |log2(C)/gamma + b/gamma|_odd: the odd integer nearest t (a tie, t even, taken upwards)."""
    t = (math.log2(c) + b) / gamma
    return min(range(1, 2 * int(t) + 4, 2), key=lambda k: (abs(k - t), -k))


def attention_params(kind, blocks, r=16, bias=True, kernels=None):
    """Parameters each module adds on (channels, side) maps; ``kernels``: ECA's k per block (else the rule)."""
    total = 0
    for i, (c, _) in enumerate(blocks):
        total += {
            "se": 2 * c * (c // r) + (c // r + c if bias else 0),
            "cbam": 2 * c * (c // r) + (c // r + c if bias else 0) + 2 * 7 * 7 + 2,  # + 7x7 conv 2->1, BN(1)
            "eca": kernels[i] if kernels else eca_kernel(c),
            "srm": 2 * c + 2 * c,                                                        # CFC + BN affine
            "se_var1": 0, "se_var2": c, "se_var3": c * c,
        }[kind]
    return total


def attention_ops(kind, blocks, r=16, kernels=None):
    """A module's operations by part on (channels, side) maps, in seprobe's per-part convention: multiply-adds of
    its FCs and convolutions (``fc``, ``spatial_conv``), one per element of ``u`` for a pooling (``squeeze``,
    ``spatial_pool``) and for a scale (``scale``, ``spatial_scale``), one per gate value (``gate``,
    ``spatial_gate``), 2 per element for an eval BatchNorm (``norm``, ``spatial_norm``)."""
    ops = {}

    def add(part, n):
        ops[part] = ops.get(part, 0) + n

    for i, (c, s) in enumerate(blocks):
        k = kernels[i] if kernels else eca_kernel(c)
        add("fc", {"se": 2 * c * (c // r), "cbam": 2 * 2 * c * (c // r), "eca": k * c, "srm": 2 * c,
                   "se_var1": 0, "se_var2": c, "se_var3": c * c}[kind])
        add("squeeze", (2 if kind in ("cbam", "srm") else 1) * c * s * s)  # avg and max; mean and std
        add("scale", c * s * s)
        add("gate", c)
        if kind == "srm":
            add("norm", 2 * c)
        if kind == "cbam":
            add("add", c)                      # the two descriptors' excitations summed
            add("act", 2 * (c // r))           # the hidden ReLU, once per descriptor
            add("spatial_pool", 2 * c * s * s)  # mean and max over the channels
            add("spatial_conv", 2 * 7 * 7 * s * s)
            add("spatial_norm", 2 * s * s)
            add("spatial_gate", s * s)
            add("spatial_scale", c * s * s)
        if kind == "se":
            add("act", c // r)
    return ops
