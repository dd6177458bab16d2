"""The CIFAR networks of Tables 4 and 5: parameters and multiply-adds against hand counts and the published sizes,
SE's additions against the closed form, option A and the pre-activation units against functional ops, block names,
knobs and errors, and the paper's CIFAR errors as data."""

import functools
import json
import re

import pytest
import torch
import torch.nn.functional as F

from seprobe import SeprobeError, build_model, plain_counterpart, se_blocks
from seprobe.cost import complexity
from seprobe.models.cifar_resnet import OptionAShortcut, PreActBasicBlock, PreActBottleneck
from seprobe.models.registry import get_spec, list_models
from seprobe.models.se_config import SEConfig
from seprobe.paper import ACCURACIES, paper_accuracy
from seprobe.report.complexity import block_table, stage_table

from . import hand_counts as hc
from .conftest import SHARED, randomize_batchnorm
from .helpers import bn, run_seprobe, se_ref

measure = functools.cache(complexity.measure)
NAMES = sorted(hc.CIFAR_NETS)
INTEGRATIONS = ("standard", "pre", "post", "identity", "3x3")
#: Parameters (M) as the papers print them: He et al. 2015 Table 6 (ResNet-20..110), He et al. 2016 (pre-act
#: ResNet-110/164), Zagoruyko & Komodakis Table 4 (WRN-16-8)
PUBLISHED_M = {"resnet20_cifar": (0.27, 2), "resnet32_cifar": (0.46, 2), "resnet44_cifar": (0.66, 2),
               "resnet56_cifar": (0.85, 2), "resnet110_cifar": (1.7, 1), "preact_resnet110_cifar": (1.7, 1),
               "preact_resnet164_cifar": (1.7, 1), "wrn16_8_cifar": (11.0, 1)}
#: the models whose trace takes over a second on one thread
SLOW_TRACE = {"resnet110_cifar", "preact_resnet110_cifar", "preact_resnet164_cifar"}



def n_params(model):
    return sum(p.numel() for p in model.parameters())


def slow_if(names, slow):
    return [pytest.param(n, marks=[pytest.mark.slow] if n in slow else []) for n in names]


def test_registered_with_the_cifar_input_size():
    assert set(list_models()) >= set(NAMES) | {f"se_{n}" for n in NAMES}
    for name in NAMES:
        for spec in (get_spec(name), get_spec(f"se_{name}")):
            assert (spec.family, spec.input_size, spec.min_input_size, spec.plain) == ("cifar_resnet", 32, 4, name)
    assert plain_counterpart("se_wrn16_8_cifar", {"reduction": 8, "num_classes": 100}) == (
        "wrn16_8_cifar", {"num_classes": 100})


@pytest.mark.parametrize("name", NAMES)
def test_params_equal_the_hand_count_and_the_published_size(name):
    for num_classes in (10, 100):
        assert n_params(build_model(name, num_classes=num_classes, device="meta")) == \
            hc.cifar_params(name, num_classes)
    published, digits = PUBLISHED_M[name]
    assert round(hc.cifar_params(name) / 1e6, digits) == published


@pytest.mark.parametrize("name", slow_if(NAMES, SLOW_TRACE))
def test_macs_at_32x32_equal_the_hand_count(name):
    c = measure(name)
    assert c.input_size == 32
    assert c.flops.by_category["conv"] + c.flops.by_category["fc"] == c.total == hc.cifar_macs(name)


def test_resnet20_is_the_familiar_41_m_multiply_adds():
    assert round(measure("resnet20_cifar").total / 1e6) == 41  # 40.55 M conv + FC


@pytest.mark.parametrize("name", slow_if(NAMES, SLOW_TRACE))
def test_se_twin_adds_the_se_hand_count(name):
    c = measure(f"se_{name}")
    blocks = hc.cifar_se_blocks(name)
    fc, scale, _ = hc.se_costs(blocks)
    assert (c.flops.by_category["se_fc"], c.flops.by_category["se_scale"]) == (fc, scale)
    assert c.total - hc.cifar_macs(name) == c.total - c.plain_total == fc + scale
    assert c.params - hc.cifar_params(name) == c.params - c.plain_params == hc.se_params(blocks)


@pytest.mark.parametrize("integration", INTEGRATIONS)
@pytest.mark.parametrize("name", NAMES)
def test_every_integration_and_stage_subset_adds_the_closed_form(name, integration):
    base = hc.cifar_params(name)
    for stages, r, bias in [((1, 2, 3), 16, True), ((2, 3), 4, False), ((1,), 2, True)]:
        model = build_model(f"se_{name}", integration=integration, stages=stages, reduction=r, bias=bias,
                            device="meta")
        blocks = hc.cifar_se_blocks(name, integration, stages)
        assert n_params(model) - base == hc.se_params(blocks, r, bias)
        assert [b.channels for b in se_blocks(model)] == [c for c, _ in blocks]


@pytest.mark.parametrize("integration", INTEGRATIONS)
@pytest.mark.parametrize("name", slow_if(["resnet20_cifar", "wrn16_8_cifar", "preact_resnet164_cifar"],
                                         {"preact_resnet164_cifar"}))
def test_every_integration_adds_the_se_multiply_adds(name, integration):
    c = measure(f"se_{name}", integration=integration, reduction=4)
    fc, scale, _ = hc.se_costs(hc.cifar_se_blocks(name, integration), r=4)
    assert (c.flops.by_category["se_fc"], c.flops.by_category["se_scale"]) == (fc, scale)
    assert c.plain_total == hc.cifar_macs(name)


@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("name", ["resnet20_cifar", "se_resnet20_cifar", "se_preact_resnet110_cifar",
                                  pytest.param("se_preact_resnet164_cifar", marks=pytest.mark.slow),
                                  pytest.param("se_wrn16_8_cifar", marks=pytest.mark.slow)])
def test_forward_shapes(name, num_classes):
    model = build_model(name, num_classes=num_classes)
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    out = model(x)
    out.square().mean().backward()
    assert out.shape == (2, num_classes) and torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    with torch.inference_mode():
        assert model.eval()(torch.randn(1, 3, 4, 4)).shape == (1, num_classes)  # min_input_size: stage 3 at 1x1




def option_a_ref(x, cout):
    """He et al.'s option A written out: keep the even rows and columns, then zero channels after the old ones."""
    n, cin, h, w = x.shape
    out = torch.zeros(n, cout, (h + 1) // 2, (w + 1) // 2)
    for i in range(0, h, 2):
        for j in range(0, w, 2):
            out[:, :cin, i // 2, j // 2] = x[:, :, i, j]
    return out


def test_option_a_is_parameter_free_and_subsamples_and_pads():
    model = build_model("resnet20_cifar")
    shortcuts = [m for m in model.modules() if isinstance(m, OptionAShortcut)]
    assert [(s.cin, s.cout, s.stride) for s in shortcuts] == [(16, 32, 2), (32, 64, 2)]
    assert all(n_params(s) == 0 for s in shortcuts)
    x = torch.randn(2, 16, 5, 5)
    torch.testing.assert_close(shortcuts[0](x), option_a_ref(x, 32), rtol=0, atol=0)
    unit = randomize_batchnorm(model).eval().layer2[0]  # ResNet-20's first 32-channel unit, against its ops
    x = torch.randn(2, 16, 6, 6)
    out = F.relu(bn(unit.bn1, F.conv2d(x, unit.conv1.weight, stride=2, padding=1)))
    out = F.relu(bn(unit.bn2, F.conv2d(out, unit.conv2.weight, padding=1)) + option_a_ref(x, 32))
    with torch.no_grad():
        torch.testing.assert_close(unit(x), out, rtol=1e-5, atol=1e-5)


def preact_ref(b, x, where):
    """A pre-activation unit written out: a = relu(bn1(x)); the branch's convs, each after BN-ReLU; the shortcut
    x, or the 1x1 projection of a; no ReLU after the sum; SE where ``where`` puts it."""
    a = F.relu(bn(b.bn1, x))
    shortcut = F.conv2d(a, b.downsample.weight, stride=b.stride) if b.downsample is not None else x
    out = se_ref(b.se, a) if where == "pre" else a
    if isinstance(b, PreActBottleneck):
        out = F.conv2d(out, b.conv1.weight)
        out = F.conv2d(F.relu(bn(b.bn2, out)), b.conv2.weight, stride=b.stride, padding=1)
        out = F.relu(bn(b.bn3, out))
        last = b.conv3.weight
    else:
        out = F.relu(bn(b.bn2, F.conv2d(out, b.conv1.weight, stride=b.stride, padding=1)))
        last = b.conv2.weight
    if where == "3x3":
        out = se_ref(b.se, out)
    out = F.conv2d(out, last, padding=last.shape[-1] // 2)
    if where == "standard":
        out = se_ref(b.se, out)
    if where == "identity":
        shortcut = se_ref(b.se, shortcut)
    out = out + shortcut
    return se_ref(b.se, out) if where == "post" else out


@pytest.mark.parametrize("where", INTEGRATIONS)
@pytest.mark.parametrize("block,planes,out", [(PreActBasicBlock, 8, 8), (PreActBottleneck, 4, 16)])
@pytest.mark.parametrize("stride", [1, 2])
def test_preact_unit_integration(block, planes, out, stride, where):
    downsample = torch.nn.Conv2d(4, out, 1, stride=stride, bias=False) if stride == 2 or out != 4 else None
    b = block(4, planes, stride, downsample, se=SEConfig(reduction=2, integration=where))
    randomize_batchnorm(b).eval()
    assert b.se.channels == {"pre": 4, "3x3": planes}.get(where, out)
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(b(x), preact_ref(b, x, where), rtol=1e-5, atol=1e-5)


def test_preact_identity_unit_keeps_the_raw_input_on_the_shortcut():
    b = randomize_batchnorm(PreActBasicBlock(8, 8, se=SEConfig(reduction=2))).eval()
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(b(x), preact_ref(b, x, "standard"), rtol=1e-5, atol=1e-5)
    model = build_model("preact_resnet164_cifar", device="meta")
    assert model.layer1[0].downsample.weight.shape == (64, 16, 1, 1) and model.layer1[1].downsample is None
    assert model.layer2[0].downsample.stride == (2, 2) and model.layer2[0].conv2.stride == (2, 2)


@pytest.mark.parametrize("name", NAMES)
def test_blocks_are_named_by_stage_and_block(name):
    model = build_model(f"se_{name}", device="meta")
    blocks = se_blocks(model)
    n = hc.CIFAR_NETS[name][1]
    assert [b.name for b in blocks] == [f"SE_{s}_{i}" for s in (1, 2, 3) for i in range(1, n + 1)]
    assert blocks[-1].path == f"layer3.{n - 1}.se" and blocks[-1].gate_path == f"layer3.{n - 1}.se.gate"
    assert [b.channels for b in blocks] == [c for c, _ in hc.cifar_se_blocks(name)]
    assert [b.name for b in se_blocks(build_model(f"se_{name}", stages=[2], device="meta"))] == \
        [f"SE_2_{i}" for i in range(1, n + 1)]


def test_per_block_and_per_stage_tables_use_the_names():
    c = measure("se_resnet20_cifar")
    blocks = block_table(c)
    assert list(blocks["block"]) == [f"SE_{s}_{i}" for s in (1, 2, 3) for i in (1, 2, 3)]
    fc, scale, _ = hc.se_costs(hc.cifar_se_blocks("resnet20_cifar"))
    assert blocks["flops"].sum() == fc + scale
    assert list(stage_table(c)["stage"]) == [1, 2, 3]


@pytest.mark.parametrize("name", NAMES)
def test_se_knobs_reach_every_block(name):
    model = build_model(f"se_{name}", gate="tanh", squeeze="max", reduction=4, bias=False, device="meta")
    blocks = se_blocks(model)
    assert len(blocks) == 3 * hc.CIFAR_NETS[name][1]
    for b in blocks:
        se = model.get_submodule(b.path)
        assert isinstance(model.get_submodule(b.gate_path), torch.nn.Tanh)
        assert se.squeeze.kind == "max" and se.fc1.out_channels == b.channels // 4
        assert se.fc1.bias is None and se.fc2.bias is None
    for where in INTEGRATIONS:
        built = build_model(f"se_{name}", integration=where, device="meta")
        units = [u for layer in (built.layer1, built.layer2, built.layer3) for u in layer]
        assert {u.integration for u in units} == {where}


@pytest.mark.parametrize("name,knobs,match", [
    ("se_resnet20_cifar", {"stages": (4,)}, r"^invalid stage 4 in stages; valid: a subset of 1, 2, 3$"),
    ("se_resnet20_cifar", {"stages": [0, 1]}, r"^invalid stage 0 in stages; valid: a subset of 1, 2, 3$"),
    ("se_resnet20_cifar", {"stages": "1,2"}, r"^invalid stages '1,2'; valid: a list of stage numbers from 1, 2, 3, "
                                             r"e\.g\. \[2, 3\]$"),
    ("se_resnet20_cifar", {"stages": [1, "x"]}, r"^invalid stage 'x' in stages; valid: a subset of 1, 2, 3$"),
    ("se_resnet20_cifar", {"stages": []}, r"^no stage carries SE .*valid: a non-empty subset of 1,2,3"),
    ("se_wrn16_8_cifar", {"drop_stage5": True}, r"^invalid drop_stage5=True: a CIFAR ResNet has no stage 5 .*"
                                                r"valid: drop_stage5=False, and stages= a subset of 1, 2, 3$"),
    ("se_resnet20_cifar", {"reduction": 32}, r"larger than an SE block's 16 channels; valid: 1 <= r <= 16$"),
    ("se_resnet20_cifar", {"reduction": 0}, r"^invalid reduction ratio 0; valid: an integer r >= 1$"),
    ("se_resnet20_cifar", {"integration": "middle"}, r"^unknown integration 'middle'; valid: 'standard', 'pre'"),
    ("se_resnet20_cifar", {"gate": "swish"}, r"^unknown excitation gate 'swish'; valid: 'sigmoid'"),
    ("resnet56_cifar", {"num_classes": 0}, r"^invalid num_classes 0; valid: an integer >= 1$"),
    ("se_resnet56_cifar", {"num_classes": 2.5}, r"^invalid num_classes 2.5; valid: an integer >= 1$"),
    ("resnet20_cifar", {"stride_at": "3x3"}, r"^unknown knob 'stride_at' for resnet20_cifar; valid: num_classes$"),
    ("resnet20_cifar", {"reduction": 8}, r"^knob 'reduction' applies only to models with SE; resnet20_cifar has "
                                         r"none \(try se_resnet20_cifar\)$"),
])
def test_bad_knobs_are_one_clear_error(name, knobs, match):
    with pytest.raises(SeprobeError, match=match):
        build_model(name, device="meta", **knobs)


def test_input_below_the_minimum_is_refused():
    with pytest.raises(SeprobeError, match="invalid input_size 3 for resnet20_cifar; valid: an integer >= 4"):
        complexity.measure("resnet20_cifar", input_size=3)


def test_paper_cifar_errors_are_the_reference_files():
    text = (SHARED / "reference" / "senet-paper.md").read_text()
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"^\| (ResNet-110|ResNet-164|WRN-16-8) \| ([\d.]+) -> ([\d.]+) \| ([\d.]+) -> ([\d.]+) \|$", text, re.M)}
    assert rows["ResNet-164"] == tuple(str(paper_accuracy(m, d).top1_err) for d in ("cifar10", "cifar100")
                                       for m in ("preact_resnet164_cifar", "se_preact_resnet164_cifar"))
    assert rows["WRN-16-8"] == tuple(str(paper_accuracy(m, d).top1_err) for d in ("cifar10", "cifar100")
                                     for m in ("wrn16_8_cifar", "se_wrn16_8_cifar"))
    assert paper_accuracy("se_preact_resnet110_cifar", "cifar100").table == "Table 5"
    assert paper_accuracy("resnet20_cifar", "cifar10") is None  # the paper prints no ResNet-20 figure
    assert {a.model for a in ACCURACIES} - {None} <= set(list_models())
    with pytest.raises(SeprobeError, match="unknown dataset 'imagenet'; valid: 'cifar10', 'cifar100'"):
        paper_accuracy("wrn16_8_cifar", "imagenet")




@pytest.mark.slow
def test_cli_complexity_measures_at_32x32(tmp_path):
    """`seprobe complexity --model se_resnet20_cifar --per-block`: the 32x32 input and the block names."""
    proc = run_seprobe("complexity", "--model", "se_resnet20_cifar", "--per-block", "--format", "json", "--output",
                       tmp_path / "c.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    tables = json.loads((tmp_path / "c.json").read_text())["tables"]
    (row,) = tables["summary"]
    assert (row["input_size"], row["params"], row["params_without_se"]) == (32, 272_095, 269_722)
    assert round(row["gflops_without_se"] * 1e9) == hc.cifar_macs("resnet20_cifar")
    assert [b["block"] for b in tables["blocks.se_resnet20_cifar"]] == [f"SE_{s}_{i}" for s in (1, 2, 3)
                                                                        for i in (1, 2, 3)]
