"""Image folders and label files as users have them, and as a hostile user gives them: each refused in one
line naming the file, the line and the value, before any model is built."""



import numpy as np
import pytest
from PIL import Image

from seprobe import SeprobeError
from seprobe.data.imagenet_classes import resolve_class
from seprobe.data.images import Preprocessing, ViewDataset, check_readable, discover, to_rgb
from seprobe.probe.activations import collect

from .conftest import SHARED
from .helpers import GOLDFISH, PUG, identity_model, one_line
from .helpers import write_flat_images as images


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

def test_a_file_given_as_data_folder_or_a_folder_as_label_file(tmp_path):
    root = images(tmp_path / "d", [f"{GOLDFISH}_a.png"])
    with pytest.raises(SeprobeError, match=r"data folder '.*a.png' is a file, not a folder; valid:"):
        discover(root / f"{GOLDFISH}_a.png")
    with pytest.raises(SeprobeError, match=r"label file '.*d' is a folder; valid:"):
        discover(root, root)


def test_a_holdout_split_is_two_label_files_that_read_back_as_the_two_parts(tmp_path):
    """Three classes, five images each, listed interleaved: the held-out part is the last two of each class in
    the label file's order (counted by hand), the training part the first three; both read back through the
    label-file reader as those images and labels; a class left with nothing to train on is refused."""
    import seprobe
    from seprobe.data.imagenet_classes import wnid_to_index

    wnids = ["n01443537", "n09246464", "n02085620"]
    order = [(k, c) for k in range(5) for c in range(3)]  # file i: class i % 3
    names = [f"val_{i}.JPEG" for i in range(15)]
    images(tmp_path / "images", names)
    lines = [f"{n}\t{wnids[c]}\t0\t0\t8\t8\n" for n, (_, c) in zip(names, order, strict=True)]
    (tmp_path / "labels.txt").write_text("".join(lines))
    split = seprobe.split_holdout(tmp_path / "images", tmp_path / "split", holdout_per_class=2,
                                  labels=tmp_path / "labels.txt")
    assert (split.train_images, split.heldout_images) == (9, 6)
    held = [n for n, (k, _) in zip(names, order, strict=True) if k >= 3]
    kept = [n for n, (k, _) in zip(names, order, strict=True) if k < 3]
    assert held == [f"val_{i}.JPEG" for i in range(9, 15)]
    for file, expected in ((split.heldout_labels, held), (split.train_labels, kept)):
        back = discover(tmp_path / "images", file)
        assert [p.name for p in back.paths] == expected
        assert list(back.labels) == [wnid_to_index(wnids[int(n[4:-5]) % 3]) for n in expected]
    with pytest.raises(SeprobeError, match="has 5 images, none left to train on after holding out 5"):
        seprobe.split_holdout(tmp_path / "images", tmp_path / "other", holdout_per_class=5,
                              labels=tmp_path / "labels.txt")
    assert not (tmp_path / "other").exists()
    images(tmp_path / "folders" / "cat", ["a.png", "b.png"])
    with pytest.raises(SeprobeError, match="are not ImageNet's, and a label file names ImageNet wnids"):
        seprobe.split_holdout(tmp_path / "folders", tmp_path / "other", holdout_per_class=1)
