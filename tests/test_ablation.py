"""seprobe ablate: replacement of gates, calibration, paired bootstrap, cost, prefix reuse, export and folding.

The references are computed independently: the SE block's Eq. 2-4 written out by hand on a tiny network with
gates known by construction, closed-form counts, the normal approximation of a bootstrap interval, and the
original network's own forward pass for the exported (folded) networks.
"""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from seprobe.data.images import Preprocessing, ViewDataset, discover
from seprobe.errors import SeprobeError
from seprobe.models.ablated import load_ablated
from seprobe.models.blocks import SEBlockInfo
from seprobe.models.factory import Network
from seprobe.models.se_block import SqueezeExcite
from seprobe.probe.ablation import ablate, export_blocks
from seprobe.probe.ablation_plan import Ablation, AblationPlan, CalibrationSource, cumulative_order
from seprobe.probe.bootstrap import paired_bootstrap
from seprobe.probe.evaluation import Loader
from seprobe.report.ablation import calibration_text, write_outputs

from .helpers import write_class_folders

SIDE = 12
CLASSES = ("a", "b", "c")


class TinySE(nn.Module):
    """conv -> SE_2_1 -> conv -> SE_3_1 -> global pool -> linear: small enough to write out by hand."""

    def __init__(self, channels=4, hidden=2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1)
        self.se1 = SqueezeExcite(channels, hidden_channels=hidden)
        self.se1.name = "SE_2_1"
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.se2 = SqueezeExcite(channels, hidden_channels=hidden)
        self.se2.name = "SE_3_1"
        self.fc = nn.Linear(channels, len(CLASSES))

    def forward(self, x):
        u = self.se1(self.conv1(x))
        return self.fc(self.se2(self.conv2(u)).mean((2, 3)))


def gate_of(se: SqueezeExcite, u: torch.Tensor) -> torch.Tensor:
    """Eq. 2-3 by hand: s = sigmoid(W2 relu(W1 z) + b), z the channel means."""
    z = u.mean((2, 3))
    h = torch.relu(z @ se.fc1.weight[:, :, 0, 0].T + se.fc1.bias)
    return torch.sigmoid(h @ se.fc2.weight[:, :, 0, 0].T + se.fc2.bias)


def reference_logits(m: TinySE, x: torch.Tensor, s1=None, s2=None) -> torch.Tensor:
    """Eq. 4 with the gates given (``None``: the network's own)."""
    u1 = m.conv1(x)
    u1 = u1 * (gate_of(m.se1, u1) if s1 is None else s1)[:, :, None, None]
    u2 = m.conv2(u1)
    u2 = u2 * (gate_of(m.se2, u2) if s2 is None else s2)[:, :, None, None]
    return m.fc(u2.mean((2, 3)))


def kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    lp, lq = torch.log_softmax(p_logits.double(), 1), torch.log_softmax(q_logits.double(), 1)
    return float((lp.exp() * (lp - lq)).sum(1).mean())


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three class folders of four random images each (calibration_per_class=1 takes the first of each)."""
    return write_class_folders(tmp_path_factory.mktemp("ablation-data"), dict.fromkeys(CLASSES, 4), SIDE)


def tiny(constant_first: bool) -> TinySE:
    torch.manual_seed(1)
    m = TinySE().eval()
    with torch.no_grad():  # a gate that moves with the input: ReLU open, large weights
        m.se2.fc1.weight.normal_(0, 2)
        m.se2.fc1.bias.fill_(1.0)
        m.se2.fc2.weight.normal_(0, 2)
    if constant_first:  # s = sigmoid(b) whatever the input
        with torch.no_grad():
            m.se1.fc2.weight.zero_()
            m.se1.fc2.bias.copy_(torch.tensor([-1.0, 0.5, 2.0, -0.3]))
    return m


def loaded(model: nn.Module) -> Network:
    return Network(model, "tiny", Preprocessing(resize=SIDE, crop=SIDE))


def per_class(n: int) -> CalibrationSource:
    return CalibrationSource(calibration_per_class=n)


def tensors(images, pre):
    ds = ViewDataset(images, pre)
    return torch.stack([ds[i][0] for i in range(len(ds))]), torch.tensor(images.labels)


def split(images):
    """The first image (path order) of every class is calibration, the rest evaluation: written independently."""
    first = {}
    for i, lab in enumerate(images.labels):
        first.setdefault(lab, i)
    cal = sorted(first.values())
    return cal, [i for i in range(len(images.paths)) if i not in cal]


def test_constant_gate_mean_is_lossless_and_identity_a_known_rescaling(folder):
    m = tiny(constant_first=True)
    images = discover(folder)
    result = ablate(loaded(m), images, AblationPlan(blocks=["SE_2_1"], each_block=False), Loader(4),
                    calibration=per_class(1), progress=False, bootstrap=200)
    x, labels = tensors(images, loaded(m).preprocessing)
    _, ev = split(images)
    with torch.no_grad():
        full = reference_logits(m, x[ev])
        identity = reference_logits(m, x[ev], s1=torch.ones(1, 4))
    t = result.table.set_index(["label", "mode"])
    mean_row, id_row = t.loc[("SE_2_1", "mean")], t.loc[("SE_2_1", "identity")]
    assert mean_row.kl == 0 and mean_row.agreement == 1 and mean_row.top1_change == 0
    assert result.calibration.images == 3 and "disjoint" in calibration_text(result)
    assert torch.equal(result.calibration.means["SE_2_1"], torch.sigmoid(m.se1.fc2.bias.detach()))
    assert id_row.kl == pytest.approx(kl(full, identity), rel=1e-6, abs=1e-9)
    truth = labels[ev]
    assert id_row.top1 == pytest.approx(float((identity.argmax(1) == truth).float().mean()))
    assert id_row.agreement == pytest.approx(float((identity.argmax(1) == full.argmax(1)).float().mean()))
    assert t.loc[("full network", "none")].top1 == pytest.approx(float((full.argmax(1) == truth).float().mean()))


def test_input_dependent_gate_mean_is_lossy_by_the_calibration_mean(folder):
    m = tiny(constant_first=False)
    images = discover(folder)
    result = ablate(loaded(m), images, AblationPlan(modes=["mean"]), calibration=per_class(1), progress=False,
                    bootstrap=200)
    x, _ = tensors(images, loaded(m).preprocessing)
    cal, ev = split(images)
    with torch.no_grad():
        u2 = m.conv2(m.se1(m.conv1(x[cal])))
        mean2 = gate_of(m.se2, u2).double().mean(0).float()
        full = reference_logits(m, x[ev])
        ablated = reference_logits(m, x[ev], s2=mean2[None])
    row = result.table.set_index(["label", "mode"]).loc[("SE_3_1", "mean")]
    assert torch.allclose(result.calibration.means["SE_3_1"], mean2, atol=1e-7)
    assert row.kl > 1e-6
    assert row.kl == pytest.approx(kl(full, ablated), rel=1e-5)


class ConstantLogits(nn.Module):
    """Logits that ignore the image: u = 1 everywhere, a constant gate s = sigmoid(0) = 1/2 (SE_2_1), and
    logit_j = w_j * s_0 + b_j over 8 classes. Full network (s_0 = 1/2): class 7 first (10), classes 0-2 next
    (5 - 5 + 0.1 k), classes 3-6 last (-2); identity (s_0 = 1): 7 (10), 3-6 (-2), then 0-2 (-5 + 0.1 k)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.se = SqueezeExcite(4, hidden_channels=2)
        self.se.name = "SE_2_1"
        self.fc = nn.Linear(4, 8)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.fill_(1.0)
            self.se.fc2.weight.zero_()
            self.se.fc2.bias.zero_()
            self.fc.weight.zero_()
            self.fc.weight[:3, 0] = -10.0
            self.fc.bias.copy_(torch.tensor([5.0, 5.1, 5.2, -2, -2, -2, -2, 10]))

    def forward(self, x):
        return self.fc(self.se(self.conv(x)).mean((2, 3)))


def test_top5_interval_is_top5s_own(tmp_path):
    """Eight class folders, images in the first three only (labels 0-2, never the top-1 class 7): identity on
    SE_2_1 leaves every image's top-1 outcome (wrong) and takes every image out of the top 5. The paired
    differences are constant, 0 for top-1 and -1 for top-5, and a bootstrap of a constant is that constant:
    intervals [0, 0] and [-1, -1]."""
    for k in range(8):
        (tmp_path / f"class{k}").mkdir()
        for i in range(2 if k < 3 else 0):
            Image.new("RGB", (SIDE, SIDE), (40 * k, 20 * i, 90)).save(tmp_path / f"class{k}" / f"{i}.png")
    images = discover(tmp_path)
    assert len(images.class_names) == 8 and sorted(images.labels) == [0, 0, 1, 1, 2, 2]
    result = ablate(loaded(ConstantLogits().eval()), images, AblationPlan(modes=["identity"]), progress=False,
                    bootstrap=200)
    row = result.table.set_index(["label", "mode"]).loc[("SE_2_1", "identity")]
    full = result.table.set_index(["label", "mode"]).loc[("full network", "none")]
    assert (full.top1, full.top5, row.top1, row.top5) == (0.0, 1.0, 0.0, 0.0)
    assert (row.top1_change, row.top5_change) == (0.0, -1.0)
    assert (row.top1_low, row.top1_high) == (0.0, 0.0)
    assert (row.top5_low, row.top5_high) == (pytest.approx(-1.0), pytest.approx(-1.0))
    assert row.within_noise  # top-1's interval holds 0; top-5's would not


class RedLogits(ConstantLogits):
    """:class:`ConstantLogits` whose SE input reads the image: channel 0 is f = a r + b for the normalised red
    value r, chosen so that f = 1 for a black image and f = 1/2 for a red one. Full network (gate 1/2): logits
    5 + 0.1 k - 5 f of classes 0-2 all above the -2 of classes 3-6, in the top 5 behind class 7 (10). Identity
    (gate 1): 5 + 0.1 k - 10 f, above -2 for a red image (f = 1/2), below it for a black one (f = 1)."""

    def __init__(self, pre: Preprocessing):
        super().__init__()
        black, red = ((v - pre.mean[0]) / pre.std[0] for v in (0.0, 1.0))
        a = (0.5 - 1.0) / (red - black)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = a
            self.conv.bias.fill_(1.0)
            self.conv.bias[0] = 1.0 - a * black


def test_top5_interval_is_the_bootstrap_of_top5s_own_per_image_differences(tmp_path):
    """Identity on SE_2_1 takes the black images out of the top 5 and leaves the red ones in (see
    :class:`RedLogits`): paired top-5 differences of -1 and 0, image by image, whose bootstrap interval
    (with the same resamples) is the row's top-5 interval; top-1 is wrong throughout, its interval [0, 0]."""
    for k in range(8):
        (tmp_path / f"class{k}").mkdir()
        for i in range(4 if k < 3 else 0):
            Image.new("RGB", (SIDE, SIDE), (255 * (i % 2), 0, 0)).save(tmp_path / f"class{k}" / f"{i}.png")
    images = discover(tmp_path)
    net = loaded(RedLogits(Preprocessing(resize=SIDE, crop=SIDE)).eval())
    result = ablate(net, images, AblationPlan(modes=["identity"]), progress=False, bootstrap=500, seed=3)
    row = result.table.set_index(["label", "mode"]).loc[("SE_2_1", "identity")]
    diff = np.array([[0.0 if Image.open(p).getpixel((0, 0))[0] == 255 else -1.0 for p in images.paths]])
    expected = paired_bootstrap(diff, bootstrap=500, seed=3)[0]
    assert diff.min() == -1.0 and diff.max() == 0.0
    assert row.top5_change == pytest.approx(diff.mean(), abs=1e-12) == -0.5
    assert row.top5_low < row.top5_high  # not a constant: a swap of the bounds or of top-1's and top-5's shows
    assert (row.top5_low, row.top5_high) == (pytest.approx(expected[0], abs=1e-12), pytest.approx(expected[1],
                                                                                                  abs=1e-12))
    assert (row.top1, row.top1_low, row.top1_high) == (0.0, 0.0, 0.0)


def test_calibration_mean_is_over_images_not_classes(folder, tmp_path):
    """``mean`` mode's E[s_c] is over the calibration images: with 3 images of one class and 1 of another it
    is the mean of 4 gates, not the mean of the two class means (which weighs the lone image 3 times more)."""
    rng = np.random.default_rng(5)
    counts = {"a": 3, "b": 1}
    for c, n in counts.items():
        (tmp_path / c).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    m = tiny(constant_first=False)
    cal = discover(tmp_path)
    assert sorted(cal.labels) == [0, 0, 0, 1]
    result = ablate(loaded(m), discover(folder), AblationPlan(modes=["mean"]), progress=False, bootstrap=50,
                    calibration=CalibrationSource(calibration_data=tmp_path), calibration_images=cal)
    x, labels = tensors(cal, loaded(m).preprocessing)
    with torch.no_grad():
        s = gate_of(m.se2, m.conv2(m.se1(m.conv1(x)))).double()
    per_image = s.mean(0)
    of_classes = torch.stack([s[labels == k].mean(0) for k in (0, 1)]).mean(0)
    assert (per_image - of_classes).abs().max() > 1e-3  # the two means differ here
    torch.testing.assert_close(result.calibration.means["SE_3_1"].double(), per_image, rtol=0, atol=1e-6)


def test_costs_in_closed_form(folder):
    m = tiny(constant_first=False)
    result = ablate(loaded(m), discover(folder), AblationPlan(blocks=["SE_2_1", "SE_3_1"], each_block=True),
                    calibration=per_class(1), progress=False, bootstrap=50)
    c, h, hw = 4, 2, SIDE * SIDE
    params = c * h + h + h * c + c            # W1, b1, W2, b2
    macs, scale = 2 * c * h, c * hw           # the two FC layers on 1x1, then one multiply per element
    t = result.table.set_index(["label", "mode"])
    one_id, one_mean = t.loc[("SE_2_1", "identity")], t.loc[("SE_2_1", "mean")]
    assert (one_id.params_saved, one_id.macs_saved) == (params, macs + scale)
    assert (one_mean.params_saved, one_mean.macs_saved) == (params - c, macs)  # keeps the scale
    assert (one_mean.params_saved_exported, one_mean.macs_saved_exported) == (params - c, macs)  # not foldable
    both = t.loc[("SE_2_1+SE_3_1", "identity")]
    assert both.params_saved == 2 * params and both.se_macs_removed_pct == pytest.approx(100)


def test_cumulative_order_and_curve(folder):
    m = tiny(constant_first=True)
    result = ablate(loaded(m), discover(folder), AblationPlan(modes=["mean"], cumulative="kl"),
                    calibration=per_class(1), progress=False, bootstrap=50)
    # the constant gate costs nothing in mean mode, so it is removed first
    assert result.orders["mean"][0] == "SE_2_1"
    cum = result.table[result.table["group"] == "cumulative"]
    assert list(cum["n_blocks"]) == [1, 2] and list(cum["step"]) == [1, 2]
    assert cum.iloc[0].kl == 0
    given = ablate(loaded(m), discover(folder), AblationPlan(modes=["identity"], each_block=False,
                                                             cumulative=["SE_3_1", "SE_2_1"]),
                   progress=False, bootstrap=50)
    assert given.orders["identity"] == ["SE_3_1", "SE_2_1"]


def test_paired_bootstrap_known_answers():
    const = paired_bootstrap(np.full((1, 500), -0.25))
    assert const[0, 0] == pytest.approx(-0.25) and const[0, 1] == pytest.approx(-0.25)
    # +1 for 30 % of the images, 0 else: the interval of a mean, sqrt(p (1 - p) / n) wide on each side x 1.96
    n, p = 2000, 0.3
    diff = np.zeros(n)
    diff[: int(p * n)] = 1
    low, high = paired_bootstrap(diff, bootstrap=20000, seed=0)[0]
    half = 1.96 * np.sqrt(p * (1 - p) / n)
    # within 6 % of the half-width (a mean moves in steps of 1/n = 2.5 % of it); a 97.5 % bound at 98.75 % is 14 % off
    assert low == pytest.approx(p - half, abs=0.06 * half) and high == pytest.approx(p + half, abs=0.06 * half)
    # paired: two classifiers right and wrong on the same images differ by nothing, however noisy each is
    assert tuple(paired_bootstrap(np.zeros((2, 100)))[1]) == (0.0, 0.0)


def test_bad_input_fails_cleanly(folder, tmp_path):
    m = tiny(constant_first=False)
    images = discover(folder)
    lm = loaded(m)
    with pytest.raises(SeprobeError, match="unknown block 'SE_9_9'"):
        ablate(lm, images, AblationPlan(blocks=["SE_9_9"]), calibration=per_class(1), progress=False)
    with pytest.raises(SeprobeError, match="invalid blocks"):
        AblationPlan(blocks=[])
    with pytest.raises(SeprobeError, match="invalid blocks 'SE_2_1'"):
        AblationPlan(blocks="SE_2_1")  # a string is not a list of names
    with pytest.raises(SeprobeError, match="no SE block in stage 7"):
        ablate(lm, images, AblationPlan(stage=7), progress=False)
    with pytest.raises(SeprobeError, match="invalid calibration_per_class 0") as e:
        per_class(0)
    assert e.value.argument == "calibration_per_class"
    with pytest.raises(SeprobeError, match="invalid calibration_views 0"):
        CalibrationSource(calibration_per_class=1, calibration_views=0)
    with pytest.raises(SeprobeError, match="share 12 images"):
        ablate(lm, images, calibration=CalibrationSource(calibration_data=folder), progress=False)
    with pytest.raises(SeprobeError, match="needs calibration images"):
        ablate(lm, images, AblationPlan(modes=["mean"]), progress=False)
    with pytest.raises(SeprobeError, match="invalid mode 'zero' in modes; valid: 'identity', 'mean'"):
        AblationPlan(modes=["zero"])
    with pytest.raises(SeprobeError, match="takes every image"):
        ablate(lm, images, calibration=per_class(4), progress=False)
    with pytest.raises(SeprobeError, match="named twice"):
        AblationPlan(modes=["identity"], cumulative=["SE_2_1", "SE_2_1"])
    with pytest.raises(SeprobeError, match="nothing to ablate"):
        AblationPlan(each_block=False)
    torch.save({"x": torch.zeros(1)}, tmp_path / "plain.pth")
    with pytest.raises(SeprobeError, match="not an ablated or pruned network"):
        load_ablated(tmp_path / "plain.pth")
    r = ablate(lm, images, progress=False, bootstrap=20)  # no calibration: identity alone, and said so
    assert r.modes == ("identity",) and r.mean_skipped
    with pytest.raises(SeprobeError, match="needs the calibration means"):
        export_blocks(r, ["SE_2_1"], "mean", tmp_path / "x.pth")
    with pytest.raises(SeprobeError, match="given as a module"):
        export_blocks(r, ["SE_2_1"], "identity", tmp_path / "x.pth")
    # overlap allowed when asked for, and said in the output
    r = ablate(lm, images, AblationPlan(modes=["mean"]), bootstrap=20, progress=False,
               calibration=CalibrationSource(calibration_data=folder, allow_overlap=True), calibration_images=images)
    assert r.calibration.overlap == 12 and "sharing 12 images" in calibration_text(r)


def test_outputs_written_together(folder, tmp_path):
    m = tiny(constant_first=True)
    r = ablate(loaded(m), discover(folder), AblationPlan(per_stage=True, each_block=True, cumulative="network"),
               calibration=per_class(1), progress=False, bootstrap=50)
    written = write_outputs(r, tmp_path / "out")
    names = {p.name for p in written}
    assert {"ablation.csv", "ablation.parquet", "summary.md", "blocks.png", "blocks.svg", "cumulative.png",
            "cumulative.svg"} <= names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "disjoint" in summary and "within noise" in summary


def test_cumulative_order_by_top1_breaks_ties_by_kl():
    import pandas as pd

    gates = [SEBlockInfo(f"SE_2_{i}", 2, i, f"b{i}", f"b{i}.g", 4, 1, 0) for i in (1, 2, 3)]
    singles = pd.DataFrame({"group": "block", "mode": "mean", "label": ["SE_2_1", "SE_2_2", "SE_2_3"],
                            "top1_change": [-0.02, 0.0, 0.0], "kl": [0.1, 0.5, 0.2]})
    assert cumulative_order(gates, singles, "mean", "top1") == ["SE_2_3", "SE_2_2", "SE_2_1"]
    assert cumulative_order(gates, singles, "mean", "kl") == ["SE_2_1", "SE_2_3", "SE_2_2"]
    assert Ablation("x", "set", "mean", ("SE_2_1",)).step is None


def test_ablation_study_spec(tmp_path):
    from pathlib import Path

    from seprobe.studies.study_file import load_study

    root = Path(__file__).resolve().parents[1]
    study = load_study(root / "studies" / "ablation.toml")
    assert study.kind == "ablation" and study.ablation["model"] == "timm:tf_mobilenetv3_small_100"
    assert study.ablation["calibration_labels"].name == "val_annotations.txt"
    bad = tmp_path / "bad.toml"
    bad.write_text('title = "x"\nkind = "ablation"\n[ablation]\nmodel = "m"\nweights = "w"\ndata = "d"\nmode = "x"\n')
    with pytest.raises(SeprobeError, match="unknown field 'mode'"):
        load_study(bad)
    bad.write_text('title = "x"\nkind = "ablation"\n[ablation]\nmodel = "m"\n')
    with pytest.raises(SeprobeError, match="ablation.weights: missing"):
        load_study(bad)
    assert len(load_study(_write_missing(tmp_path)).missing_inputs()) == 2


def _write_missing(tmp_path):
    p = tmp_path / "missing.toml"
    p.write_text('title = "x"\nkind = "ablation"\n[ablation]\nmodel = "m"\nweights = "nowhere.pth"\n'
                 'data = "nodata"\n')
    return p


def test_calibration_labels_in_tiny_imagenet_format(tmp_path):
    """The study's ``calibration_labels`` (Tiny ImageNet's ``val_annotations.txt``: file, wnid, box) are read by
    the same reader as ``--labels``: labels by file name, in the file's order, and a wnid outside ImageNet-1k
    refused with the file, line and value."""
    from seprobe.data.imagenet_classes import wnid_to_index

    for name in ("val_0.JPEG", "val_1.JPEG"):
        Image.new("RGB", (8, 8)).save(tmp_path / name, format="JPEG")
    (tmp_path / "val_annotations.txt").write_text("val_1.JPEG\tn01443537\t0\t0\t10\t10\n"
                                                  "val_0.JPEG\tn01629819\t1\t2\t3\t4\n")
    images = discover(tmp_path, tmp_path / "val_annotations.txt")
    assert [p.name for p in images.paths] == ["val_1.JPEG", "val_0.JPEG"]
    assert images.labels == (wnid_to_index("n01443537"), wnid_to_index("n01629819")) and images.imagenet
    (tmp_path / "bad.txt").write_text("val_0.JPEG\tn99999999\n")
    with pytest.raises(SeprobeError, match="bad.txt: line 1: label 'n99999999'; valid: an ImageNet-1k wnid"):
        discover(tmp_path, tmp_path / "bad.txt")


def test_ablation_reading_quotes_the_committed_figures():
    """The numbers the study's reading cites are those of the committed outputs."""
    from pathlib import Path

    import pandas as pd

    from seprobe.studies.study_file import load_study

    root = Path(__file__).resolve().parents[1]
    t = pd.read_csv(root / "reports" / "ablation" / "ablation.csv").set_index(["label", "mode"])
    reading = load_study(root / "studies" / "ablation.toml").reading
    cited = {("SE_4_1", "mean"): "-1.1 [-2.3, 0.0]", ("SE_4_2", "mean"): "25.3 points",
             ("SE_5_3", "mean"): "8.8 points", ("SE_4_4", "identity"): "-75.2 points",
             ("stage 5", "mean"): "36.6 [-40.0, -33.3]", ("+SE_4_1", "mean"): "-1.4 [-2.7, -0.2]"}
    for key, text in cited.items():
        assert text in reading
        row = t.loc[key]
        value = float(text.split()[0].replace("-", "")) / 100
        assert abs(row.top1_change) == pytest.approx(value, abs=5e-4), key
        if "[" in text:
            low, high = (float(v) / 100 for v in text[text.index("[") + 1:-1].split(", "))
            assert (row.top1_low, row.top1_high) == (pytest.approx(low, abs=5e-4), pytest.approx(high, abs=5e-4))
    assert t.loc[("SE_4_4", "mean")].agreement == pytest.approx(0.999, abs=5e-4)


def test_outputs_all_or_nothing(folder, tmp_path, monkeypatch):
    import seprobe.report.ablation as report

    m = tiny(constant_first=True)
    r = ablate(loaded(m), discover(folder), AblationPlan(modes=["identity"]), progress=False, bootstrap=20)
    out = tmp_path / "out"
    out.mkdir()
    (out / "ablation.csv").write_text("old\n")

    def broken(result, path):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(report, "figure_blocks", broken)
    with pytest.raises(RuntimeError, match="figure failed"):
        report.write_outputs(r, out)
    assert [p.name for p in out.iterdir()] == ["ablation.csv"] and (out / "ablation.csv").read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_negative_bootstrap_seed_is_refused_before_any_work(tmp_path, monkeypatch):
    """numpy's generators take seeds >= 0: -1 was a traceback after the whole evaluation."""
    import seprobe
    from seprobe.data import images

    (tmp_path / "x_a.JPEG").write_bytes(b"")
    monkeypatch.setattr(images.ImageSource, "read", lambda self: pytest.fail("images read before the check"))
    with pytest.raises(SeprobeError, match=r"^invalid seed -1; valid: an integer >= 0$"):
        seprobe.ablate("se_resnet20_cifar", "random", tmp_path, seed=-1)
