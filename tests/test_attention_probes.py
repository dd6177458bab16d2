"""The probes on SE's successors, end to end: CIFAR ResNet-20s built with ``--attention eca`` and ``--attention
cbam``, trained by ``seprobe train`` for a few steps on a tiny image folder, then read by ``seprobe activations``
and ablated by ``seprobe ablate`` on the command line. Every number is checked against the network's equations
run by hand on the same images: CBAM's spatial map from the SpatialGate equation (Woo et al. 2018, Eq. 3) at the
spatial gate's input, the channel gates from their excitations, and each ablation against the trained network
with the gate replaced by hand (``nn.Identity`` for identity, the map fixed to a number for mean and constant).

The command lines run one after another in one Python process (:func:`~tests.helpers.run_seprobe_many`: the
command line's ``main``, as ``python -m seprobe`` calls it), so that the module pays one torch import: about 20 s
for both networks on 2 cores, once (the tests that read them are ``slow``: they need those command lines).
"""

from __future__ import annotations

import copy
import threading

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import seprobe
from seprobe import se_blocks
from seprobe.models.ablated import ChannelScale, ablated_copy, load_ablated
from seprobe.probe.gate_stats import GateStats
from seprobe.probe.hooks import GateHooks

from .helpers import bn, env_without_defaults, run_seprobe_many, write_class_folders
from .rounding import float32_error, kl_tolerance, mean_tolerance, std_tolerance

CLASSES = ("a", "b", "c")
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.247, 0.2435, 0.2616)  # the CIFAR ResNets' normalisation
TRAIN = ["--epochs", "2", "--batch-size", "4", "--lr", "0.2", "--num-workers", "0"]
MODEL = ["--model", "se_resnet20_cifar", "--num-classes", "3"]


def _commands(data, attention: str) -> list[list[str]]:
    """What a user runs on one attention module, in order: train, read the gates, ablate."""
    weights = ["--weights", f"{attention}/run/final.pth"]
    common = [*MODEL, "--attention", attention, *weights, "--data", data / "test"]
    train = ["train", *MODEL[:2], "--attention", attention, "--data", data, *TRAIN, "--out", f"{attention}/run"]
    read = ["activations", *common, "--classes", "a,b", "--out", f"{attention}/act"]
    if attention == "eca":
        return [train, read,
                ["ablate", *common, "--blocks", "SE_2_2", "--mode", "identity,constant", "--bootstrap", "10",
                 "--export", "eca/constant.pth", "--export-mode", "constant", "--out", "eca/abl"]]
    return [train, read,
            # a set of two spatial gates in the three modes; the mean one exported
            ["ablate", *common, "--blocks", "SE_1_1.spatial,SE_3_2.spatial", "--mode", "identity,mean,constant",
             "--calibration", "1", "--bootstrap", "10", "--export", "cbam/mean.pth", "--export-mode", "mean",
             "--out", "cbam/set"],
            # every spatial gate alone, and a channel gate with a spatial one as one set, exported removed
            ["ablate", *common, "--gates", "spatial", "--each-block", "--blocks", "SE_2_1,SE_3_2.spatial", "--mode",
             "identity,constant", "--bootstrap", "10", "--export", "cbam/identity.pth", "--export-mode", "identity",
             "--out", "cbam/sweep"]]


#: asked of the ECA network: a spatial gate it lacks (by name, and as the sweeps' gates); (flags, message)
REFUSED = [
    (["--blocks", "SE_1_1.spatial"], "seprobe: error: invalid block 'SE_1_1.spatial' in --blocks: SE_1_1 has no "
     "spatial gate (only CBAM's have one); valid: SE_1_1, SE_1_2, SE_1_3, SE_2_1"),
    (["--gates", "spatial"], "seprobe: error: invalid --gates 'spatial': no block of this network has a spatial gate "
     "(only CBAM's have one); valid: gates 'channel'"),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both networks trained, read and ablated on the command line (and the refusals run): the working folder, the
    data and each command line's result."""
    root = tmp_path_factory.mktemp("attention-probes")
    data = root / "data"
    write_class_folders(data / "train", dict.fromkeys(CLASSES, 4), 32, seed=0)
    write_class_folders(data / "test", dict.fromkeys(CLASSES, 4), 32, seed=1)
    work = root / "work"
    work.mkdir()
    commands = _commands(data, "eca") + _commands(data, "cbam")
    refused = [["ablate", *MODEL, "--attention", "eca", "--weights", "eca/run/final.pth", "--data", data / "test",
                *flags, "--out", f"refused{i}"] for i, (flags, _) in enumerate(REFUSED)]
    results = run_seprobe_many([(argv, work) for argv in commands + refused],
                               env=env_without_defaults(OMP_NUM_THREADS="1"))  # as this process: the same kernels
    for argv, proc in zip(commands, results, strict=False):
        assert proc.returncode == 0, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr
    return work, data, results[len(commands):]


# --- the networks and images, by hand --------------------------------------------------------------------------

def trained(work, attention: str) -> nn.Module:
    model = seprobe.build_model("se_resnet20_cifar", attention=attention, num_classes=3)
    model.load_state_dict(torch.load(work / attention / "run" / "final.pth", weights_only=True))
    return model.eval()


def images(data, skip_first: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """The test images in path order (class folders, then files), normalised as the CIFAR ResNets' evaluation
    crop (32 x 32 images: resize and crop leave them as they are); ``skip_first``: without each class's first
    image (``--calibration 1`` takes it)."""
    xs, labels = [], []
    for label, c in enumerate(CLASSES):
        for k, path in enumerate(sorted((data / "test" / c).iterdir())):
            if skip_first and k == 0:
                continue
            pixels = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255
            xs.append((pixels - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1))
            labels.append(label)
    return torch.stack(xs), np.array(labels)


def calibration_images(data) -> torch.Tensor:
    x, _ = images(data)
    return x[::4]  # the first of each class's four


def spatial_map(gate: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Eq. 3 of CBAM: M_s(F) = sigmoid(BN(conv7x7([mean_c F; max_c F]))), from the spatial gate's weights."""
    maps = torch.cat((x.mean(1, keepdim=True), x.amax(1, keepdim=True)), dim=1)
    return torch.sigmoid(bn(gate.bn, F.conv2d(maps, gate.conv.weight, padding=3)))


def inputs_of(model: nn.Module, paths: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input each module at ``paths`` sees on ``x``."""
    seen = {}
    handles = [model.get_submodule(p).register_forward_pre_hook(lambda m, i, p=p: seen.__setitem__(p, i[0]))
               for p in paths]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


class FixedMap(nn.Module):
    """The spatial gate with its map fixed to ``value`` at every position: F'' = value * F'."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x):
        return x * self.value


def with_spatial(model: nn.Module, replacements: dict[str, nn.Module]) -> nn.Module:
    """A copy of ``model`` with the spatial gates of the blocks named replaced."""
    model = copy.deepcopy(model)
    paths = {b.name: b.spatial_path for b in se_blocks(model)}
    for name, module in replacements.items():
        model.set_submodule(paths[name], module)
    return model


def scores(full: torch.Tensor, ablated: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
    """top-1, agreement with the full network and mean KL(full || ablated), as seprobe ablate reports them."""
    full, ablated = full.double(), ablated.double()
    logp, logq = torch.log_softmax(full, 1), torch.log_softmax(ablated, 1)
    return {"top1": float((ablated.argmax(1).numpy() == labels).mean()),
            "agreement": float((ablated.argmax(1) == full.argmax(1)).double().mean()),
            "kl": float((logp.exp() * (logp - logq)).sum(1).clamp(min=0).mean())}


def assert_row(row, expected: dict[str, float], logits: torch.Tensor) -> None:
    assert row["top1"] == expected["top1"] and row["agreement"] == expected["agreement"], (row, expected)
    tolerance = kl_tolerance(expected["kl"], float(logits.abs().max()), classes=3)
    assert abs(row["kl"] - expected["kl"]) <= tolerance, (row["label"], row["kl"], expected["kl"])


# --- seprobe activations ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cbam_spatial_statistics_equal_the_spatial_gate_equation(runs):
    """spatial.csv: per block and class (a, b and all), M_s's mean, std, min and max over every position of every
    image, as the SpatialGate equation gives them at the spatial gate's input."""
    work, data, _ = runs
    model = trained(work, "cbam")
    blocks = se_blocks(model)
    x, labels = images(data)
    seen = inputs_of(model, [b.spatial_path for b in blocks], x)
    table = pd.read_csv(work / "cbam" / "act" / "spatial.csv")
    assert list(table.columns) == ["block", "gate", "stage", "class_index", "class_name", "images", "positions",
                                   "values", "mean", "std", "min", "max"]
    assert list(table["block"].unique()) == [b.name for b in blocks]
    assert list(table["class_name"][:3]) == ["a", "b", "all classes"]  # the classes shown, and all
    for b in blocks:
        gate = model.get_submodule(b.spatial_path)
        with torch.no_grad():
            ms = spatial_map(gate, seen[b.spatial_path]).double().numpy()  # N x 1 x H x W
        side = ms.shape[-1]
        rows = table[table["block"] == b.name].set_index("class_name")
        assert set(rows["gate"]) == {f"{b.name}.spatial"}
        for name, chosen in (("a", labels == 0), ("b", labels == 1), ("all classes", labels >= 0)):
            row, values = rows.loc[name], ms[chosen].ravel()
            assert (row["images"], row["positions"], row["values"]) == (chosen.sum(), side * side, values.size)
            assert abs(row["mean"] - values.mean()) <= mean_tolerance(1.0, values.size)
            assert abs(row["std"] - values.std(ddof=1)) <= std_tolerance(1.0, values.size)
            assert abs(row["min"] - values.min()) <= float32_error(1.0)
            assert abs(row["max"] - values.max()) <= float32_error(1.0)
        assert rows.loc["all classes", "std"] > 0.01  # a map that varies: the test bites
    # the function gives the table the command wrote
    api = seprobe.activations("se_resnet20_cifar", work / "cbam" / "run" / "final.pth", data / "test",
                              classes=["a", "b"], attention="cbam", num_classes=3, progress=False)
    pd.testing.assert_frame_equal(api.spatial, table, check_exact=False, rtol=0, atol=1e-12)
    # the mergeable statistics beside it, and the summary's section
    stats = GateStats.load(work / "cbam" / "act" / "spatial_stats.npz")
    assert stats.positions and set(stats.blocks) == {b.name for b in blocks}
    summary = (work / "cbam" / "act" / "summary.md").read_text()
    assert "## Spatial gates (CBAM)" in summary and "SE_3_3.spatial" in summary


@pytest.mark.slow
def test_cbam_channel_gates_are_read_as_se_gates(runs):
    """gates.csv of the CBAM network: the channel gate's mean per channel over each class's images, from CBAM's
    channel attention by hand, sigmoid(MLP(AvgPool F) + MLP(MaxPool F)) (Woo et al. 2018, Eq. 2)."""
    work, data, _ = runs
    model = trained(work, "cbam")
    blocks = se_blocks(model)
    x, labels = images(data)
    seen = inputs_of(model, [b.path for b in blocks], x)
    table = pd.read_csv(work / "cbam" / "act" / "gates.csv")
    for b in blocks:
        se, u = model.get_submodule(b.path), seen[b.path]

        def mlp(z, se=se):
            return F.conv2d(F.relu(F.conv2d(z, se.fc1.weight, se.fc1.bias)), se.fc2.weight, se.fc2.bias)

        with torch.no_grad():
            s = torch.sigmoid(mlp(u.mean((2, 3), keepdim=True)) + mlp(u.amax((2, 3), keepdim=True)))
        s = s.flatten(1).double().numpy()
        rows = table[table["block"] == b.name]
        for name, chosen in (("a", labels == 0), ("all classes", labels >= 0)):
            got = rows[rows["class_name"] == name].sort_values("channel")
            assert (got["count"] == chosen.sum()).all()
            np.testing.assert_allclose(got["mean"], s[chosen].mean(0), rtol=0, atol=mean_tolerance(1.0, 12))


@pytest.mark.slow
def test_eca_gates_are_read_and_nothing_spatial_is_written(runs):
    """ECA (Wang et al. 2020): s = sigmoid(conv1d_k(AvgPool u)) across the channels; no spatial gate, no spatial
    output, and the summary as without one."""
    work, data, _ = runs
    model = trained(work, "eca")
    blocks = se_blocks(model)
    assert all(b.spatial_path is None for b in blocks)
    x, labels = images(data)
    seen = inputs_of(model, [b.path for b in blocks], x)
    table = pd.read_csv(work / "eca" / "act" / "gates.csv")
    for b in blocks:
        se, u = model.get_submodule(b.path), seen[b.path]
        k = se.conv.kernel_size[0]
        with torch.no_grad():
            s = torch.sigmoid(F.conv1d(u.mean((2, 3)).unsqueeze(1), se.conv.weight, padding=k // 2)).squeeze(1)
        got = table[(table["block"] == b.name) & (table["class_name"] == "all classes")].sort_values("channel")
        np.testing.assert_allclose(got["mean"], s.double().numpy().mean(0), rtol=0, atol=mean_tolerance(1.0, 12))
    written = {p.name for p in (work / "eca" / "act").iterdir()}
    assert not {n for n in written if "spatial" in n} and {"gates.csv", "stats.npz", "summary.md"} <= written
    assert "Spatial" not in (work / "eca" / "act" / "summary.md").read_text()
    assert not GateStats.load(work / "eca" / "act" / "stats.npz").positions


# --- seprobe ablate ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cbam_spatial_ablations_equal_the_network_with_the_gate_replaced_by_hand(runs):
    """identity: the spatial gates replaced by nn.Identity; mean: M_s fixed to its mean over every position of
    the calibration images (each class's first); constant: M_s = 1/2. Top-1 and agreement exactly, KL to the
    rounding of the logits; the mean export is that network."""
    work, data, _ = runs
    model = trained(work, "cbam")
    chosen = ("SE_1_1", "SE_3_2")
    x, labels = images(data, skip_first=True)
    blocks = {b.name: b for b in se_blocks(model)}
    cal = inputs_of(model, [blocks[n].spatial_path for n in chosen], calibration_images(data))
    with torch.no_grad():
        means = {n: float(spatial_map(model.get_submodule(blocks[n].spatial_path), cal[blocks[n].spatial_path])
                          .double().mean()) for n in chosen}
        full = model(x)
        by_hand = {"identity": with_spatial(model, {n: nn.Identity() for n in chosen}),
                   "mean": with_spatial(model, {n: FixedMap(means[n]) for n in chosen}),
                   "constant": with_spatial(model, {n: FixedMap(0.5) for n in chosen})}
        logits = {mode: net(x) for mode, net in by_hand.items()}
    table = pd.read_csv(work / "cbam" / "set" / "ablation.csv")
    assert list(table["mode"]) == ["none", "identity", "mean", "constant"]
    assert (table["images"] == 9).all() and table.loc[0, "top1"] == float((full.argmax(1).numpy() == labels).mean())
    for _, row in table.iloc[1:].iterrows():
        assert row["label"] == "SE_1_1.spatial+SE_3_2.spatial" and row["blocks"] == "SE_1_1.spatial,SE_3_2.spatial"
        assert_row(row, scores(full, logits[row["mode"]], labels), full)
        # the gates' own cost: a 7x7 convolution of two maps and a BatchNorm each (2 * 49 + 2); a frozen map
        # keeps its one-parameter scale
        assert row["params_saved_exported"] == 2 * (2 * 49 + 2) - (row["mode"] != "identity") * 2
    assert any(table["agreement"] < 1) or any(table["kl"] > 1e-4)  # the ablations change the outputs
    exported = load_ablated(work / "cbam" / "mean.pth")
    for n in chosen:
        scale = exported.model.get_submodule(blocks[n].spatial_path)
        assert isinstance(scale, ChannelScale) and scale.scale.numel() == 1
        values = cal[blocks[n].spatial_path][:, :1].numel()  # calibration images x positions
        assert abs(float(scale.scale.detach()) - means[n]) <= mean_tolerance(1.0, values)
        assert exported.blocks[f"{n}.spatial"] == "spatial mean kept as a one-parameter scale module"
    with torch.no_grad():
        torch.testing.assert_close(exported.model(x), logits["mean"], rtol=1e-5, atol=1e-5)
    assert [b.spatial_path for b in se_blocks(exported.model)].count(None) == 2  # frozen: no map to read


@pytest.mark.slow
def test_every_spatial_gate_alone_and_an_identity_export(runs):
    """``--gates spatial --each-block``: one row per spatial gate (SE_s_b.spatial), each the network with that
    gate fixed by hand; the set SE_2_1 (a channel gate) + SE_3_2.spatial exported as identity removes both."""
    work, data, _ = runs
    model = trained(work, "cbam")
    x, labels = images(data)
    names = [b.name for b in se_blocks(model)]
    table = pd.read_csv(work / "cbam" / "sweep" / "ablation.csv")
    singles = table[table["group"] == "block"]
    for mode in ("identity", "constant"):
        assert list(singles[singles["mode"] == mode]["label"]) == [f"{n}.spatial" for n in names]
    with torch.no_grad():
        full = model(x)
        for _, row in singles[singles["label"].isin(["SE_1_2.spatial", "SE_3_3.spatial"])].iterrows():
            name = row["label"].removesuffix(".spatial")
            hand = with_spatial(model, {name: nn.Identity() if row["mode"] == "identity" else FixedMap(0.5)})
            assert_row(row, scores(full, hand(x), labels), full)
    blocks = {b.name: b for b in se_blocks(model)}
    sets = table[table["group"] == "set"]
    assert list(sets["label"]) == ["SE_2_1+SE_3_2.spatial"] * 2 and list(sets["blocks"])[0] == "SE_2_1,SE_3_2.spatial"
    hand = with_spatial(model, {"SE_3_2": nn.Identity()})
    hand.set_submodule(blocks["SE_2_1"].path, nn.Identity())  # s = 1: the channel gate removed
    with torch.no_grad():
        removed = hand(x)
    assert_row(sets[sets["mode"] == "identity"].iloc[0], scores(full, removed, labels), full)
    exported = load_ablated(work / "cbam" / "identity.pth")
    assert isinstance(exported.model.get_submodule(blocks["SE_3_2"].spatial_path), nn.Identity)
    assert isinstance(exported.model.get_submodule(blocks["SE_2_1"].path), nn.Identity)
    assert exported.blocks == {"SE_2_1": "removed (identity)", "SE_3_2.spatial": "spatial gate removed (identity)"}
    with torch.no_grad():
        torch.testing.assert_close(exported.model(x), removed, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_eca_constant_ablation_and_its_export(runs):
    """ECA's channel gate at s = 1/2: the network with the gate's output fixed by hand; the export folds the
    1/2 into the BatchNorm before the block."""
    work, data, _ = runs
    model = trained(work, "eca")
    x, labels = images(data)
    block = next(b for b in se_blocks(model) if b.name == "SE_2_2")
    hand = copy.deepcopy(model)
    hand.set_submodule(block.path, FixedMap(0.5))
    with torch.no_grad():
        full, halved = model(x), hand(x)
    table = pd.read_csv(work / "eca" / "abl" / "ablation.csv").set_index("mode")
    assert_row(table.loc["constant"], scores(full, halved, labels), full)
    exported = load_ablated(work / "eca" / "constant.pth")
    assert exported.blocks == {"SE_2_2": f"constant folded into {block.fold.path}"}
    with torch.no_grad():
        torch.testing.assert_close(exported.model(x), halved, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_spatial_gate_asked_of_eca_is_refused_in_one_line(runs):
    work, _, refused = runs
    for (flags, message), proc, i in zip(REFUSED, refused, range(len(REFUSED)), strict=True):
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, (flags, proc.stderr)
        assert proc.stderr.startswith(message), (flags, proc.stderr)
        assert "Traceback" not in proc.stderr and not (work / f"refused{i}").exists()


# --- the pieces ---------------------------------------------------------------------------------------------------

def test_spatial_statistics_merge_across_ranks_into_those_of_one_pass():
    """Two ranks' statistics of a map (each position a value) merged by merge_ranks (the channel gates' Chan
    merge, the extremes by minimum and maximum) equal one pass over the union."""
    g = torch.Generator().manual_seed(0)
    maps, labels = torch.rand(7, 1, 3, 4, generator=g), torch.tensor([0, 1, 1, 2, 0, 1, 2])

    def stats():
        return GateStats({"SE_1_1": (1, 0.0, 1.0)}, 3, positions=True)

    one = stats()
    one.update("SE_1_1", maps, labels)
    ranks = [stats(), stats()]
    ranks[0].update("SE_1_1", maps[:3], labels[:3])
    ranks[1].update("SE_1_1", maps[3:], labels[3:])
    shared, barrier = [None, None], threading.Barrier(2)

    class World:  # two ranks in two threads: each collective sums (all_reduce) or lists (gather) both ranks' values
        distributed = True

        def __init__(self, rank):
            self.rank = rank

        def _both(self, value):
            shared[self.rank] = value
            barrier.wait()
            both = list(shared)
            barrier.wait()
            return both

        def all_reduce(self, array):
            return sum(self._both(array))

        def gather(self, obj):
            return self._both(obj)

    threads = [threading.Thread(target=ranks[r].merge_ranks, args=(World(r),)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    values = maps.double().flatten(1).numpy()
    for merged in ranks:
        b, o = merged.blocks["SE_1_1"], one.blocks["SE_1_1"]
        np.testing.assert_array_equal(b.count, o.count)
        np.testing.assert_array_equal(b.count, [24, 36, 24, 84])  # images x 12 positions, per class and all
        np.testing.assert_array_equal(b.hist, o.hist)
        np.testing.assert_allclose(b.mean, o.mean, rtol=0, atol=1e-15)
        np.testing.assert_allclose(b.m2, o.m2, rtol=1e-13)
        for c in range(3):
            np.testing.assert_array_equal([b.minimum[c, 0], b.maximum[c, 0]],
                                          [values[labels == c].min(), values[labels == c].max()])
        np.testing.assert_array_equal([b.minimum[3, 0], b.maximum[3, 0]], [values.min(), values.max()])
        np.testing.assert_allclose(b.std()[3, 0], values.std(ddof=1), rtol=1e-13)


def test_hooks_and_export_of_a_constant_spatial_gate_agree():
    """The constant mode of GateHooks (M_s = 1/2 at every position) and its export (a one-parameter scale) are the
    same network, which is the network with the map fixed by hand; a channel gate's constant folds (1/2)."""
    model = seprobe.build_model("se_resnet20_cifar", attention="cbam").eval()
    blocks = se_blocks(model)
    x = torch.randn(2, 3, 16, 16)
    modes = {"SE_1_2.spatial": "constant", "SE_2_1": "constant"}
    with GateHooks(model, blocks) as hooks, torch.no_grad():
        hooks.replace(modes)
        hooked = model(x)
    hand = with_spatial(model, {"SE_1_2": FixedMap(0.5)})
    hand.set_submodule(blocks[3].path, FixedMap(0.5))
    export = ablated_copy(model, blocks, modes)
    with torch.no_grad():
        torch.testing.assert_close(hooked, hand(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(export.model(x), hooked, rtol=1e-5, atol=1e-5)
    assert export.how == {"SE_1_2.spatial": "spatial constant kept as a one-parameter scale module",
                          "SE_2_1": "constant folded into layer2.0.bn2"}


def test_the_plan_names_and_sweeps_the_spatial_gates():
    """Gate names in the plan: SE_s_b the channel gate, SE_s_b.spatial CBAM's spatial gate; ``gates`` chooses the
    sweeps' gates; a name or a gate set the network lacks, and a gate set with no sweep, are refused in one line."""
    from seprobe.probe.ablation_plan import AblationPlan, cumulative_order

    from .helpers import one_line

    cbam = se_blocks(seprobe.build_model("se_resnet20_cifar", device="meta", attention="cbam"))
    eca = se_blocks(seprobe.build_model("se_resnet20_cifar", device="meta", attention="eca"))
    channel = [b.name for b in cbam]
    spatial = [f"{n}.spatial" for n in channel]
    assert [a.label for a in AblationPlan().evaluations(cbam, ["identity"])] == channel  # as without CBAM
    assert [a.label for a in AblationPlan(gates="spatial").evaluations(cbam, ["constant"])] == spatial
    every = AblationPlan(gates="all", each_block=False, per_stage=True).evaluations(cbam, ["identity"])
    assert [a.label for a in every] == ["stage 1 (all gates)", "stage 2 (all gates)", "stage 3 (all gates)"]
    assert every[0].blocks == ("SE_1_1", "SE_1_1.spatial", "SE_1_2", "SE_1_2.spatial", "SE_1_3", "SE_1_3.spatial")
    stage = AblationPlan(gates="spatial", stage=3).evaluations(cbam, ["mean"])
    assert [(a.label, a.blocks) for a in stage] == [("stage 3 (spatial)", tuple(spatial[6:]))]
    mixed = AblationPlan(blocks=["SE_3_1.spatial", "SE_1_2"]).evaluations(cbam, ["identity"])
    assert [(a.label, a.blocks) for a in mixed] == [("SE_1_2+SE_3_1.spatial", ("SE_1_2", "SE_3_1.spatial"))]
    assert cumulative_order(cbam, None, "identity", "reverse", "spatial") == spatial[::-1]
    for plan, blocks, argument, message in (
            (AblationPlan(blocks=["SE_1_1.spatial"]), eca, "blocks",
             "invalid block 'SE_1_1.spatial' in blocks: SE_1_1 has no spatial gate"),
            (AblationPlan(cumulative=["SE_1_1", "SE_9_1.spatial"]), cbam, "cumulative",
             "unknown block 'SE_9_1.spatial'"),
            (AblationPlan(gates="all"), eca, "gates", "invalid gates 'all': no block of this network has a spatial")):
        with pytest.raises(seprobe.SeprobeError) as e:
            plan.check(blocks)
        assert one_line(e).startswith(message) and e.value.argument == argument
    with pytest.raises(seprobe.SeprobeError, match="gates 'spatial' chooses the gates of the sweeps") as e:
        AblationPlan(gates="spatial", blocks=["SE_1_1.spatial"])
    assert one_line(e) and e.value.argument == "gates"
    with pytest.raises(seprobe.SeprobeError, match="unknown gate set 'both'; valid: 'channel', 'spatial', 'all'"):
        AblationPlan(gates="both")
