"""Excitation collection on synthetic data whose gate values are known by construction; real data when present."""


import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

import seprobe
from seprobe import SeprobeError, SqueezeExcite
from seprobe.data.images import Preprocessing, ViewDataset, discover, select, to_rgb
from seprobe.models.factory import Network
from seprobe.probe.activations import collect, specificity_table
from seprobe.probe.evaluation import Loader
from seprobe.probe.gate_stats import GateStats
from seprobe.report.activations import notes, sampled_channels, tidy_table, write_outputs

from .conftest import SHARED
from .helpers import ROOT, run_seprobe, run_seprobe_many
from .rounding import m2_tolerance, mean_tolerance

# class index -> solid RGB colours of its images; wnids of ImageNet classes 1 (goldfish) and 254 (pug)
COLOURS = {1: [(10, 200, 30), (60, 180, 90), (250, 0, 128)], 254: [(255, 255, 255), (0, 0, 0)]}
WNIDS = {1: "n01443537", 254: "n02110958"}


class IdentitySE(nn.Module):
    """An SE block on the raw image whose gate is sigmoid(channel mean), exactly: W1 = W2 = I, no bias."""

    def __init__(self):
        super().__init__()
        self.se = SqueezeExcite(3, hidden_channels=3)
        self.se.name = "SE_2_1"
        with torch.no_grad():
            for fc in (self.se.fc1, self.se.fc2):
                fc.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
                fc.bias.zero_()
        self.head = nn.Linear(3, 1000)

    def forward(self, x):
        return self.head(self.se(x).mean((2, 3)))


def expected_gate(rgb):
    return 1 / (1 + np.exp(-np.asarray(rgb) / 255.0))  # pixels / 255 with mean 0, std 1: all positive


@pytest.fixture
def solid_images(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    for cls, colours in COLOURS.items():
        for j, rgb in enumerate(colours):
            Image.new("RGB", (40, 30), rgb).save(root / f"{WNIDS[cls]}_img{j}.png")
    return root


def loaded():
    return Network(IdentitySE().eval(), "identity-se", Preprocessing(resize=16, crop=16, mean=(0, 0, 0), std=(1, 1, 1)))


def test_gate_statistics_equal_the_values_known_by_construction(solid_images):
    run = collect(loaded(), discover(solid_images), Loader(2), progress=False)
    b = run.stats.blocks["SE_2_1"]
    for cls, colours in COLOURS.items():
        values = expected_gate(colours)                      # images x channels
        assert b.count[cls] == len(colours)
        np.testing.assert_allclose(b.mean[cls], values.mean(0), atol=1e-6)
        np.testing.assert_allclose(b.std()[cls], values.std(0, ddof=1), atol=1e-6)
    everything = expected_gate([c for cs in COLOURS.values() for c in cs])
    np.testing.assert_allclose(b.mean[run.stats.all_group], everything.mean(0), atol=1e-6)
    np.testing.assert_allclose(b.std()[run.stats.all_group], everything.std(0, ddof=1), atol=1e-6)
    # histogram: 5 images x 3 channels, each value in its 0.02-wide bin
    hist = b.hist[run.stats.all_group]
    assert hist.sum() == 15
    expected_bins = np.bincount((np.floor(everything.flatten() / 0.02) + 1).astype(int), minlength=52)
    np.testing.assert_array_equal(hist, expected_bins)
    assert run.stats.fraction_above("SE_2_1", 0.9) == pytest.approx((everything >= 0.9).mean())


def test_class_specificity_is_the_correlation_ratio(solid_images):
    run = collect(loaded(), discover(solid_images), Loader(4), progress=False)
    values = {cls: expected_gate(c) for cls, c in COLOURS.items()}
    everything = np.concatenate(list(values.values()))
    between = sum(len(v) * ((v.mean(0) - everything.mean(0)) ** 2).sum() for v in values.values())
    total = ((everything - everything.mean(0)) ** 2).sum()
    assert run.stats.class_specificity("SE_2_1") == pytest.approx(between / total, rel=1e-6)
    per_channel = sum(len(v) * (v.mean(0) - everything.mean(0)) ** 2 for v in values.values()) / len(everything)
    assert run.stats.between_class_std("SE_2_1") == pytest.approx(np.sqrt(per_channel).mean(), rel=1e-6)


def test_shards_merge_into_the_union(solid_images, tmp_path):
    images = discover(solid_images)
    full = collect(loaded(), images, Loader(3), progress=False).stats
    half = len(images.paths) // 2
    shards = [type(images)(images.paths[s], images.labels[s], images.class_names, True, images.layout)
              for s in (slice(0, half), slice(half, None))]
    a, b = (collect(loaded(), s, Loader(2), progress=False).stats for s in shards)
    a.save(tmp_path / "a.npz")
    merged = GateStats.load(tmp_path / "a.npz").merge(b)
    for name, f in full.blocks.items():
        m = merged.blocks[name]
        np.testing.assert_array_equal(m.count, f.count)
        np.testing.assert_array_equal(m.hist, f.hist)
        # batches of 2 and of 3: float32 gates (<= 1) a few roundings apart (other kernels), carried through the
        # float64 moments: the Chan merge may differ from one pass by that, never by more (tests/rounding.py)
        n = f.count[:, None]
        assert (np.abs(m.mean - f.mean) <= np.vectorize(mean_tolerance)(1.0, n)).all()
        assert (np.abs(m.m2 - f.m2) <= np.vectorize(m2_tolerance)(f.m2, 1.0, n)).all()


def test_memory_is_fixed_by_blocks_classes_channels():
    stats = GateStats({"SE_2_1": (8, 0.0, 1.0)}, num_classes=1000)
    sizes = [a.nbytes for a in vars(stats.blocks["SE_2_1"]).values() if isinstance(a, np.ndarray)]
    for _ in range(20):
        stats.update("SE_2_1", torch.rand(64, 8), torch.randint(0, 1000, (64,)))
    assert [a.nbytes for a in vars(stats.blocks["SE_2_1"]).values() if isinstance(a, np.ndarray)] == sizes
    assert stats.blocks["SE_2_1"].count[1000] == 20 * 64


def test_nosqueeze_gates_are_averaged_over_positions():
    stats = GateStats({"b": (2, 0.0, 1.0)}, num_classes=3)
    per_position = torch.tensor([[[[0.2, 0.4]], [[0.6, 1.0]]]])  # 1 image, 2 channels, 1 x 2 positions
    stats.update("b", per_position, torch.tensor([2]))
    np.testing.assert_allclose(stats.blocks["b"].mean[2], [0.3, 0.8])


def test_corrupt_images_are_skipped_counted_and_listed(solid_images):
    (solid_images / "n01443537_broken.png").write_bytes(b"not an image at all")
    run = collect(loaded(), discover(solid_images), Loader(2), progress=False)
    assert len(run.failed) == 1 and "n01443537_broken.png" in run.failed[0]
    assert run.stats.blocks["SE_2_1"].count[1] == 3 and any("unreadable" in n for n in notes(run))


def test_views_multiply_the_samples_and_keep_accuracy_on_the_first(solid_images):
    run = collect(loaded(), discover(solid_images), Loader(4), views=3, progress=False)
    assert run.stats.blocks["SE_2_1"].count[1] == 9 and run.evaluated == 5
    assert any("3 views" in n for n in notes(run))


def test_a_view_leaves_the_callers_random_state_alone(tmp_path):
    """A view is drawn under its own seed, as before; the caller's next draw is the one it had without the view."""
    (tmp_path / "flat").mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "flat" / f"{WNIDS[1]}_noise.png")
    views = ViewDataset(discover(tmp_path / "flat"), Preprocessing(resize=24, crop=16), views=3, seed=5)
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    view = views[2][0]
    assert torch.equal(torch.rand(1), expected)
    assert torch.equal(views[2][0], view) and not torch.equal(views[1][0], view)
    torch.manual_seed(5 * 1_000_003 + 2)  # the seed of item 2: the views of earlier runs
    with Image.open(views.images.paths[0]) as im:
        assert torch.equal(views.view_t(to_rgb(im)), view)


def test_data_layouts(tmp_path, solid_images):
    folders = tmp_path / "folders"
    for cls, wnid in WNIDS.items():
        (folders / wnid).mkdir(parents=True)
        Image.new("RGB", (8, 8), (cls, 0, 0)).save(folders / wnid / "a.JPEG")
    d = discover(folders)
    assert d.imagenet and d.labels == (1, 254) and d.layout == "wnid class folders"
    other = tmp_path / "other"
    for name in ("cats", "dogs"):
        (other / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(other / name / "x.png")
    d = discover(other)
    assert not d.imagenet and d.class_names == ("cats", "dogs") and d.labels == (0, 1)
    flat = tmp_path / "val"
    flat.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8)).save(flat / f"ILSVRC2012_val_0000000{i + 1}.JPEG")
    (tmp_path / "val.txt").write_text("ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000002.JPEG n01443537\n")
    assert discover(flat, tmp_path / "val.txt").labels == (65, 1)
    (tmp_path / "synsets.txt").write_text("n01443537\nn02110958\nn09246464\n")
    assert discover(flat, tmp_path / "synsets.txt").labels == (1, 254, 972)
    (tmp_path / "devkit.txt").write_text("490\n361\n171\n")
    with pytest.raises(SeprobeError, match="devkit's ILSVRC2012_ID"):
        discover(flat, tmp_path / "devkit.txt")
    assert select(discover(solid_images), 1).labels == (1, 254)


def test_outputs_are_written(solid_images, tmp_path):
    run = collect(loaded(), discover(solid_images), Loader(4), views=2, progress=False)
    spec = specificity_table(run, [1, 254])
    paths = write_outputs(run, tmp_path / "out", [1, 254], ["SE_2_1"], 50, spec)
    names = {p.name for p in paths}
    assert {"gates.csv", "gates.parquet", "specificity.csv", "stats.npz", "summary.md", "fig6_class_means.png",
            "fig6_class_means.svg", "fig7_goldfish.png", "fig7_pug.svg"} <= names
    table = pd.read_parquet(tmp_path / "out" / "gates.parquet")
    assert set(table["class_name"]) == {"goldfish", "pug", "all classes"} and len(table) == 9
    pd.testing.assert_frame_equal(table, tidy_table(run, [1, 254]), check_dtype=False)
    assert not list((tmp_path / "out").glob(".*.tmp"))
    again = write_outputs(run, tmp_path / "again", [1, 254], ["SE_2_1"], 50, spec)
    figures = sorted(p.name for p in again if p.suffix in (".png", ".svg"))
    assert len(figures) == 6 and all((tmp_path / "out" / f).read_bytes() == (tmp_path / "again" / f).read_bytes()
                                     for f in figures), "the same figure must give the same bytes"


def test_sampled_channels_are_uniform_and_sorted():
    idx = sampled_channels(2048, 50)
    assert len(set(idx)) == 50 and list(idx) == sorted(idx) and idx.max() < 2048
    assert list(sampled_channels(16, 50)) == list(range(16))


def _cli(*args):
    return run_seprobe(*args, cwd=ROOT)


@pytest.mark.slow
def test_cli_errors_are_one_line(solid_images):
    cases = [(["activations", "--model", "se_resnet18", "--data", str(solid_images)], "missing --weights"),
             (["activations", "--model", "se_resnet18", "--weights", "random", "--data", str(solid_images),
               "--classes", "plane"], "'plane' is ambiguous; valid: one of 404 n02690373 airliner"),
             (["activations", "--model", "se_resnet18", "--weights", "random", "--data", str(solid_images),
               "--classes", "cliff"], "no image of class 'cliff'"),
             (["activations", "--model", "resnet18", "--weights", "random", "--data", str(solid_images),
               "--classes", "goldfish"], "resnet18 has no SE block"),
             (["evaluate", "--model", "timm:not_a_model", "--weights", "random", "--data", str(solid_images)],
              "unknown timm model 'not_a_model'"),
             (["activations", "--model", "timm:seresnet50", "--weights", "random", "--data", str(solid_images),
               "--classes", "goldfish", "--reduction", "8"], "model knobs (reduction) apply to seprobe models"),
             (["activations", "--model", "se_resnet18", "--weights", "random", "--data", str(solid_images),
               "--classes", "goldfish", "--blocks", "SE_9_9"], "unknown block 'SE_9_9'; valid: SE_2_1")]
    for (args, message), proc in zip(cases, run_seprobe_many([(args, ROOT) for args, _ in cases]), strict=True):
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("seprobe: error:")]
        assert len(errors) == 1 and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_cli_random_weights_warn_and_run(solid_images, tmp_path):
    proc = _cli("activations", "--model", "se_resnet18", "--weights", "random", "--data", str(solid_images),
                "--classes", "goldfish,pug", "--stage", "5", "--out", str(tmp_path / "o"), "--batch-size", "5",
                "--reduction", "8", "--squeeze", "max")
    assert proc.returncode == 0, proc.stderr
    assert "random" in proc.stderr and "mean nothing" in proc.stderr
    assert "SE_5_2" in proc.stdout and (tmp_path / "o" / "fig6_class_means.png").is_file()
    spec = pd.read_csv(tmp_path / "o" / "specificity.csv")
    assert list(spec["channels"]) == [64, 64, 128, 128, 256, 256, 512, 512]  # se_resnet18: every block counted
    # the Python API with the same values writes the same tables (random weights are seeded: the same network)
    with pytest.warns(UserWarning, match="mean nothing"):  # the same warning the command printed
        seprobe.activations("se_resnet18", "random", solid_images, classes=["goldfish", "pug"], stage=[5],
                            loader=Loader(batch_size=5), out=tmp_path / "api", progress=False, reduction=8,
                            squeeze="max")
    for table in ("specificity.csv", "gates.csv"):
        # gates are float32 in (0, 1), from another thread count's kernels: each moves by a few units of 2^-23,
        # and so do the means and standard deviations of three of them (16 units allowed)
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "api" / table), pd.read_csv(tmp_path / "o" / table),
                                      check_exact=False, rtol=0, atol=16 * 2.0 ** -23)


WEIGHTS = SHARED / "weights" / "tf_mobilenetv3_small_100.pth"
SAMPLES = SHARED / "data" / "imagenet-samples"
needs_shared = pytest.mark.skipif(not (WEIGHTS.is_file() and SAMPLES.is_dir()),
                                  reason="needs ../shared/weights and ../shared/data/imagenet-samples (real data)")


@pytest.mark.slow
@needs_shared
def test_real_mobilenetv3_top1_matches_its_provenance():
    """shared/weights/README.md measured top-1 0.753, top-5 0.935 on the 1000 sample images."""
    pytest.importorskip("timm")
    proc = _cli("evaluate", "--model", "timm:tf_mobilenetv3_small_100", "--weights", str(WEIGHTS),
                "--data", str(SAMPLES))
    assert proc.returncode == 0, proc.stderr
    top1 = float(proc.stdout.split("top-1 ")[1].split(",")[0])
    top5 = float(proc.stdout.split("top-5 ")[1].split(" ")[0])
    assert abs(top1 - 0.753) <= 0.005 and abs(top5 - 0.935) <= 0.005


def test_seprobe_models_are_preprocessed_at_their_own_size():
    from seprobe.models.factory import load_model

    pre = load_model("se_inception_resnet_v2", "random").preprocessing
    assert (pre.resize, pre.crop) == (342, 299)  # 299 / 0.875, as ImageNet's 224 / 0.875 = 256
    pre = load_model("se_resnet18", "random").preprocessing
    assert (pre.resize, pre.crop) == (256, 224)


def test_foreign_models_load_from_files(tmp_path):
    """timm: and torchvision: models take a checkpoint file, read with weights_only, strictly."""
    import torchvision

    from seprobe.models.factory import load_model

    reference = torchvision.models.mobilenet_v3_small()
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "tv.pth")
    loaded = load_model("torchvision:mobilenet_v3_small", str(tmp_path / "tv.pth"))
    torch.testing.assert_close(loaded.model.classifier[3].weight, reference.classifier[3].weight)
    assert not loaded.random and loaded.preprocessing.crop == 224
    timm = pytest.importorskip("timm")
    reference = timm.create_model("tf_mobilenetv3_small_100")
    torch.save(reference.state_dict(), tmp_path / "timm.pth")
    loaded = load_model("timm:tf_mobilenetv3_small_100", str(tmp_path / "timm.pth"))
    torch.testing.assert_close(loaded.model.conv_stem.weight, reference.conv_stem.weight)
    assert loaded.preprocessing.mean == (0.5, 0.5, 0.5) and loaded.preprocessing.resize == 256  # timm's own config
    with pytest.raises(SeprobeError, match="checkpoint does not fit the model: missing keys"):
        load_model("timm:tf_mobilenetv3_small_100", str(tmp_path / "tv.pth"))


def test_seprobe_models_map_to_timm_pretrained_names():
    """--weights timm for a seprobe model downloads the timm model whose layout it reproduces."""
    from seprobe import build_model
    from seprobe.models.checkpoints import timm_equivalent as _timm_equivalent

    assert _timm_equivalent("se_resnet50", build_model("se_resnet50", device="meta")) == "legacy_seresnet50"
    assert _timm_equivalent("se_resnet50", build_model("se_resnet50", stride_at="3x3", device="meta")) == "seresnet50"
    assert _timm_equivalent("se_resnext50_32x4d", build_model("se_resnext50_32x4d", device="meta")) == \
        "legacy_seresnext50_32x4d"
    with pytest.raises(SeprobeError, match="no weights for se_resnet50 with stride_at=1x1, stem_pool=pad"):
        _timm_equivalent("se_resnet50", build_model("se_resnet50", stem_pool="pad", device="meta"))


@pytest.mark.parametrize("threshold,low,high", [(0.9, 0.0, 1.0), (0.5, 0.0, 1.0), (0.0, -1.0, 1.0), (2.0, 0.0, 4.0)])
def test_share_above_a_threshold_on_gates_spanning_it(threshold, low, high):
    """Gates on both sides of the threshold (but off the bin edges): the share is the plain count's."""
    width = (high - low) / 50
    # half-bin offsets, never on an edge; per class (4 values each) 2 below and 2 above the threshold
    offsets = np.array([-7.5, 0.5, -0.5, 1.5, -2.5, 4.5, -11.5, 9.5]) * width
    values = threshold + offsets
    stats = GateStats({"b": (2, low, high)}, num_classes=2)
    v = torch.tensor(values.reshape(4, 2))
    labels = torch.tensor([0, 0, 1, 1])
    stats.update("b", v, labels)
    assert stats.fraction_above("b", threshold) == pytest.approx((values >= threshold).mean()) == 0.5
    assert stats.fraction_above("b", threshold, group=0) == pytest.approx((values[:4] >= threshold).mean()) == 0.5
    assert stats.fraction_above("b", threshold, group=1) == pytest.approx((values[4:] >= threshold).mean()) == 0.5
    above_next = threshold + 2 * width  # two bins higher: 2 of the 8 values
    assert stats.fraction_above("b", above_next) == pytest.approx((values >= above_next).mean()) == 2 / 8


def test_specificity_table_reports_the_share_above_0_9(solid_images):
    """IdentitySE's gates are sigmoid(pixel / 255): white (1.0 -> 0.731) and the rest stay below 0.9, so the
    table's share must follow a model whose gates straddle 0.9: scale W1 so that sigmoid(3 * value) is the gate."""
    model = loaded()
    with torch.no_grad():
        model.model.se.fc1.weight.mul_(3.0)
    run = collect(model, discover(solid_images), Loader(5), progress=False)
    everything = 1 / (1 + np.exp(-3 * np.asarray([c for cs in COLOURS.values() for c in cs]) / 255.0))
    share = (everything >= 0.9).mean()
    assert 0 < share < 1
    spec = specificity_table(run, [1, 254]).set_index("block")
    assert spec.loc["SE_2_1", "share_above_0.9"] == pytest.approx(share)


def test_gates_at_the_top_of_the_range_are_in_the_last_bin():
    """A saturated hard-sigmoid gives exactly 1.0: the last bin, so it counts as above 0.9 (not as overflow)."""
    stats = GateStats({"b": (4, 0.0, 1.0)}, num_classes=1)
    stats.update("b", torch.tensor([[1.0, 1.0, 0.2, 1.5]], dtype=torch.float64), torch.tensor([0]))
    hist = stats.blocks["b"].hist[stats.all_group]
    assert hist[50] == 2 and hist[51] == 1 and hist[11] == 1  # bin 10 (0.20-0.22) is index 11; 1.5 overflows
    assert stats.fraction_above("b", 0.9) == 3 / 4


def test_preprocessing_overrides_reach_the_gates(tmp_path):
    """A 40x40 image whose 8-pixel border is black around a solid centre: crop 24 of resize 40 keeps only the
    centre, and mean/std normalise it, so the gate is sigmoid((v / 255 - mean) / std) exactly."""
    root = tmp_path / "flat"
    root.mkdir()
    image = Image.new("RGB", (40, 40), (0, 0, 0))
    image.paste((200, 100, 50), (8, 8, 32, 32))
    image.save(root / f"{WNIDS[1]}_framed.png")
    mean, std = (0.1, 0.05, 0.02), (0.25, 0.5, 1.0)  # every normalised value stays > 0 (W1 = I, then a ReLU)
    model = Network(IdentitySE().eval(), "identity-se",
                    Preprocessing(resize=40, crop=24, mean=mean, std=std, interpolation="nearest"))
    run = collect(model, discover(root), Loader(1), progress=False)
    z = (np.array([200, 100, 50]) / 255 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(run.stats.blocks["SE_2_1"].mean[1], 1 / (1 + np.exp(-z)), atol=1e-6)
    full = Network(IdentitySE().eval(), "identity-se",
                   Preprocessing(resize=40, crop=40, mean=mean, std=std, interpolation="nearest"))
    seen = collect(full, discover(root), Loader(1), progress=False).stats.blocks["SE_2_1"].mean[1]
    framed = (np.array([200, 100, 50]) / 255 * 24 * 24 / 1600 - np.array(mean)) / np.array(std)  # border included
    np.testing.assert_allclose(seen, 1 / (1 + np.exp(-framed)), atol=1e-6)


@pytest.mark.slow
@needs_shared
def test_real_gate_statistics_equal_a_hooked_timm_model():
    """Gate statistics of the real MobileNetV3 weights on 16 real images, against timm's own model, timm's own
    eval transform and plain forward hooks, with numpy's mean, standard deviation and share above 0.9."""
    timm = pytest.importorskip("timm")
    from seprobe.models.factory import load_model

    images = discover(SAMPLES)
    picked = slice(0, 1000, 63)  # 16 images of 16 classes
    subset = type(images)(images.paths[picked], images.labels[picked], images.class_names, True, images.layout)
    run = collect(load_model("timm:tf_mobilenetv3_small_100", str(WEIGHTS)), subset, Loader(8), progress=False)

    reference = timm.create_model("tf_mobilenetv3_small_100")
    reference.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    reference.eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=reference))
    values = {g.name: [] for g in run.blocks}
    for g in run.blocks:
        reference.get_submodule(g.gate_path).register_forward_hook(
            lambda m, i, o, name=g.name: values[name].append(o.flatten(1).double().numpy()))
    with torch.inference_mode():
        reference(torch.stack([transform(Image.open(p).convert("RGB")) for p in subset.paths]))
    assert len(run.blocks) == 9
    spec = specificity_table(run, [subset.labels[0]]).set_index("block")
    for g in run.blocks:
        v = np.concatenate(values[g.name])  # images x channels
        b = run.stats.blocks[g.name]
        assert b.count[run.stats.all_group] == 16
        np.testing.assert_allclose(b.mean[run.stats.all_group], v.mean(0), atol=1e-5)
        np.testing.assert_allclose(b.std()[run.stats.all_group], v.std(0, ddof=1), atol=1e-5)
        assert spec.loc[g.name, "share_above_0.9"] == pytest.approx((v >= 0.9).mean(), abs=1e-3)
        assert spec.loc[g.name, "mean_gate"] == pytest.approx(v.mean(), abs=1e-5)
