"""Exporting an ablated network (models/ablated.py): identity blocks removed, mean blocks folded into the
adjacent BatchNorm or convolution or kept as a scale module; the file, loaded back as every command loads it,
computes what the ablated network computes (gates replaced by hooks), and is smaller by what the table says."""

import pytest
import torch

from seprobe.cost.flops import DEFAULT, count_flops
from seprobe.cost.se_blocks import block_costs
from seprobe.models.ablated import ChannelScale, ablated_copy, export_ablated, is_ablated_file, load_ablated
from seprobe.models.blocks import find_blocks
from seprobe.models.factory import ModelSource, get_network
from seprobe.models.registry import build_model
from seprobe.probe.hooks import GateHooks

from .conftest import randomize_batchnorm


def _ablated_logits(model, gates, modes, means, x):
    with GateHooks(model, gates, means) as hooks, torch.no_grad():
        hooks.replace(modes)
        return model(x)


def _check_export(model, size, modes_of, tmp_path, spec, knobs=None):
    model = randomize_batchnorm(model).eval()
    gates = find_blocks(model, input_size=size)
    g = torch.Generator().manual_seed(0)
    means = {b.name: torch.rand(b.channels, generator=g) * 0.9 + 0.05 for b in gates}
    modes = {b.name: modes_of(i) for i, b in enumerate(gates)}
    x = torch.randn(2, 3, size, size, generator=g)
    ablated = _ablated_logits(model, gates, modes, means, x)
    export_ablated(model, gates, modes, means, tmp_path / "ablated.pth", model_name=spec, knobs=knobs)
    rebuilt = load_ablated(tmp_path / "ablated.pth")
    with torch.no_grad():
        exported = rebuilt.model(x)
        full = model(x)
    assert (full - ablated).abs().max() > 1e-2  # the ablation changes the logits, so the equality bites
    # float32: the folded products round differently, by float32's resolution at the logits' scale ...
    assert (exported - ablated).abs().max() < 1e-6 * max(1.0, ablated.abs().max().item())
    # ... and folded in float64 the two are the same function
    double = {k: v.double() for k, v in means.items()}
    ablated64 = _ablated_logits(model.double(), gates, modes, double, x.double())
    with torch.no_grad():
        assert (ablated_copy(model, gates, modes, double).model(x.double()) - ablated64).abs().max() < 1e-10
    model.float()
    # the exported network is smaller by what the table says
    costs, total, params = block_costs(model, gates, size)
    targets = {b.name: b.fold for b in gates}
    saved_macs = saved_params = 0
    for name, mode in modes.items():
        keeps = mode == "mean" and targets[name] is None
        saved_params += costs[name].params - (costs[name].channels if keeps else 0)
        saved_macs += costs[name].macs - (costs[name].scale_macs if keeps else 0)
    after = count_flops(rebuilt.model, torch.zeros(1, 3, size, size)).total(DEFAULT)
    assert after == total - saved_macs
    assert sum(p.numel() for p in rebuilt.model.parameters()) == params - saved_params
    return rebuilt


@pytest.mark.slow
def test_fold_seprobe_resnet_standard_into_bn(tmp_path):
    torch.manual_seed(0)
    model = build_model("se_resnet50")
    targets = {b.name: b.fold for b in find_blocks(model, 32)}
    assert targets["SE_2_1"].path == "layer1.0.bn3" and targets["SE_2_1"].kind == "bn"
    rebuilt = _check_export(model, 32, lambda i: "mean" if i % 3 else "identity", tmp_path, "se_resnet50")
    assert rebuilt.blocks["SE_2_2"] == "mean folded into layer1.1.bn3"
    assert not any(isinstance(m, ChannelScale) for m in rebuilt.model.modules())


def test_fold_basic_block_and_fallback_scale_module(tmp_path):
    torch.manual_seed(0)
    _check_export(build_model("se_resnet18"), 32, lambda i: "mean" if i % 2 else "identity", tmp_path,
                  "se_resnet18")
    torch.manual_seed(0)
    rebuilt = _check_export(build_model("se_resnet18", integration="post"), 32, lambda i: "mean", tmp_path,
                            "se_resnet18", {"integration": "post"})
    assert sum(isinstance(m, ChannelScale) for m in rebuilt.model.modules()) == 8


def test_fold_timm_mobilenetv3_into_the_projection(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("tf_mobilenetv3_small_100")
    targets = {b.name: b.fold for b in find_blocks(model, 64)}
    assert targets["SE_2_1"].path == "blocks.0.0.conv_pw" and targets["SE_4_1"].path == "blocks.2.0.conv_pwl"
    rebuilt = _check_export(model, 64, lambda i: "mean" if i % 2 else "identity", tmp_path,
                            "timm:tf_mobilenetv3_small_100")
    assert rebuilt.blocks["SE_4_1"] == "mean folded into blocks.2.0.conv_pwl"
    assert is_ablated_file(tmp_path / "ablated.pth") and not is_ablated_file(tmp_path / "nothing.pth")
    net = get_network(ModelSource("timm:tf_mobilenetv3_small_100", tmp_path / "ablated.pth"))
    assert net.name == "timm:tf_mobilenetv3_small_100 (ablated: ablated.pth)" and net.ablated["SE_4_1"].startswith(
        "mean folded")
