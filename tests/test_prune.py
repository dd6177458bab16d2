"""``seprobe prune``: the criteria's scores against their definitions computed by hand (hooks on the gates, the
filters' norms, autograd for the Taylor terms), allocations against hand-made score orders, the targets against the
counter ``seprobe complexity`` uses and against closed-form counts of the pruned architecture, the pruned file as
every command reads it (evaluated, counted, pruned again, trained), and the refusals, one line before any work.
"""

import shutil

import numpy as np
import pytest
import torch
from torch import nn

import seprobe
from seprobe.errors import SeprobeError
from seprobe.models.ablated import export_pruned, is_ablated_file
from seprobe.models.factory import ModelSource, get_network
from seprobe.models.pruning import channel_groups, prune_channels, pruning_record
from seprobe.models.registry import build_model
from seprobe.probe.evaluation import Loader
from seprobe.pruning.allocation import Counter, global_keep, removal_order, uniform_keep
from seprobe.pruning.criteria import bn_scores, gate_scores, l1_scores, random_scores, taylor_scores
from seprobe.pruning.plan import PrunePlan

from .conftest import randomize_batchnorm
from .helpers import run_seprobe, write_class_folders

CIFAR = "se_resnet20_cifar"
CLASSES = [f"c{i}" for i in range(10)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Ten classes (a CIFAR network's ten outputs) of random 32 x 32 images: train/ and test/."""
    root = tmp_path_factory.mktemp("prune-data")
    write_class_folders(root / "train", dict.fromkeys(CLASSES, 4), 32, seed=1)
    write_class_folders(root / "test", dict.fromkeys(CLASSES, 4), 32, seed=2)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A se_resnet20_cifar checkpoint with random weights and BatchNorm statistics (so no two channels tie)."""
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model(CIFAR), seed=3)
    path = tmp_path_factory.mktemp("prune-weights") / "net.pth"
    torch.save(model.state_dict(), path)
    return path


def _network(weights):
    return get_network(ModelSource(CIFAR, str(weights)))


def _images(folder):
    return seprobe.ImageSource(folder).read()


def _group(model, name):
    return next(g for g in channel_groups(model) if g.name == name)


# --- the criteria, by their definitions ---------------------------------------------------------------------------


def test_l1_sums_the_filters_that_write_the_stream(weights):
    """Stage 1's stream of a CIFAR ResNet is written by the stem and by each block's second conv (no projection:
    He et al.'s option A); Li et al.'s score is each output filter's L1 norm, summed over those layers."""
    model = _network(weights).model
    hand = sum(model.get_submodule(p).weight.detach().abs().sum((1, 2, 3)).double()
               for p in ("conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"))
    got = l1_scores(model, [_group(model, "stage1")])["stage1"]
    np.testing.assert_allclose(got, hand.numpy(), rtol=1e-12)


def test_bn_averages_gamma_over_the_stream_and_refuses_folded_batchnorm(weights):
    model = _network(weights).model
    gammas = [model.get_submodule(p).weight.detach().abs().double()
              for p in ("layer2.0.bn2", "layer2.1.bn2", "layer2.2.bn2")]  # option A: no projection BatchNorm
    got = bn_scores(model, [_group(model, "stage2")])["stage2"]
    np.testing.assert_allclose(got, (sum(gammas) / 3).numpy(), rtol=1e-12)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
    with pytest.raises(SeprobeError, match=r"every BatchNorm \|gamma\| is 1"):
        bn_scores(model, [_group(model, "stage2")])


def _gates_by_hand(model, images, blocks, preprocessing, views=1, seed=0):
    """Every image's gate values ``s`` (N x C; with ``views``, N * views rows) of each block, read by hooks on
    the gate modules."""
    from seprobe.data.images import ViewDataset

    ds = ViewDataset(images, preprocessing, views, seed)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    seen = {}
    handles = [model.get_submodule(f"{p}.gate").register_forward_hook(
        lambda m, i, o, p=p: seen.__setitem__(p, o.detach().flatten(1).double())) for p in blocks]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def test_gate_and_gate_max_are_the_gates_mean_and_largest_class_mean(weights, data):
    net = _network(weights)
    images = _images(data / "test")
    group = _group(net.model, "stage3")
    seen = _gates_by_hand(net.model, images, group.se_paths, net.preprocessing)
    labels = torch.tensor(images.labels)
    mean = torch.stack([seen[p].mean(0) for p in group.se_paths]).mean(0)
    by_class = torch.stack([torch.stack([seen[p][labels == k].mean(0) for k in range(10)]).amax(0)
                            for p in group.se_paths]).mean(0)
    loader = Loader(batch_size=7)  # batches that split classes: the statistics stream
    # float32 forwards of batches of 7 and of 40 round differently: ~1e-7 relative per layer, ~20 layers deep
    got = gate_scores(net, [group], images, loader, criterion="gate", progress=False)["stage3"]
    np.testing.assert_allclose(got, mean.numpy(), rtol=2e-6)
    got = gate_scores(net, [group], images, loader, criterion="gate_max", progress=False)["stage3"]
    np.testing.assert_allclose(got, by_class.numpy(), rtol=2e-6)


def test_calibration_views_are_averaged_into_the_gate(weights, data, tmp_path):
    """``calibration_views`` K: the gate is averaged over each image's K crops (the evaluation crop and K - 1
    seeded augmented ones, as the ``mean`` ablation's calibration), and the summary says so."""
    net = _network(weights)
    images = _images(data / "test")
    group = _group(net.model, "stage3")
    seen = _gates_by_hand(net.model, images, group.se_paths, net.preprocessing, views=3, seed=5)
    mean = torch.stack([seen[p].mean(0) for p in group.se_paths]).mean(0)
    one_view = gate_scores(net, [group], images, Loader(batch_size=7), criterion="gate", progress=False)["stage3"]
    got = gate_scores(net, [group], images, Loader(batch_size=7), criterion="gate", views=3, seed=5,
                      progress=False)["stage3"]
    np.testing.assert_allclose(got, mean.numpy(), rtol=2e-6)
    assert np.abs(got - one_view).max() > 1e-4  # the augmented crops are seen
    done = seprobe.prune(CIFAR, str(weights), data / "test", plan=PrunePlan(criterion="gate", keep_macs=0.6),
                         calibration=seprobe.CalibrationSource(calibration_per_class=2, calibration_views=2),
                         evaluate=False, progress=False)
    assert done.result.summary_table().iloc[0]["calibration_views"] == 2


def test_taylor_is_the_squared_first_order_term_of_the_groups_batchnorms(weights, data):
    """Molchanov et al. 2019 on BatchNorm: per batch (sum over the group's BNs of gamma dL/dgamma + beta
    dL/dbeta)^2, here one batch, by autograd on a copy."""
    from seprobe.data.images import ViewDataset

    net = _network(weights)
    images = _images(data / "test")
    group = _group(net.model, "stage2")
    model = _network(weights).model.eval()
    ds = ViewDataset(images, net.preprocessing)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    loss = nn.functional.cross_entropy(model(x), torch.tensor(images.labels))
    paths = ("layer2.0.bn2", "layer2.1.bn2", "layer2.2.bn2")
    params = [t for p in paths for t in (model.get_submodule(p).weight, model.get_submodule(p).bias)]
    grads = torch.autograd.grad(loss, params)
    term = sum(w.detach() * g for w, g in zip(params, grads, strict=True))
    got = taylor_scores(net, [group], images, Loader(batch_size=len(ds)), progress=False)["stage2"]
    np.testing.assert_allclose(got, (term.double() ** 2).numpy(), rtol=1e-5, atol=1e-12)
    assert all(p.grad is None for p in net.model.parameters())  # nothing left behind


def test_random_is_seeded():
    model = build_model(CIFAR)
    groups = channel_groups(model)
    a, b, c = random_scores(groups, 0), random_scores(groups, 0), random_scores(groups, 1)
    assert all(np.array_equal(a[k], b[k]) for k in a) and not all(np.array_equal(a[k], c[k]) for k in a)


# --- allocation ---------------------------------------------------------------------------------------------------


def _gated(model):
    return [g for g in channel_groups(model) if g.gates]


def test_uniform_keeps_the_top_fraction_of_every_group():
    groups = _gated(build_model(CIFAR))  # streams of 16, 32 and 64 channels
    scores = {g.name: np.arange(g.width, dtype=float)[::-1].copy() for g in groups}  # channel 0 scores highest
    keep = uniform_keep(groups, scores, 0.25, 1)
    assert keep == {"stage1": list(range(4)), "stage2": list(range(8)), "stage3": list(range(16))}


def test_global_ranks_scores_relative_to_their_groups_mean():
    """Stage 3's scores are 100 times stage 1's, but relative to their means stage 1 has the lowest channels:
    the first removals are stage 1's half below its mean, never its best ``min_channels``."""
    groups = _gated(build_model(CIFAR))
    scores = {"stage1": np.r_[np.full(8, 0.1), np.full(8, 1.9)],       # mean 1: 0.1 and 1.9
              "stage2": np.r_[np.full(16, 50.0), np.full(16, 150.0)],  # mean 100: 0.5 and 1.5
              "stage3": np.full(64, 100.0)}                            # all at their mean: 1
    order = removal_order(groups, scores, min_channels=4)
    assert order[:8] == [("stage1", c) for c in range(8)]
    assert order[8:24] == [("stage2", c) for c in range(16)]
    keep = global_keep(groups, order, 24)
    assert keep == {"stage1": list(range(8, 16)), "stage2": list(range(16, 32))}
    # stage 1's best 4 (of its eight 1.9s, ties to the lower index: 8..11) are never removed
    assert [c for n, c in order if n == "stage1"] == [*range(8), 12, 13, 14, 15]


# --- the prune job: targets, exactness, outputs -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pruned(weights, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("pruned")
    done = seprobe.prune(CIFAR, str(weights), data / "test", plan=PrunePlan(criterion="gate", keep_macs=0.6),
                         calibration=seprobe.CalibrationSource(calibration_per_class=2), out=out, progress=False)
    return done, out


def test_the_target_is_met_as_complexity_counts_the_written_network(pruned):
    done, out = pruned
    s = done.result.summary_table().iloc[0]
    written = seprobe.complexity(CIFAR, weights=str(out / "network.pth")).results[0]
    full = seprobe.complexity(CIFAR).results[0]
    assert (written.params, written.total) == (s["params_after"], s["macs_after"])
    assert (full.params, full.total) == (s["params_before"], s["macs_before"])
    assert written.total <= 0.6 * full.total
    # one channel fewer pruned would not meet it: the bisection stops at the first k that does
    net = get_network(ModelSource(CIFAR, "random"))
    groups = done.result.groups
    order = removal_order(groups, done.result.scores, 1)
    k = sum(g.width - len(done.result.kept(g)) for g in groups)
    assert Counter(net.model, net.blocks, 32)(global_keep(groups, order, k - 1)).macs > 0.6 * full.total


def test_the_outputs_and_their_accuracy(pruned, data):
    import pandas as pd

    done, out = pruned
    assert sorted(p.name for p in out.iterdir()) == ["channels.csv", "network.pth", "scores.csv", "summary.csv",
                                                     "summary.md"]
    channels = pd.read_csv(out / "channels.csv")
    assert list(channels["group"]) == ["stage1", "stage2", "stage3"] and list(channels["width"]) == [16, 32, 64]
    scores = pd.read_csv(out / "scores.csv")
    kept = dict(zip(channels["group"], channels["kept"], strict=True))
    assert scores.groupby("group")["kept"].sum().to_dict() == kept
    # the kept channels of each group are its highest gates (global: the same order within a group)
    for _, rows in scores.groupby("group"):
        kept, dropped = rows[rows["kept"]]["score"], rows[~rows["kept"]]["score"]
        assert dropped.empty or dropped.max() <= kept.min()
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    assert summary["images"] == 20 and summary["calibration_images"] == 20  # 2 of the 4 per class each
    # the accuracy after is the written network's, read as every command reads it
    ev = seprobe.evaluate(CIFAR, str(out / "network.pth"), data / "test", progress=False)
    assert ev.images == 40 and summary["top1_after"] == pytest.approx(
        seprobe.evaluate(CIFAR, str(out / "network.pth"), _heldout(data, tmp=out.parent), progress=False).top1)


def _heldout(data, tmp):
    """The test images calibration_per_class 2 did not take (the last two of each class, in path order)."""
    root = tmp / "heldout"
    if not root.exists():
        for c in CLASSES:
            (root / c).mkdir(parents=True)
            for i in (2, 3):
                shutil.copy(data / "test" / c / f"{i}.png", root / c / f"{i}.png")
    return root


def test_the_written_network_is_the_pruned_one_and_prunes_again(pruned, data, tmp_path):
    done, out = pruned
    net = get_network(ModelSource(CIFAR, str(out / "network.pth")))
    assert "pruned" in net.name
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net.model(x), done.result.pruned(x))
    again = seprobe.prune(CIFAR, str(out / "network.pth"), data / "test", progress=False, out=tmp_path,
                          plan=PrunePlan(criterion="l1", allocation="uniform", keep_channels=0.5))
    first, second = pruning_record(done.result.pruned), pruning_record(again.result.pruned)
    assert second["base_widths"] == {"stage1": 16, "stage2": 32, "stage3": 64}
    for name, kept in second["kept"].items():  # indices of the unpruned network, a subset of the first cut's
        assert set(kept) <= set(first["kept"].get(name, range(64)))
        assert len(kept) == max(1, round(0.5 * len(first["kept"].get(name, range(64)))))


def test_a_pruned_network_fine_tunes_and_stays_pruned(pruned, data, tmp_path):
    _, out = pruned
    run = tmp_path / "run"
    seprobe.train(CIFAR, data, run, weights=str(out / "network.pth"), recipe={"epochs": 1, "batch_size": 8},
                  progress=False)
    assert is_ablated_file(run / "final.pth")
    net = get_network(ModelSource(CIFAR, str(run / "final.pth")))
    assert pruning_record(net.model) == pruning_record(get_network(ModelSource(CIFAR, str(out / "network.pth"))).model)


def test_an_interrupted_prune_leaves_nothing(weights, data, tmp_path, monkeypatch):
    import seprobe.report.pruning as writer

    def interrupted(path, table):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "_csv", interrupted)
    with pytest.raises(KeyboardInterrupt):
        seprobe.prune(CIFAR, str(weights), data / "test", plan=PrunePlan(criterion="random", keep_channels=0.5),
                      out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# --- closed-form counts of a pruned SE-ResNet-50 ------------------------------------------------------------------


def _se_resnet50_by_hand(widths):
    """Parameters and multiply-adds (conv, FC and SE's scale, at 224) of SE-ResNet-50 with stage streams of
    ``widths`` (stages 2..5); the inner widths (64..512) and the SE hidden widths (4 x inner / 16) are not cut.
    The paper's stride placement: in the first 1x1 conv, so every conv of a block runs at its output side."""
    params = 3 * 49 * 64 + 2 * 64
    macs = 3 * 49 * 64 * 112 * 112
    cin = 64
    for blocks, inner, side, w in zip((3, 4, 6, 3), (64, 128, 256, 512), (56, 28, 14, 7), widths, strict=True):
        hidden = 4 * inner // 16
        for b in range(blocks):
            hw = side * side
            params += cin * inner + 2 * inner + 9 * inner * inner + 2 * inner + inner * w + 2 * w
            macs += (cin * inner + 9 * inner * inner + inner * w) * hw
            if b == 0:
                params += cin * w + 2 * w
                macs += cin * w * hw
            params += w * hidden + hidden + hidden * w + w
            macs += 2 * w * hidden + w * hw
            cin = w
    params += cin * 1000 + 1000
    macs += cin * 1000
    return params, macs


def test_a_pruned_se_resnet50_counts_as_its_closed_form(tmp_path):
    model = build_model("se_resnet50")
    rng = np.random.default_rng(0)
    widths = (256 - 37, 512 - 200, 1024 - 1, 2048 - 1024)
    keep = {f"stage{s}": sorted(rng.choice(full, w, replace=False).tolist())
            for s, full, w in zip((2, 3, 4, 5), (256, 512, 1024, 2048), widths, strict=True)}
    path = tmp_path / "pruned.pth"
    export_pruned(prune_channels(model, keep), path, model_name="se_resnet50")
    c = seprobe.complexity("se_resnet50", weights=str(path)).results[0]
    assert (c.params, c.total) == _se_resnet50_by_hand(widths)
    assert _se_resnet50_by_hand((256, 512, 1024, 2048)) == (seprobe.complexity("se_resnet50").results[0].params,
                                                            seprobe.complexity("se_resnet50").results[0].total)


# --- refusals: one line, before any work --------------------------------------------------------------------------


def test_refusals_are_one_line_before_any_work(weights, data, tmp_path):
    base = ["prune", "--model", CIFAR, "--weights", str(weights), "--data", str(data / "test")]
    cases = [
        (["--keep-macs", "0"], "invalid --keep-macs 0.0; valid: a fraction in (0, 1]"),
        (["--keep-macs", "1.5"], "invalid --keep-macs 1.5; valid: a fraction in (0, 1]"),
        ([], "no target given; valid: exactly one of --keep-macs, --keep-params, --keep-channels"),
        (["--keep-macs", "0.5", "--criterion", "gates"], "'gates' is not one of 'gate', 'gate_max'"),
        (["--keep-macs", "0.5"], "criterion 'gate' needs calibration images"),
        (["--keep-macs", "0.01", "--calibration", "1"], "--keep-macs 0.01 is out of reach"),
    ]
    for extra, message in cases:
        r = run_seprobe(*base, *extra, "--out", str(tmp_path / "o"), cwd=tmp_path)
        assert r.returncode != 0 and message in r.stderr, (extra, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_refusals_of_the_network_and_the_images(weights, data, tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save(build_model("resnet20_cifar").state_dict(), plain)
    with pytest.raises(SeprobeError, match="no channel group of resnet20_cifar is scaled by an SE gate"):
        seprobe.prune("resnet20_cifar", str(plain), data / "test", progress=False,
                      plan=PrunePlan(criterion="gate", keep_macs=0.5))
    with pytest.raises(SeprobeError, match="criterion 'gate' reads SE gates"):
        seprobe.prune(CIFAR, str(weights), data / "test", progress=False,
                      calibration=seprobe.CalibrationSource(calibration_per_class=1),
                      plan=PrunePlan(criterion="gate", scope="all", keep_macs=0.5))
    three = write_class_folders(tmp_path / "three", dict.fromkeys(("a", "b", "c"), 2), 32)
    with pytest.raises(SeprobeError, match=r"calibration images .*3 classes.* are not what se_resnet20_cifar "
                                           r"predicts \(10 outputs\)"):
        seprobe.prune(CIFAR, str(weights), data / "test", progress=False,
                      calibration=seprobe.CalibrationSource(calibration_data=str(three)),
                      plan=PrunePlan(criterion="taylor", keep_macs=0.5))
    with pytest.raises(SeprobeError, match="invalid plan"):
        seprobe.prune(CIFAR, str(weights), data / "test", plan={"keep_macs": 0.5})


def test_a_pruned_file_keeps_its_own_knobs_and_is_not_overwritten(data, tmp_path):
    """A network pruned with non-default knobs prunes again without them (the file's knobs rebuild it); a knob
    given that contradicts the file, an output (prune's folder, ablate's export) that would replace the weights, a
    header with a field missing and unreadable images are each named (review of stop 31)."""
    first = tmp_path / "first"
    seprobe.prune(CIFAR, "random", data / "test", plan=PrunePlan(criterion="l1", keep_macs=0.5), out=first,
                  progress=False, evaluate=False, integration="3x3", reduction=8)
    again = seprobe.prune(CIFAR, str(first / "network.pth"), data / "test", out=tmp_path / "again", progress=False,
                          evaluate=False, plan=PrunePlan(criterion="l1", keep_macs=0.5))
    net = get_network(ModelSource(CIFAR, str(tmp_path / "again" / "network.pth")))
    assert net.source.knobs == {"integration": "3x3", "reduction": 8}
    assert pruning_record(net.model) == pruning_record(again.result.pruned)
    with pytest.raises(SeprobeError, match=r"reduction 4 does not match .*network.pth, written with 8; "
                                           r"valid: leave it out") as e:
        seprobe.prune(CIFAR, str(first / "network.pth"), data / "test", progress=False, reduction=4,
                      plan=PrunePlan(criterion="l1", keep_macs=0.5))
    assert e.value.argument == "reduction"
    with pytest.raises(SeprobeError, match="squeeze 'max' does not match .*, written with the default; "
                                           "valid: leave it out"):
        get_network(ModelSource(CIFAR, str(first / "network.pth"), {"squeeze": "max"}))
    before = (first / "network.pth").read_bytes()
    with pytest.raises(SeprobeError, match=r"holds the weights being pruned .* valid: another folder"):
        seprobe.prune(CIFAR, str(first / "network.pth"), data / "test", out=first, progress=False,
                      plan=PrunePlan(criterion="l1", keep_macs=0.5))
    with pytest.raises(SeprobeError, match=r"export .* is the weights being ablated .* valid: another file"):
        seprobe.ablate(CIFAR, str(first / "network.pth"), data / "test", plan=seprobe.AblationPlan(stage=3),
                       export=first / "network.pth", progress=False)
    assert (first / "network.pth").read_bytes() == before
    obj = torch.load(first / "network.pth", weights_only=True)
    del obj["removed"]
    torch.save(obj, tmp_path / "half.pth")
    for call in (lambda: seprobe.prune(CIFAR, str(tmp_path / "half.pth"), data / "test", progress=False,
                                       plan=PrunePlan(criterion="l1", keep_macs=0.5)),
                 lambda: get_network(ModelSource(CIFAR, str(tmp_path / "half.pth")))):
        with pytest.raises(SeprobeError, match="not a valid seprobe-pruned/1 file: field 'removed' is missing"):
            call()
    bad = tmp_path / "bad"
    shutil.copytree(data / "test", bad)
    (bad / "c0" / "junk.jpg").write_bytes(b"not an image")
    png = (bad / "c1" / "0.png").read_bytes()
    (bad / "c1" / "0.png").write_bytes(png[:len(png) // 2])  # its header reads, its pixels do not
    done = seprobe.prune(CIFAR, "random", bad, plan=PrunePlan(criterion="l1", keep_macs=0.5), progress=False)
    unreadable = done.result.accuracy_before.unreadable
    assert [u.split(": ")[0].split("/bad/")[1] for u in unreadable] == ["c0/junk.jpg", "c1/0.png"]
    assert "(before fine-tuning, 39 images, 2 unreadable images skipped)" in done.text()  # 41 files
    with pytest.raises(SeprobeError, match=r"keep_channels 0.5 is out of reach: .* keeps 1.000 of the channels; "
                                           r"valid: a fraction >= 1, or a smaller min_channels, or scope 'all'"):
        seprobe.prune(CIFAR, "random", data / "test", progress=False,
                      plan=PrunePlan(criterion="l1", keep_channels=0.5, min_channels=1000))


# --- every criterion on every family ------------------------------------------------------------------------------

WNIDS = ("n01443537", "n09246464", "n02085620")  # goldfish, cliff, Chihuahua: ImageNet labels for 1000-way networks
FAMILIES = {  # model, knobs, input side the test works at
    "se_resnet50": ("se_resnet50", {}, 64),
    "se_resnet20_cifar": (CIFAR, {}, 32),
    "se_resnet20_cifar, integration 3x3": (CIFAR, {"integration": "3x3"}, 32),
    "timm:tf_mobilenetv3_small_100": ("timm:tf_mobilenetv3_small_100", {}, 64),
}


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """Per family: a checkpoint (random weights, BatchNorm randomised so that |gamma| ranks) and images of its
    classes (ImageNet wnid folders for the 1000-way networks), 3 per class."""
    from seprobe.models.sources import build_architecture

    root = tmp_path_factory.mktemp("families")
    write_class_folders(root / "imagenet", dict.fromkeys(WNIDS, 3), 64, seed=5)
    write_class_folders(root / "cifar", dict.fromkeys(CLASSES, 3), 32, seed=6)
    made = {}
    for name, (model, knobs, side) in FAMILIES.items():
        if model.startswith("timm:"):
            pytest.importorskip("timm", reason="timm: models need seprobe[timm]")
        torch.manual_seed(0)
        net = randomize_batchnorm(build_architecture(model, knobs), seed=7)
        path = root / f"{len(made)}.pth"
        torch.save(net.state_dict(), path)
        made[name] = (path, root / ("cifar" if side == 32 else "imagenet"))
    return made


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("criterion", ["gate", "gate_max", "l1", "bn", "taylor", "random"])
def test_every_criterion_prunes_every_family_exactly_to_its_target(families, family, criterion, tmp_path):
    """Half the channels of the gated groups (uniform: of each group), every criterion, every family; the file
    written is the pruned network (its logits), counted as complexity counts it, scored as evaluate scores it."""
    from seprobe.data.overrides import Overrides

    model, knobs, side = FAMILIES[family]
    weights, data = families[family]
    overrides = Overrides(resize=side, crop=side) if side != 32 else None
    done = seprobe.prune(model, str(weights), data, plan=PrunePlan(criterion=criterion, allocation="uniform",
                                                                     keep_channels=0.5),
                         calibration=seprobe.CalibrationSource(calibration_per_class=1), out=tmp_path,
                         overrides=overrides, progress=False, **knobs)
    result = done.result
    for g in result.groups:
        assert len(result.kept(g)) == max(1, round(g.width / 2))
    net = get_network(ModelSource(model, str(tmp_path / "network.pth"), knobs))
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        assert torch.equal(net.model(x), result.pruned(x))
    c = seprobe.complexity(model, weights=str(tmp_path / "network.pth"), input_size=side, **knobs).results[0]
    assert (c.params, c.total) == (result.after.params, result.after.macs) and c.total < result.before.macs


@pytest.mark.slow
@pytest.mark.parametrize("criterion", ["gate_max", "taylor"])
def test_two_torchrun_ranks_score_and_prune_as_one_process(weights, data, tmp_path, criterion):
    """The gate statistics merge across ranks (Chan et al.), the Taylor sums are all-reduced: the same scores (to
    the float32 rounding of other batch shapes and thread counts), the same channels kept, the same accuracy."""
    import os
    import subprocess
    import sys

    import pandas as pd

    from .helpers import env_without_defaults

    args = ["prune", "--model", CIFAR, "--weights", str(weights), "--data", str(data / "test"), "--calibration", "2",
            "--criterion", criterion, "--keep-channels", "0.5", "--batch-size", "3"]
    env = {k: v for k, v in env_without_defaults(OMP_NUM_THREADS="1").items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    one = subprocess.run([sys.executable, "-m", "seprobe", *args, "--out", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=300)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "seprobe", *args, "--out", str(tmp_path / "two")], env=env, capture_output=True,
                         text=True, timeout=300, cwd=os.getcwd())
    assert one.returncode == 0 and two.returncode == 0, (one.stderr, two.stderr)
    a, b = (pd.read_csv(tmp_path / d / "scores.csv") for d in ("one", "two"))
    # gates: float32 <= 1, a few roundings; Taylor: squared products of float32 gradients, relative
    np.testing.assert_allclose(b["score"], a["score"], rtol=1e-4 if criterion == "taylor" else 2e-6, atol=1e-12)
    assert b["kept"].tolist() == a["kept"].tolist()
    s1, s2 = (pd.read_csv(tmp_path / d / "summary.csv").iloc[0] for d in ("one", "two"))
    assert (s1["top1_after"], s1["images"], s1["macs_after"]) == (s2["top1_after"], s2["images"], s2["macs_after"])


def test_a_pruned_mobilenetv3_small_file_counts_as_its_closed_form(tmp_path):
    """The written file, counted by ``seprobe complexity`` at 224, against the hand formulas of
    tests/test_pruning_mobilenet.py (widths by hand, MobileNetV3-Small's layer table)."""
    pytest.importorskip("timm", reason="timm: models need seprobe[timm]")
    import random

    from seprobe.models.sources import build_architecture

    from .test_pruning_mobilenet import LAST, SMALL_BLOCKS, _small_macs, _small_params

    model = build_architecture("timm:tf_mobilenetv3_small_100")
    full = {path: exp for path, _, exp, *_ in SMALL_BLOCKS[1:]}
    widths = dict(zip(full, (72, 88, 50, 120, 200, 60, 144, 100, 400, 576), strict=True))  # blocks.1.x: no SE
    keep = {"blocks.0.0": list(range(2, 14)),
            **{p: sorted(random.Random(i).sample(range(full[p]), w)) for i, (p, w) in enumerate(widths.items())
               if w < full[p]}}
    path = tmp_path / "small.pth"
    export_pruned(prune_channels(model, keep), path, model_name="timm:tf_mobilenetv3_small_100")
    c = seprobe.complexity("timm:tf_mobilenetv3_small_100", weights=str(path), input_size=224).results[0]
    assert (c.params, c.total) == (_small_params(widths, 12, LAST), _small_macs(widths, 12, LAST, 224))
