"""Bad inputs and faults, as a hostile user would give them, called directly (the CLI's subprocess tests are in
test_cli*): each must end in one SeprobeError line naming the value and what is valid, or in a result that is
right, never in a traceback or a silently wrong figure."""

import os
import urllib.error
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from seprobe import SeprobeError, SqueezeExcite
from seprobe.cost.flops import DEFAULT, FlopConvention, count_flops
from seprobe.data.imagenet_classes import resolve_class
from seprobe.data.images import Preprocessing, ViewDataset, check_readable, discover, to_rgb
from seprobe.models import checkpoints
from seprobe.models.blocks import find_blocks
from seprobe.models.checkpoints import pretrained_download, read_state_dict, timm_equivalent, unwrap_state_dict
from seprobe.models.factory import Network
from seprobe.models.registry import build_model
from seprobe.probe.activations import collect
from seprobe.probe.gate_stats import GateStats
from seprobe.report.activations import figure_class_spread
from seprobe.report.complexity import describe_convention
from seprobe.studies.spec import check_unique_names, load_study

from .conftest import SHARED

GOLDFISH, PUG = "n01443537", "n02110958"   # ImageNet classes 1 and 254


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "valid" in message, message
    return message


# --- study files ------------------------------------------------------------------------------------------------

STUDY = """
title = "t"
kind = "{kind}"
{top}
[defaults]
{defaults}
[[variants]]
label = "a"
model = "se_resnet50"
{variant}
"""


def write_study(tmp_path, name="s", kind="complexity", top="", defaults="", variant=""):
    path = tmp_path / f"{name}.toml"
    path.write_text(STUDY.format(kind=kind, top=top, defaults=defaults, variant=variant))
    return path


@pytest.mark.parametrize("where,line,key,value,expected", [
    ("defaults", 'drop_stage5 = "false"', "defaults.drop_stage5", "'false'", "true or false"),
    ("defaults", 'bias = "false"', "defaults.bias", "'false'", "true or false"),
    ("defaults", 'stages = [2, "x"]', "defaults.stages", "[2, 'x']", "an array of stage numbers"),
    ("defaults", "reduction = 0", "defaults.reduction", "0", "an integer >= 1"),
    ("defaults", "reduction = 16.0", "defaults.reduction", "16.0", "an integer >= 1"),
    ("variant", 'knobs = "fast"', "variants[0].knobs", "'fast'", "a table"),
    ("variant", 'paper = { gflops = "3.87" }', "variants[0].paper.gflops", "'3.87'", "a number"),
    ("variant", "note = 3", "variants[0].note", "3", "a string"),
    ("top", '[timing]\nbatch_size = "8"', "timing.batch_size", "'8'", "an integer >= 1"),
    ("top", "[timing]\nchannels_last = 1", "timing.channels_last", "1", "true or false"),
    ("top", "description = 5", "description", "5", "a string"),
])
def test_study_values_of_the_wrong_type_are_named(tmp_path, where, line, key, value, expected):
    """Strings are not booleans: `drop_stage5 = "false"` used to drop stage 5."""
    path = write_study(tmp_path, **{where: line})
    with pytest.raises(SeprobeError) as e:
        load_study(path)
    message = str(e.value)
    assert "\n" not in message
    assert str(path) in message and f"{key}:" in message and value in message and expected in message, message


def test_study_files_that_are_not_utf8_or_not_toml(tmp_path):
    latin = tmp_path / "latin.toml"
    latin.write_bytes('title = "Café"\nkind = "complexity"\n'.encode("latin-1"))
    with pytest.raises(SeprobeError, match=r"latin.toml: encoding: not UTF-8 text \(byte 0xe9 at offset 12\)"):
        load_study(latin)
    broken = tmp_path / "broken.toml"
    broken.write_text('title = "t\nkind = 3')
    with pytest.raises(SeprobeError, match=r"broken.toml: TOML: .*valid: a TOML document"):
        load_study(broken)
    with pytest.raises(SeprobeError, match="is a folder"):
        load_study(tmp_path)


def test_a_correct_study_still_loads(tmp_path):
    path = write_study(tmp_path, defaults="bias = false\nstages = [2, 3]", top='[timing]\nbatch_size = 8')
    study = load_study(path)
    assert study.variants[0].knobs == {"bias": False, "stages": [2, 3]} and study.timing == {"batch_size": 8}


def test_two_studies_with_one_name_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = write_study(tmp_path / "a", name="x"), write_study(tmp_path / "b", name="x")
    check_unique_names([load_study(one), load_study(write_study(tmp_path, name="y"))])
    with pytest.raises(SeprobeError, match=r"two studies named 'x': .*a/x.toml and .*b/x.toml"):
        check_unique_names([load_study(one), load_study(two)])


# --- data: layouts and label files ----------------------------------------------------------------------------

def images(folder, names, colour=(0, 0, 0)):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.new("RGB", (8, 8), colour).save(folder / n)
    return folder


def test_an_image_listed_twice_is_an_error(tmp_path):
    root = images(tmp_path / "d", ["a.png", "b.png"])
    for second in ("a.png 1", "./a.png 254"):  # the same label again, or another one
        labels = tmp_path / "labels.txt"
        labels.write_text(f"a.png 1\nb.png 254\n{second}\n")
        with pytest.raises(SeprobeError) as e:
            discover(root, labels)
        assert "line 3: image" in one_line(e) and "listed again (first on line 1)" in str(e.value)


def test_label_file_encodings(tmp_path):
    root = images(tmp_path / "d", ["a.png", "b.png"])
    text = f"a.png {GOLDFISH}\nb.png 254\n"
    labels = tmp_path / "labels.txt"
    for encoding in ("utf-8", "utf-8-sig", "utf-16"):  # utf-16 writes its BOM
        labels.write_bytes(text.encode(encoding))
        found = discover(root, labels)
        assert [p.name for p in found.paths] == ["a.png", "b.png"] and found.labels == (1, 254), encoding
    labels.write_bytes("a.png n01443537 # Fisch für Café\n".encode("latin-1"))
    with pytest.raises(SeprobeError, match=r"not UTF-8 text \(byte 0xfc at offset 25\)") as e:
        discover(root, labels)
    one_line(e)
    labels.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(SeprobeError, match=r"binary data \(a NUL byte at offset 8\)"):
        discover(root, labels)


def test_superscript_two_is_not_an_index(tmp_path):
    """'²'.isdigit() is True, int('²') raises ValueError."""
    assert "²".isdigit()
    root = images(tmp_path / "d", ["a.png"])
    labels = tmp_path / "labels.txt"
    labels.write_text("a.png ²\n")
    with pytest.raises(SeprobeError, match="line 1: label '²'; valid: an ImageNet-1k wnid"):
        discover(root, labels)
    with pytest.raises(SeprobeError, match="unknown ImageNet class '²'"):
        resolve_class("²")


def test_no_usable_image_is_an_error_before_the_pass(tmp_path):
    empty_classes = tmp_path / "empty"
    (empty_classes / GOLDFISH).mkdir(parents=True)
    (empty_classes / PUG).mkdir()
    nested = tmp_path / "nested"
    images(nested / GOLDFISH / "deeper", ["a.png"])
    for root in (empty_classes, nested):
        with pytest.raises(SeprobeError, match="but no image directly inside any of them") as e:
            discover(root)
        one_line(e)
    (tmp_path / "bare").mkdir()
    with pytest.raises(SeprobeError, match="no image and no class folder"):
        discover(tmp_path / "bare")
    # a label file naming only files that are not there
    root = images(tmp_path / "d", ["a.png"])
    labels = tmp_path / "labels.txt"
    labels.write_text("x.png 1\ny.png 2\n")
    with pytest.raises(SeprobeError, match=r"none of the 2 images it lists is in .*\(e.g. 'x.png'\)"):
        discover(root, labels)
    # files that exist but are no images
    junk = tmp_path / "junk"
    junk.mkdir()
    for n in ("n01443537_a.jpg", "n02110958_b.png"):
        (junk / n).write_bytes(b"not an image")
    found = discover(junk)
    with pytest.raises(SeprobeError, match="none of the 2 images can be read") as e:
        check_readable(found)
    one_line(e)
    with pytest.raises(SeprobeError, match="none of the 2 images could be read"):
        collect(identity_model(), found, progress=False)


def test_empty_label_files_and_one_number_per_line(tmp_path):
    root = images(tmp_path / "d", ["a.png"])
    labels = tmp_path / "labels.txt"
    labels.write_text("\n\n")
    with pytest.raises(SeprobeError) as e:
        discover(root, labels)
    assert "holds no label" in one_line(e) and "devkit" not in str(e.value)
    labels.write_text("490\n")
    with pytest.raises(SeprobeError, match="looks like the devkit's ILSVRC2012_ID ground truth"):
        discover(root, labels)


def test_a_stray_file_in_a_flat_wnid_folder_is_named(tmp_path):
    root = images(tmp_path / "d", [f"{GOLDFISH}_a.png", f"{PUG}_b.png", "holiday.jpg"])
    with pytest.raises(SeprobeError, match=r"file 'holiday.jpg' is not named <wnid>_<name>.<ext>") as e:
        discover(root)
    one_line(e)


def test_real_label_formats(tmp_path):
    root = images(tmp_path / "d", ["val_0.JPEG", "val_1.JPEG", "ILSVRC2012_val_00000001.JPEG"])
    cases = {
        # Tiny ImageNet's val_annotations.txt: <file>\t<wnid>\t<x0>\t<y0>\t<x1>\t<y1>
        "tiny.txt": f"val_0.JPEG\t{GOLDFISH}\t0\t32\t44\t62\nval_1.JPEG\t{PUG}\t52\t55\t57\t59\n",
        "comma.csv": f"val_0.JPEG, 1\nval_1.JPEG, {PUG}\n",
        "spaces.txt": "val_0.JPEG 1 extra columns\nval_1.JPEG 254\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        found = discover(root, tmp_path / name)
        assert [p.name for p in found.paths] == ["val_0.JPEG", "val_1.JPEG"] and found.labels == (1, 254), name
        assert "1 images of the data folder are not listed" in found.notes[0]
    kaggle = tmp_path / "LOC_val_solution.csv"
    kaggle.write_text(f"ImageId,PredictionString\nILSVRC2012_val_00000001,{PUG} 10 20 30 40 {PUG} 1 2 3 4 \n"
                      f"ILSVRC2012_val_00000002,{GOLDFISH} 0 0 5 5\n")
    found = discover(root, kaggle)
    assert [p.name for p in found.paths] == ["ILSVRC2012_val_00000001.JPEG"] and found.labels == (254,)
    assert "Kaggle" in found.layout and "1 images listed in LOC_val_solution.csv are not in" in found.notes[0]


def test_tiny_imagenet_labels_as_they_ship():
    data = SHARED / "data" / "tiny-imagenet-val"
    if not data.is_dir():
        pytest.skip(f"{data} is absent (shared data, not part of the project)")
    found = discover(data / "images", data / "val_annotations.txt")
    assert len(found.paths) == 10_000 and len(set(found.labels)) == 200
    first = (data / "val_annotations.txt").read_text().splitlines()[0].split("\t")
    assert found.paths[0].name == first[0] and found.class_names[found.labels[0]] == \
        found.class_names[resolve_class(first[1])]
    assert np.bincount(found.labels).max() == 50


def test_a_16_bit_png_is_scaled_not_clipped(tmp_path):
    """Grey levels 0, 32896 (= 128 x 257) and 65535 of a 16-bit PNG are 8-bit 0, 128 and 255."""
    values = np.tile(np.array([0, 32896, 65535, 32896], dtype=np.uint16), (4, 1))  # 4 x 4, every row the same
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)  # uint16: mode I;16
    with Image.open(path) as im:
        assert im.mode in ("I;16", "I")
        assert np.asarray(im.convert("RGB"))[0, :, 0].tolist() != [0, 128, 255, 128]  # what PIL alone gives
        rgb = np.asarray(to_rgb(im))
    assert rgb[0, :, 0].tolist() == [0, 128, 255, 128] and (rgb[..., 0] == rgb[..., 2]).all()
    # resize 4 and crop 4 of a 4 x 4 image change nothing
    pre = Preprocessing(resize=4, crop=4, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0), interpolation="nearest")
    found = discover(tmp_path, _label_file(tmp_path, "deep.png 1"))
    x, label, _, failure = ViewDataset(found, pre)[0]
    assert failure is None and label == 1
    pixels = np.array([0, 128, 255, 128]) / 255
    for c, (m, s) in enumerate(zip(pre.mean, pre.std, strict=True)):
        np.testing.assert_allclose(x[c, 0].numpy(), (pixels - m) / s, atol=1e-6)


def _label_file(folder, text):
    path = folder / "labels.txt"
    path.write_text(text + "\n")
    return path


# --- NaN and names ------------------------------------------------------------------------------------------

class TwoSE(nn.Module):
    """conv -> SE_2_1 -> conv -> SE_3_1 -> linear; every gate depends on the conv before it."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1)
        self.se1, self.se2 = SqueezeExcite(4, hidden_channels=2), SqueezeExcite(4, hidden_channels=2)
        self.se1.name, self.se2.name = "SE_2_1", "SE_3_1"
        self.head = nn.Linear(4, 1000)

    def forward(self, x):
        return self.head(self.se2(self.conv2(self.se1(self.conv1(x)))).mean((2, 3)))


def identity_model(model=None):
    return Network((model or TwoSE()).eval(), "two-se", Preprocessing(resize=8, crop=8, mean=(0, 0, 0), std=(1, 1, 1)))


@pytest.fixture
def two_classes(tmp_path):
    root = tmp_path / "flat"
    for i, (wnid, colour) in enumerate([(GOLDFISH, (10, 200, 30)), (PUG, (200, 10, 90)), (GOLDFISH, (1, 2, 3))]):
        images(root, [f"{wnid}_{i}.png"], colour)
    return discover(root)


def test_nan_weights_are_named(tmp_path, two_classes):
    model = TwoSE()
    with torch.no_grad():
        model.conv2.weight[0, 0] = float("nan")
    path = tmp_path / "nan.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(SeprobeError, match=r"nan.pth: 'conv2.weight' holds 1 non-finite values .* of 16") as e:
        read_state_dict(path)
    one_line(e)
    # in the pass (weights set in memory): the first block after the NaN, in network order
    with pytest.raises(SeprobeError, match="non-finite excitation values .* in block SE_3_1, the first"):
        collect(identity_model(model), two_classes, progress=False)
    clean = TwoSE()
    with torch.no_grad():
        clean.head.bias[3] = float("inf")
    with pytest.raises(SeprobeError, match="non-finite logits .* in the batch of .*n01443537_0.png"):
        collect(identity_model(clean), two_classes, progress=False)


def test_foreign_gate_names_refuse_tiny_inputs_and_do_not_depend_on_the_crop():
    import torchvision

    model = torchvision.models.mobilenet_v3_small().eval()
    at_224 = [(g.name, g.channels) for g in find_blocks(model, 224)]
    assert [n for n, _ in at_224] == ["SE_2_1", "SE_4_1", "SE_4_2", "SE_4_3", "SE_4_4", "SE_4_5", "SE_5_1",
                                      "SE_5_2", "SE_5_3"]
    assert [(g.name, g.channels) for g in find_blocks(model, 65)] == at_224  # 65 / ceil(65 / 32) = 21.7: stage 4
    with pytest.raises(SeprobeError, match="input size 1 is too small .*valid: a crop of at least 32 pixels"):
        find_blocks(model, 1)


# --- one view per class ----------------------------------------------------------------------------------------

def test_one_view_per_class_is_flagged_and_has_no_band(tmp_path):
    stats = GateStats({"SE_2_1": (3, 0.0, 1.0)}, num_classes=3)
    values = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5], [0.9, 0.8, 0.7]], dtype=torch.float64)
    stats.update("SE_2_1", values, torch.tensor([0, 1, 2]))
    b = stats.blocks["SE_2_1"]
    assert np.isnan(b.std()[:3]).all()  # n - 1 = 0: undefined, not 0
    np.testing.assert_allclose(b.std()[3], values.numpy().std(0, ddof=1))
    assert stats.class_specificity("SE_2_1") == pytest.approx(1.0)  # by construction
    assert stats.single_view_classes() == (3, 3)
    from types import SimpleNamespace

    from seprobe.report.activations import notes as run_notes

    run = SimpleNamespace(images=SimpleNamespace(notes=()), stats=stats, views=1, per_position=False, failed=[],
                          network=SimpleNamespace(random=False))
    said = run_notes(run)
    assert len(said) == 2 and "3 of 3 classes have a single view" in said[0] and "n - 1" in said[0]
    assert "class_specificity is 1 by construction" in said[1]
    stats.update("SE_2_1", values[:1], torch.tensor([0]))
    assert stats.single_view_classes() == (2, 3)
    assert len(run_notes(run)) == 1 and "2 of 3 classes" in run_notes(run)[0]

    class Run:  # the parts of an ActivationRun that Fig. 7 reads
        pass

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.collections
    import matplotlib.pyplot as plt

    run = Run()
    run.stats, run.network = stats, identity_model()
    run.images = type("Images", (), {"class_names": ("a", "b", "c")})()
    drawn = {}
    original = plt.Figure.savefig

    def capture(fig, *args, **kwargs):
        drawn["bands"] = sum(isinstance(c, matplotlib.collections.PolyCollection)
                             for ax in fig.axes for c in ax.collections)
        drawn["title"] = fig._suptitle.get_text()
        return original(fig, *args, **kwargs)

    plt.Figure.savefig = capture
    try:
        figure_class_spread(run, 1, ["SE_2_1"], 3, tmp_path / "one")
        assert drawn["bands"] == 0 and "one view: no standard deviation" in drawn["title"]
        figure_class_spread(run, 0, ["SE_2_1"], 3, tmp_path / "two")
        assert drawn["bands"] == 1 and "2 views" in drawn["title"]
    finally:
        plt.Figure.savefig = original


# --- checkpoints ---------------------------------------------------------------------------------------------

def test_checkpoints_that_are_not_state_dicts(tmp_path):
    cases = {
        "int_keys.pth": ({1: torch.zeros(2)}, r"key 1 is an int; valid: a state dict, whose keys are"),
        "sparse.pth": ({"w": torch.eye(3).to_sparse()}, r"'w' is a torch.sparse_coo tensor; valid: dense"),
        "list.pth": ([torch.zeros(1)], r"holds a list, not a state dict"),
        "tensor.pth": (torch.zeros(1), r"holds a Tensor, not a state dict"),
        "none.pth": (None, r"holds None, not a state dict"),
        "nested.pth": ({"w": {"x": 1}}, r"'w' holds a dict; valid: a state dict, whose values are tensors"),
    }
    for name, (payload, message) in cases.items():
        torch.save(payload, tmp_path / name)
        with pytest.raises(SeprobeError, match=message) as e:
            read_state_dict(tmp_path / name)
        one_line(e)
    scripted = tmp_path / "scripted.pt"
    torch.jit.script(nn.Linear(2, 2)).save(str(scripted))
    with pytest.raises(SeprobeError, match=r"is a TorchScript archive .*torch.jit.load\(.*\).state_dict\(\)") as e:
        read_state_dict(scripted)
    one_line(e)
    assert zipfile.is_zipfile(tmp_path / "int_keys.pth")  # a torch.save zip is not taken for TorchScript
    with pytest.raises(SeprobeError, match="key 1"):
        unwrap_state_dict({"state_dict": {1: torch.zeros(1)}})


def test_timm_weights_for_a_model_timm_does_not_have():
    with pytest.raises(SeprobeError, match=r"timm publishes no weights for se_vgg16_bn; valid: .*se_resnet50"):
        timm_equivalent("se_vgg16_bn", build_model("se_vgg16_bn", device="meta"))
    assert timm_equivalent("se_resnet50", build_model("se_resnet50", device="meta")) == "legacy_seresnet50"
    with pytest.raises(SeprobeError, match=r"stem_pool=pad; valid: legacy_seresnet50: stride_at=1x1, stem_pool=ceil"):
        timm_equivalent("se_resnet50", build_model("se_resnet50", stem_pool="pad", device="meta"))


def test_pretrained_download_fails_in_one_line(monkeypatch):
    def refused():
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(checkpoints, "_reachable", lambda host, timeout: True)
    with pytest.raises(SeprobeError,
                       match=r"cannot download timm's se: <urlopen error \[Errno -3\].*local checkpoint path as the"):
        pretrained_download(refused, "timm's se")
    with pytest.raises(KeyError):  # not a network error: not hidden
        pretrained_download(lambda: {}["x"], "x")
    # offline: the hub's cache-only mode, and a one-line error when the file is not cached
    monkeypatch.setattr(checkpoints, "_reachable", lambda host, timeout: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    seen = {}

    def cached():
        seen["offline"] = os.environ.get("HF_HUB_OFFLINE")
        return "weights"

    assert pretrained_download(cached, "x") == "weights" and seen["offline"] == "1"
    assert "HF_HUB_OFFLINE" not in os.environ

    def not_cached():
        raise OSError("cannot find the requested files in the local cache")

    with pytest.raises(SeprobeError, match=r"cannot download x: huggingface.co cannot be reached \(offline\?\)"):
        pretrained_download(not_cached, "x")


# --- FLOP convention -----------------------------------------------------------------------------------------

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


def test_a_file_given_as_data_folder_or_a_folder_as_label_file(tmp_path):
    root = images(tmp_path / "d", [f"{GOLDFISH}_a.png"])
    with pytest.raises(SeprobeError, match=r"data folder '.*a.png' is a file, not a folder; valid:"):
        discover(root / f"{GOLDFISH}_a.png")
    with pytest.raises(SeprobeError, match=r"label file '.*d' is a folder; valid:"):
        discover(root, root)
