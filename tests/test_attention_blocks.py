"""SE's successors as parts of one block (squeeze, excitation, spatial gate; the published modules as presets):
outputs against timm's modules with the same weights and against the papers' equations written out, parameter
counts against hand counts from each paper's definition (tests/hand_counts.py) and the figures the papers print,
multiply-adds against hand counts, the knobs' rules, and the gates the probes hook."""

import functools

import pytest
import torch
import torch.nn.functional as F

from seprobe import SeprobeError, build_model, se_blocks
from seprobe.cost import complexity
from seprobe.cost.flops import FlopConvention
from seprobe.cost.se_blocks import block_costs
from seprobe.models.blocks import FoldTarget
from seprobe.models.knobs import ECA_KERNEL
from seprobe.models.se_block import CBAM, SpatialGate, SqueezeExcite, eca_kernel_size
from seprobe.models.se_config import ATTENTION_PRESETS, SEConfig
from seprobe.schema import check_toml, fields

from . import hand_counts as hc
from .conftest import randomize_batchnorm
from .helpers import ROOT, bn, one_line, run_seprobe

EPS = torch.finfo(torch.float32).eps
measure = functools.cache(complexity.measure)
RESNET50 = (3, 4, 6, 3)
PRESETS = ("se", "eca", "cbam", "srm", "se_var1", "se_var2", "se_var3")


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def sum_tolerance(terms: int, scale: float) -> float:
    """The rounding of a float32 sum of ``terms`` products of magnitude at most ``scale`` (the classic bound
    ``n * eps`` of the summed magnitudes), doubled for the operations around it."""
    return 2 * terms * EPS * scale


def randomize(module: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Non-trivial weights everywhere (ECA's and SRM's default inits are not), BatchNorm statistics too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return randomize_batchnorm(module, seed).eval()


# --- defaults: today's SE, byte for byte -----------------------------------------------------------------------

def test_the_default_block_is_todays_se():
    se = SEConfig().block(64)
    assert [n for n, _ in se.named_children()] == ["squeeze", "fc1", "act", "fc2", "gate"]
    assert {k: tuple(v.shape) for k, v in se.state_dict().items()} == {
        "fc1.weight": (4, 64, 1, 1), "fc1.bias": (4,), "fc2.weight": (64, 4, 1, 1), "fc2.bias": (64,)}
    assert repr(se) == repr(SqueezeExcite(64))
    # a config once made holds its resolved parts: the default is SE, and saying so changes nothing built
    assert SEConfig() == SEConfig(reduction=16, squeeze="avg", excitation="bottleneck", spatial="none", bias=True)
    assert repr(build_model("se_resnet18", device="meta", attention="se")) == repr(
        build_model("se_resnet18", device="meta"))


def test_a_config_round_trips_through_replace():
    """``dataclasses.replace`` passes the resolved parts back in: they agree with the preset, so it is accepted."""
    import dataclasses

    for attention in PRESETS:
        cfg = SEConfig(attention=attention)
        assert dataclasses.replace(cfg, stages=(2, 3)).excitation == ATTENTION_PRESETS[attention].excitation


# --- fidelity: timm's modules with the same weights, and the papers' equations ------------------------------------

@pytest.mark.parametrize("channels", [8, 16, 100, 256])
def test_eca_equals_timm_ecamodule(channels):
    """Same kernel (ECA-Net's rule: ``int(t)``, plus one if even; both give >= 3 for C >= 8), same weights, same
    output. The operations are the same (mean over H x W, a k-tap convolution, sigmoid, product)."""
    layers = pytest.importorskip("timm.layers")
    theirs = layers.EcaModule(channels=channels).eval()
    ours = randomize(SEConfig(attention="eca").block(channels))
    assert ours.conv.kernel_size == theirs.conv.kernel_size == (hc.eca_kernel(channels),)
    with torch.no_grad():
        theirs.conv.weight.copy_(ours.conv.weight)
    x = torch.randn(2, channels, 5, 3)
    k = ours.conv.kernel_size[0]
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=sum_tolerance(15 + k, x.abs().max().item()))


def test_eca_kernel_rule_and_where_timm_departs_from_it():
    """The paper's nearest odd k: for ResNet-50's widths 5, 5, 5, 7 (t = 4.5, 5, 5.5, 6: the tie at 6 goes up);
    for C < 8 the paper's rule gives 1 where timm's EcaModule raises k to 3."""
    assert [eca_kernel_size(c) for c in (256, 512, 1024, 2048)] == [5, 5, 5, 7]
    for c in (1, 2, 3, 4, 6, 8, 16, 24, 64, 96, 100, 128, 320, 1000, 4096):
        assert eca_kernel_size(c) == hc.eca_kernel(c), c
    assert eca_kernel_size(4) == 1
    layers = pytest.importorskip("timm.layers")
    assert layers.EcaModule(channels=4).conv.kernel_size == (3,)


def test_eca_against_the_papers_equation():
    """omega_i = sigma(sum_j w_j y_(i + j - (k+1)/2)): the k channel neighbours of channel i, zero beyond the ends;
    with squeeze='max' (a new point of the space) y is the max-pooled descriptor."""
    for squeeze, pool in (("avg", lambda x: x.mean((2, 3))), ("max", lambda x: x.amax((2, 3)))):
        se = randomize(SqueezeExcite(6, squeeze=squeeze, excitation="conv1d", eca_kernel=3))
        x = torch.randn(2, 6, 3, 4)
        w = se.conv.weight.view(3).tolist()
        y = pool(x).tolist()
        for n in range(2):
            for i in range(6):
                s = sum(w[j] * y[n][i + j - 1] for j in range(3) if 0 <= i + j - 1 < 6)
                expected = x[n, i] * torch.sigmoid(torch.tensor(s))
                torch.testing.assert_close(se(x)[n, i], expected, rtol=1e-6, atol=1e-6)


def test_eca_without_squeeze_convolves_the_channels_at_each_position():
    se = randomize(SqueezeExcite(5, squeeze="none", excitation="conv1d", eca_kernel=3))
    x = torch.randn(1, 5, 2, 3)
    w = se.conv.weight.view(3)
    out = se(x)
    for i in range(2):
        for j in range(3):
            v = F.pad(x[0, :, i, j], (1, 1))
            s = torch.sigmoid(torch.stack([w @ v[c:c + 3] for c in range(5)]))
            torch.testing.assert_close(out[0, :, i, j], x[0, :, i, j] * s, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("excitation", ["none", "diagonal", "full"])
def test_se_variants_against_the_eca_papers_equations(excitation):
    """SE-Var1 s = sigma(z), SE-Var2 s = sigma(w * z) (one weight per channel), SE-Var3 s = sigma(W z) (C x C)."""
    c = 6
    se = randomize(SEConfig(excitation=excitation).block(c))
    x = torch.randn(3, c, 4, 2)
    z = x.mean((2, 3))
    if excitation == "none":
        s = torch.sigmoid(z)
    elif excitation == "diagonal":
        s = torch.sigmoid(z * se.fc.weight.view(c))
    else:
        s = torch.sigmoid(torch.einsum("dc,nc->nd", se.fc.weight.view(c, c), z))
    assert getattr(getattr(se, "fc", None), "bias", None) is None  # the paper's definitions have no bias
    torch.testing.assert_close(se(x), x * s[:, :, None, None], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("channels", [32, 64])
def test_cbam_equals_timm_cbammodule(channels):
    """timm's CbamModule with mlp_bias=True (the official code's nn.Linear biases; timm's default drops them)
    and the same weights and BatchNorm statistics: same output. timm stacks [mean; max] as the paper's Eq. 3."""
    cbam = pytest.importorskip("timm.layers.cbam")
    theirs = cbam.CbamModule(channels, rd_ratio=1 / 16, mlp_bias=True).eval()
    ours = randomize(SEConfig(attention="cbam").block(channels))
    assert isinstance(ours, CBAM)
    mapping = {"channel.fc1.weight": "channel.fc1.weight", "channel.fc1.bias": "channel.fc1.bias",
               "channel.fc2.weight": "channel.fc2.weight", "channel.fc2.bias": "channel.fc2.bias",
               "spatial.conv.weight": "spatial.conv.conv.weight"}
    mapping |= {f"spatial.bn.{k}": f"spatial.conv.bn.{k}" for k in ("weight", "bias", "running_mean",
                                                                      "running_var", "num_batches_tracked")}
    state = ours.state_dict()
    assert set(state) == set(mapping)
    theirs.load_state_dict({mapping[k]: v for k, v in state.items()})
    x = torch.randn(2, channels, 6, 5)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=sum_tolerance(98 + channels, x.abs().max().item()))


def test_cbam_spatial_gate_against_the_official_code():
    """The official SpatialGate (Jongchan/attention-module): ChannelPool stacks (max, mean), a 7x7 conv without
    bias, BatchNorm, sigmoid. Its conv's two input channels are ours swapped: the same gate."""
    ours = randomize(SpatialGate())
    official_weight = ours.conv.weight[:, [1, 0]]
    x = torch.randn(2, 5, 9, 8)
    maps = torch.cat((x.max(1, keepdim=True)[0], x.mean(1, keepdim=True)), dim=1)
    scale = torch.sigmoid(bn(ours.bn, F.conv2d(maps, official_weight, padding=3)))
    torch.testing.assert_close(ours(x), x * scale, rtol=1e-6, atol=1e-6)
    assert (ours.bn.momentum, ours.conv.bias) == (0.01, None)


def test_cbam_channel_attention_against_the_papers_equation():
    """M_c(F) = sigma(MLP(AvgPool(F)) + MLP(MaxPool(F))), one MLP (W1, W2 shared): Woo et al. Eq. 2."""
    se = randomize(SqueezeExcite(32, squeeze="avgmax"))

    def mlp(v):
        return F.linear(F.relu(F.linear(v, se.fc1.weight[:, :, 0, 0], se.fc1.bias)), se.fc2.weight[:, :, 0, 0],
                        se.fc2.bias)

    x = torch.randn(2, 32, 4, 4)
    s = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))
    torch.testing.assert_close(se(x), x * s[:, :, None, None], rtol=1e-6, atol=1e-6)


def test_srm_against_the_official_code():
    """SRM's official SRMLayer (hyunjaelee410/style-based-recalibration-module): t = [mean, std] per channel
    (torch's std: Bessel's 1/(HW-1), as the official code; a 1/HW reading differs by sqrt(HW/(HW-1))), z_c =
    sum_k t_ck * cfc_ck (its C x 2 parameter, ours a grouped Conv1d holding the same 2C numbers), BatchNorm2d,
    sigmoid."""
    c, h, w = 6, 3, 5
    se = randomize(SEConfig(attention="srm").block(c))
    cfc = se.cfc.weight.view(c, 2)  # the official parameter
    x = torch.randn(2, c, h, w)
    flat = x.view(2, c, -1)
    mean = flat.sum(-1) / (h * w)
    std = ((flat - mean[..., None]) ** 2).sum(-1).div(h * w - 1).sqrt()
    z = (torch.stack((mean, std), dim=2) * cfc[None]).sum(2)[:, :, None, None]
    torch.testing.assert_close(se(x), x * torch.sigmoid(bn(se.norm, z)), rtol=1e-5, atol=1e-6)
    assert n_params(se) == 2 * c + 2 * c  # CFC + BatchNorm's affine terms
    fresh = SEConfig(attention="srm").block(c).eval()  # the official code's zero CFC: every gate sigmoid(0)
    torch.testing.assert_close(fresh(x), x * 0.5, rtol=0, atol=0)


@pytest.mark.parametrize("attention", ["eca", "se_var2", "se_var3", "srm"])
def test_gradients_equal_autograd_through_the_equations(attention):
    """Training mode (SRM's BatchNorm on the batch's statistics): backward through the block equals autograd
    through its equation written with functional ops, for every parameter."""
    c = 6
    se = randomize(SEConfig(attention=attention).block(c)).train()
    x = torch.randn(4, c, 3, 3)
    se(x).square().sum().backward()
    params = dict(se.named_parameters())
    ref = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    z = x.mean((2, 3))
    if attention == "eca":
        k = ref["conv.weight"].shape[-1]
        logits = F.conv1d(z[:, None], ref["conv.weight"], padding=k // 2)[:, 0]
    elif attention == "se_var2":
        logits = z * ref["fc.weight"].view(c)
    elif attention == "se_var3":
        logits = z @ ref["fc.weight"].view(c, c).T
    else:
        t = torch.stack((z, x.flatten(2).std(2)), dim=2)
        u = (t * ref["cfc.weight"].view(c, 2)).sum(2)
        logits = F.batch_norm(u, None, None, ref["norm.weight"], ref["norm.bias"], True, 0.0, se.norm.eps)
    (x * torch.sigmoid(logits)[:, :, None, None]).square().sum().backward()
    for name, p in params.items():
        assert p.grad.abs().sum() > 0, name
        torch.testing.assert_close(p.grad, ref[name].grad, rtol=1e-4, atol=1e-5)


def test_a_preset_finds_the_papers_figure_only_where_it_is_se():
    from seprobe.paper import paper_figure

    assert paper_figure("se_resnet50", {"attention": "se"}).key == paper_figure("se_resnet50", {}).key
    assert paper_figure("se_resnet50", {"attention": "eca"}) is None
    assert paper_figure("se_resnet50", {"squeeze": "max", "excitation": "conv1d"}) is None


# --- parameters of the published modules on ResNet-50, against hand counts and the papers' figures ----------------

@pytest.mark.parametrize("attention", PRESETS)
def test_resnet50_parameters_equal_the_hand_count(attention):
    base = n_params(build_model("resnet50", device="meta"))
    added = n_params(build_model("se_resnet50", device="meta", attention=attention)) - base
    assert added == hc.attention_params(attention, hc.resnet_se_blocks(RESNET50))


def test_the_papers_parameter_figures():
    """ECA-Net's abstract: 80 parameters on ResNet-50, its released ECA-Net50 (kernels 3, 5, 5, 7 per stage, the
    README's eca_resnet50_k3557); the paper's rule gives 5, 5, 5, 7: 86. Its 24.37 M is the network's parameter
    count in units of 2^20. CBAM's ImageNet table: ResNet-50 + CBAM 28.09 M (as + SE)."""
    base = n_params(build_model("resnet50", device="meta"))
    eca = build_model("se_resnet50", device="meta", attention="eca", eca_kernel=[3, 5, 5, 7])
    assert n_params(eca) - base == 3 * 3 + 4 * 5 + 6 * 5 + 3 * 7 == 80
    assert round(n_params(eca) / 2**20, 2) == 24.37
    assert n_params(build_model("se_resnet50", device="meta", attention="eca")) - base == 3 * 5 + 4 * 5 + 6 * 5 + 3 * 7
    cbam = n_params(build_model("se_resnet50", device="meta", attention="cbam"))
    assert cbam == 28_088_024 + 16 * (2 * 49 + 2) and round(cbam / 1e6, 2) == 28.09
    # SE-Var2: one weight per channel; SE-Var3: C^2 per block, 20.1 M (the ECA-Net paper's Table 2 lists C, C^2)
    assert n_params(build_model("se_resnet50", device="meta", attention="se_var2")) - base == 15_104
    assert n_params(build_model("se_resnet50", device="meta", attention="se_var3")) - base == 20_119_552


def test_per_stage_eca_kernels_reach_their_stages():
    model = build_model("se_resnet50", device="meta", attention="eca", eca_kernel=(3, 5, 5, 7))
    assert {b.stage: model.get_submodule(b.path).conv.kernel_size[0] for b in se_blocks(model)} == {
        2: 3, 3: 5, 4: 5, 5: 7}
    cifar = build_model("se_resnet20_cifar", device="meta", attention="eca", eca_kernel=(1, 3, 5))
    assert [cifar.get_submodule(b.path).conv.kernel_size[0] for b in se_blocks(cifar)] == [1] * 3 + [3] * 3 + [5] * 3


@pytest.mark.parametrize("attention", PRESETS)
def test_other_architectures_carry_every_module(attention):
    """MobileNet and VGG-16 share the block: each module's parameters are its hand count on their maps."""
    for name, plain, maps in (("se_mobilenet_v1", "mobilenet_v1", hc.mobilenet_se_blocks()),
                              ("se_vgg16_bn", "vgg16_bn", hc.vgg16_se_blocks())):
        added = n_params(build_model(name, device="meta", attention=attention)) - n_params(
            build_model(plain, device="meta"))
        assert added == hc.attention_params(attention, maps), name


# --- multiply-adds, against hand counts ---------------------------------------------------------------------------

@pytest.mark.parametrize("attention", PRESETS)
def test_block_operations_equal_the_hand_count(attention):
    """fvcore's counts of every part (conv1d, the spatial 7x7 conv, BatchNorm in eval mode, the std) on the CIFAR
    ResNet-20 at 32x32, summed over its nine blocks, against tests/hand_counts.py."""
    c = measure("se_resnet20_cifar", attention=attention)
    expected = hc.attention_ops(attention, hc.cifar_se_blocks("resnet20_cifar"))
    counted = {}
    for parts in c.flops.per_block.values():
        for part, n in parts.items():
            counted[part] = counted.get(part, 0) + n
    assert {k: v for k, v in counted.items() if v} == {k: v for k, v in expected.items() if v}
    assert c.flops.unsupported == measure("resnet20_cifar").flops.unsupported  # the block's have cost formulas
    # the default total counts the multiply-adds: FCs and convolutions, and the scales; the rest is named
    macs = expected["fc"] + expected["scale"] + expected.get("spatial_conv", 0) + expected.get("spatial_scale", 0)
    assert c.total - c.plain_total == macs
    everything = FlopConvention(bn=True, activations=True, adds=True, pooling=True, muls=True)
    assert c.flops.se_total(everything) == sum(expected.values())


def test_an_ablation_saves_the_channel_gate_only():
    """What an ablated CBAM block saves: its channel gate's parameters and multiply-adds; its spatial gate stays."""
    model = build_model("se_resnet20_cifar", attention="cbam").eval()
    blocks = se_blocks(model)
    costs, _, _ = block_costs(model, blocks, 32)
    first = costs["SE_1_1"]
    c, s = 16, 32
    assert first.params == 2 * c * (c // 16) + c // 16 + c
    assert first.macs == 2 * 2 * c * (c // 16) + c * s * s
    assert blocks[0].params == first.params + 2 * 49 + 2  # the block's cost in the network: both gates


@pytest.mark.slow
def test_cbam_and_se_on_resnet50_match_cbams_table():
    """CBAM's ImageNet table prints ResNet-50 3.858, + SE 3.860, + CBAM 3.864 GFLOPs: conv and FC multiply-adds
    (the MLP twice, the 7x7 convs), without the scales that the SE paper's convention adds."""
    for attention, paper in (("se", 3.860), ("cbam", 3.864)):
        c = measure("se_resnet50", attention=attention)
        ops = hc.attention_ops(attention, hc.resnet_se_blocks(RESNET50))
        without_scales = c.total - c.flops.by_category["se_scale"] - c.flops.by_category.get("se_spatial_scale", 0)
        assert without_scales == hc.resnet_macs(RESNET50) + ops["fc"] + ops.get("spatial_conv", 0)
        assert round(without_scales / 1e9, 3) == paper


# --- the knobs' rules -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("knobs,argument,match", [
    ({"attention": "eca", "reduction": 8}, "reduction",
     r"^invalid reduction 8 with attention='eca': ECA \(excitation 'conv1d'\) has no reduction ratio"),
    ({"attention": "eca", "squeeze": "max"}, "squeeze",
     r"^invalid squeeze 'max' with attention='eca': ECA is squeeze='avg', excitation='conv1d'"),
    ({"attention": "cbam", "spatial": "none"}, "spatial", r"^invalid spatial 'none' with attention='cbam'"),
    ({"attention": "srm", "bias": True}, "bias", r"^invalid bias True with attention='srm': SRM .*has no bias"),
    ({"excitation": "conv1d", "reduction": 16}, "reduction", r"^invalid reduction 16 with excitation='conv1d'"),
    ({"attention": "se", "eca_kernel": 3}, "eca_kernel", r"^invalid eca_kernel 3 with attention='se'"),
    ({"squeeze": "meanstd"}, "squeeze", r"^invalid squeeze 'meanstd' with excitation 'bottleneck'"),
    ({"excitation": "srm"}, "excitation", r"^invalid squeeze 'avg' with excitation 'srm'"),
    ({"attention": "eca", "eca_kernel": 4}, "eca_kernel", r"^invalid eca_kernel 4; valid: an odd integer"),
    ({"attention": "eca", "eca_kernel": [3, 5]}, "eca_kernel",
     r"^invalid eca_kernel \[3, 5\]: 2 kernels for an architecture of 4 stages"),
    ({"attention": "gc"}, "attention", r"^unknown attention module 'gc'; valid: 'se', 'eca', 'cbam'"),
])
def test_conflicting_knobs_are_refused_in_one_line(knobs, argument, match):
    with pytest.raises(SeprobeError, match=match) as e:
        build_model("se_resnet50", device="meta", **knobs)
    assert one_line(e) and e.value.argument == argument


def test_new_combinations_are_allowed():
    for knobs in ({"squeeze": "max", "excitation": "conv1d"}, {"squeeze": "avgmax", "excitation": "conv1d"},
                  {"excitation": "full", "bias": True}, {"excitation": "conv1d", "spatial": "cbam"},
                  {"attention": "cbam", "reduction": 8, "gate": "tanh"},
                  {"squeeze": "none", "excitation": "diagonal"}):
        model = build_model("se_resnet20_cifar", **knobs).eval()
        assert model(torch.randn(1, 3, 8, 8)).shape == (1, 10)
    full = SEConfig(excitation="full", bias=True).block(8)
    assert n_params(full) == 8 * 8 + 8


def test_a_per_stage_kernel_where_the_blocks_have_no_stage_is_refused():
    with pytest.raises(SeprobeError, match="one kernel per stage is read by the ResNets and the CIFAR ResNets only"):
        build_model("se_vgg16_bn", device="meta", attention="eca", eca_kernel=(3, 3, 5, 5, 7))
    assert n_params(build_model("se_vgg16_bn", device="meta", attention="eca", eca_kernel=5)) - n_params(
        build_model("vgg16_bn", device="meta")) == 5 * len(hc.vgg16_se_blocks())


def test_the_kernel_reads_from_the_command_line_and_study_files():
    assert ECA_KERNEL.parse("eca_kernel", "5") == 5
    assert ECA_KERNEL.parse("eca_kernel", "3,5,5,7") == (3, 5, 5, 7)
    option = fields(SEConfig)["eca_kernel"]
    assert check_toml(option, [3, 5, 5, 7], "s.toml: eca_kernel") == (3, 5, 5, 7)
    assert check_toml(option, "3,5,5,7", "s.toml: eca_kernel") == (3, 5, 5, 7)
    with pytest.raises(SeprobeError, match=r"^s.toml: eca_kernel: invalid eca_kernel 2; valid: an odd integer"):
        check_toml(option, 2, "s.toml: eca_kernel")


# --- the gates the probes hook ------------------------------------------------------------------------------------

@pytest.mark.parametrize("attention", PRESETS)
def test_every_channel_gate_is_found_and_is_s(attention):
    """The gate at gate_path outputs the N x C x 1 x 1 gate s, and the block's output is x * s (then the spatial
    gate, for CBAM, whose map M_s is at spatial_gate_path)."""
    from seprobe.probe.hooks import GateHooks

    model = randomize(build_model("se_resnet20_cifar", attention=attention))
    blocks = se_blocks(model)
    assert [b.name for b in blocks] == [f"SE_{s}_{i}" for s in (1, 2, 3) for i in (1, 2, 3)]
    first = blocks[0]
    seen = {}
    whole = model.get_submodule(first.path.removesuffix(".channel"))
    whole.register_forward_hook(lambda m, i, o: seen.update(x=i[0], out=o))
    if first.spatial_gate_path:
        model.get_submodule(first.spatial_gate_path).register_forward_hook(lambda m, i, o: seen.update(ms=o))
    x = torch.randn(2, 3, 16, 16)
    with GateHooks(model, blocks) as hooks:
        model(x)
        s = hooks.values["SE_1_1"]
        assert s.shape == (2, 16, 1, 1)
        channel_out = seen["x"] * s
        if attention == "cbam":
            assert (first.spatial_path, seen["ms"].shape) == ("layer1.0.se.spatial", (2, 1, 16, 16))
            torch.testing.assert_close(seen["out"], channel_out * seen["ms"])
        else:
            assert first.spatial_path is None and first.spatial_gate_path is None
            torch.testing.assert_close(seen["out"], channel_out)
        hooks.replace({"SE_1_1": "identity"})  # s = 1: the channel gate removed, a spatial gate kept
        model(x)
        spatial = model.get_submodule(first.spatial_path) if first.spatial_path else torch.nn.Identity()
        torch.testing.assert_close(seen["out"], spatial(seen["x"]))


def test_an_exported_cbam_ablation_keeps_the_spatial_gate():
    """Removing (identity) or folding (mean, into the BatchNorm before the block) a CBAM block's channel gate
    leaves its spatial gate: the exported network equals the hooked one."""
    from seprobe.models.ablated import ablated_copy
    from seprobe.probe.hooks import GateHooks

    model = randomize(build_model("se_resnet20_cifar", attention="cbam"))
    blocks = se_blocks(model)
    assert blocks[0].fold == FoldTarget("layer1.0.bn2", "bn")
    means = {"SE_1_2": torch.rand(16) + 0.5}
    x = torch.randn(2, 3, 8, 8)
    modes = {"SE_1_1": "identity", "SE_1_2": "mean"}
    with GateHooks(model, blocks, means) as hooks, torch.no_grad():
        hooks.replace(modes)
        expected = model(x)
    exported = ablated_copy(model, blocks, modes, means).model
    assert isinstance(exported.layer1[0].se.spatial, SpatialGate)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), expected, rtol=1e-5, atol=1e-5)
    # inside the branch (3x3 placement) the spatial gate reads s * x: a constant s cannot move past it
    inner = se_blocks(build_model("se_resnet20_cifar", device="meta", attention="cbam", integration="3x3"))
    assert inner[0].fold is None


# --- the command line and the API ---------------------------------------------------------------------------------

def test_the_api_counts_a_module():
    import seprobe

    report = seprobe.complexity("se_resnet20_cifar", attention="eca", eca_kernel=[3, 5, 7], per_block=True)
    c = report.results[0]
    assert c.params - c.plain_params == 3 * 3 + 3 * 5 + 3 * 7
    blocks = report.tables()["blocks.se_resnet20_cifar"]
    assert list(blocks["params"]) == [3] * 3 + [5] * 3 + [7] * 3


@pytest.mark.slow
@pytest.mark.parametrize("attention", ["eca", "cbam", "srm", "se_var2"])
def test_complexity_per_block_runs_from_the_command_line(attention):
    result = run_seprobe("complexity", "--model", "se_resnet50", "--attention", attention, "--per-block",
                         "--format", "json", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    import json

    tables = json.loads(result.stdout)["tables"]
    assert tables["summary"][0]["se_params"] == hc.attention_params(attention, hc.resnet_se_blocks(RESNET50))
    assert len(tables["blocks.se_resnet50"]) == 16
