"""Labelled images from disk, in the layouts ImageNet users have, with the model's own preprocessing.

Layouts (``discover``):

* a flat folder of files named ``<wnid>_<name>.<ext>`` (like ``shared/data/imagenet-samples``);
* class folders named by wnid (ImageNet's train/val trees);
* any ImageFolder tree (class folders of other names: labels are the sorted folder names, not ImageNet's);
* a flat folder with a label file (``labels=``, see :func:`_with_label_file`): lines ``<file> <label>`` (Caffe's
  ``val.txt``; the label an index 0-999 or a wnid; more columns, such as Tiny ImageNet's boxes, are ignored),
  separated by tabs, commas or spaces; Kaggle's ``ImageId,PredictionString`` CSV (the first wnid is the label);
  or one wnid per line for the files in sorted order (TF-slim's ``imagenet_2012_validation_synset_labels.txt``).
  The devkit's ``ILSVRC2012_validation_ground_truth.txt`` numbers classes in the devkit's own order, not the
  sorted one, and is refused rather than misread. Label files are UTF-8 (a BOM is fine) or UTF-16 with a BOM.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import transforms as T

from ..errors import SeprobeError, check_int, check_path
from .imagenet_classes import imagenet_classes, wnid_to_index

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}
_WNID_FILE = re.compile(r"^(n\d{8})_")


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side, centre-crop, normalise: the evaluation transform of ImageNet models."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    def eval_transform(self) -> T.Compose:
        mode = interpolation_mode(self.interpolation)
        return T.Compose([T.Resize(self.resize, interpolation=mode), T.CenterCrop(self.crop), T.ToTensor(),
                          T.Normalize(self.mean, self.std)])

    def view_transform(self) -> T.Compose:
        """An augmented view: a random resized crop (35-100 % of the area) and a random horizontal flip."""
        mode = interpolation_mode(self.interpolation)
        return T.Compose([T.RandomResizedCrop(self.crop, scale=(0.35, 1.0), interpolation=mode),
                          T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(self.mean, self.std)])


def interpolation_mode(name: str) -> T.InterpolationMode:
    try:
        return T.InterpolationMode(name)
    except ValueError:
        raise SeprobeError(f"unknown interpolation {name!r}; valid: bilinear, bicubic, nearest") from None


@dataclass(frozen=True)
class LabelledImages:
    paths: tuple[Path, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...]   # one per label index
    imagenet: bool                 # labels are ImageNet-1k indices
    layout: str
    notes: tuple[str, ...] = ()    # what discovery left out, and why


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS
                  and not p.name.startswith("."))


def discover(root: str | Path, labels: str | Path | None = None) -> LabelledImages:
    """The labelled images of ``root`` in one of the layouts of this module's docstring.

    Everything is checked here, before any model is built: a layout that cannot be read, a label that names no
    class, an image listed twice, or no image at all raise :class:`SeprobeError` naming the file and the value.
    Whether each image decodes is checked by :func:`check_readable`.
    """
    root = Path(root)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise SeprobeError(f"data folder {str(root)!r} {what}; valid: a folder of images "
                           "(wnid_name files, class folders, or a flat folder with a label file)", argument="data")
    imagenet_names = tuple(c.name for c in imagenet_classes())
    if labels is not None:
        found = _with_label_file(root, Path(labels), imagenet_names)
    else:
        found = _from_layout(root, imagenet_names)
    if not found.paths:
        raise SeprobeError(f"{root}: no image found ({found.layout}); valid: image files with one of the "
                           f"extensions {', '.join(sorted(EXTENSIONS))}")
    return found


def _from_layout(root: Path, imagenet_names: tuple[str, ...]) -> LabelledImages:
    files = _images(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if files and any(_WNID_FILE.match(p.name) for p in files):
        stray = [p.name for p in files if not _WNID_FILE.match(p.name)]
        if stray:
            raise SeprobeError(f"{root}: file {stray[0]!r} is not named <wnid>_<name>.<ext> like the other images "
                               f"({len(stray)} such files); valid: remove it, or give a labels FILE", argument="labels")
        idx = [wnid_to_index(_WNID_FILE.match(p.name).group(1)) for p in files]
        bad = [p.name for p, i in zip(files, idx, strict=True) if i is None]
        if bad:
            raise SeprobeError(f"{root}: file {bad[0]!r} names no ImageNet-1k wnid; valid: <wnid>_<name>.<ext>")
        return LabelledImages(tuple(files), tuple(idx), imagenet_names, True, "wnid-named files")
    if not folders:
        what = (f"{len(files)} images, but neither named <wnid>_<name> nor in class folders" if files
                else "no image and no class folder")
        raise SeprobeError(f"{root}: {what}; valid: wnid_name files, class folders, or a flat folder with a "
                           "labels FILE", argument="labels")
    is_imagenet = all(wnid_to_index(f.name) is not None for f in folders)
    paths, lab, empty = [], [], []
    for k, folder in enumerate(folders):
        inside = _images(folder)
        if not inside:
            empty.append(folder.name)
        for p in inside:
            paths.append(p)
            lab.append(wnid_to_index(folder.name) if is_imagenet else k)
    names = imagenet_names if is_imagenet else tuple(f.name for f in folders)
    layout = "wnid class folders" if is_imagenet else "class folders"
    if not paths:
        raise SeprobeError(f"{root}: {len(folders)} class folders ({folders[0].name}, ...) but no image directly "
                           "inside any of them; valid: <class>/<image> with the images one level down")
    notes = (f"{len(empty)} class folders hold no image directly (e.g. {empty[0]!r}): those classes are "
             "absent",) if empty else ()
    return LabelledImages(tuple(paths), tuple(lab), names, is_imagenet, layout, notes)


def read_label_text(label_file: Path) -> str:
    """The text of a label file: UTF-8 (with or without a BOM) or UTF-16 with its BOM; anything else (Latin-1,
    binary) is refused rather than guessed."""
    if not label_file.is_file():
        what = "is a folder" if label_file.is_dir() else "does not exist"
        raise SeprobeError(f"label file {str(label_file)!r} {what}; valid: a '<file> <label>' list "
                           "or one wnid per line")
    raw = label_file.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
        if b"\0" in raw:
            raise SeprobeError(f"label file {label_file}: binary data (a NUL byte at offset {raw.index(0)}); "
                               "valid: a text file in UTF-8 or UTF-16 with a BOM")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise SeprobeError(f"label file {label_file}: not {encoding.removesuffix('-sig').upper()} text (byte "
                           f"{raw[e.start]:#04x} at offset {e.start}); valid: a text file in UTF-8 or UTF-16 "
                           "with a BOM (convert with: iconv -f latin1 -t utf-8)") from None


_KAGGLE_HEADER = re.compile(r"^\s*ImageId\s*,\s*PredictionString\s*$", re.IGNORECASE)
_INDEX = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() is also true for "²", which int() refuses


def _split(line: str) -> list[str]:
    """The columns of one line: tab-separated, else comma-separated, else whitespace-separated."""
    if "\t" in line:
        return [c.strip() for c in line.split("\t")]
    if "," in line:
        return [c.strip() for c in line.split(",")]
    return line.split()


def _with_label_file(root: Path, label_file: Path, names: tuple[str, ...]) -> LabelledImages:
    """Label file formats, by their first line:

    * ``ImageId,PredictionString`` (Kaggle's ``LOC_val_solution.csv``): the image's file stem, then boxes
      ``<wnid> x0 y0 x1 y1 ...``; the label is the first wnid;
    * ``<file> <label> [more columns]`` (Caffe's ``val.txt``; Tiny ImageNet's ``val_annotations.txt`` with its
      box columns), separated by tabs, commas or spaces; ``<file>`` relative to the data folder;
    * one wnid per line, for the images of the folder in sorted order.

    Rules: every image is listed at most once (a second line for the same image, with the same or another label,
    is an error naming both lines); listed images that are absent are skipped and reported in ``notes`` (an
    error when none is present); images of the folder that the file does not list are left out (a note).
    """
    text = read_label_text(label_file)
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.startswith("#")]
    if not lines:
        raise SeprobeError(f"label file {label_file} holds no label; valid: '<file> <label>' lines or one wnid "
                           "per line")

    def label(value: str, line: int) -> int:
        i = (wnid_to_index(value) if re.fullmatch(r"n\d{8}", value)
             else int(value) if _INDEX.fullmatch(value) else None)
        if i is None or not 0 <= i < 1000:
            raise SeprobeError(f"{label_file}: line {line}: label {value!r}; valid: an ImageNet-1k wnid "
                               "(n01443537) or an index 0-999")
        return i

    kaggle = bool(_KAGGLE_HEADER.match(lines[0][1]))
    rows = [(n, _split(line)) for n, line in (lines[1:] if kaggle else lines)]
    if not rows:
        raise SeprobeError(f"label file {label_file} holds a header and no label; valid: one line per image")
    if not kaggle and all(len(r) == 1 for _, r in rows):
        if all(_INDEX.fullmatch(r[0]) for _, r in rows):
            raise SeprobeError(f"{label_file}: one number per line looks like the devkit's ILSVRC2012_ID ground "
                               "truth, whose class ids are not the sorted indices; valid: one wnid per line, or "
                               "'<file> <index or wnid>' lines")
        files = _images(root)
        if len(rows) != len(files):
            raise SeprobeError(f"{label_file}: {len(rows)} labels for {len(files)} images in {root}; valid: "
                               "one wnid per image, in sorted file order")
        return LabelledImages(tuple(files), tuple(label(r[0], n) for n, r in rows), names, True,
                              "flat folder + label list")
    by_stem = {p.stem: p for p in _images(root)} if kaggle else {}
    seen: dict[Path, int] = {}
    paths, lab, absent = [], [], []
    for n, r in rows:
        if len(r) < 2 or not r[0] or not r[1]:
            valid = "'<ImageId>,<wnid> <box> ...'" if kaggle else "'<file> <label>' (more columns are ignored)"
            raise SeprobeError(f"{label_file}: line {n}: {' '.join(r)!r}; valid: {valid}")
        if kaggle:
            path, value = by_stem.get(r[0], root / r[0]), r[1].split()[0]
        else:
            path, value = root / r[0], r[1]
        i = label(value, n)
        key = path.resolve()
        if key in seen:
            raise SeprobeError(f"{label_file}: line {n}: image {r[0]!r} is listed again (first on line "
                               f"{seen[key]}); valid: each image once, with one label")
        seen[key] = n
        if not path.is_file():
            absent.append(r[0])
            continue
        paths.append(path)
        lab.append(i)
    layout = "flat folder + Kaggle ImageId,PredictionString CSV" if kaggle else "flat folder + '<file> <label>' list"
    if not paths:
        raise SeprobeError(f"{label_file}: none of the {len(rows)} images it lists is in {root} (e.g. "
                           f"{absent[0]!r}); valid: as data the folder that holds the listed files", argument="data")
    notes = []
    if absent:
        notes.append(f"{len(absent)} images listed in {label_file.name} are not in the data folder and were "
                     f"skipped (e.g. {absent[0]!r})")
    unlisted = len({p.resolve() for p in _images(root)} - set(seen))
    if unlisted:
        notes.append(f"{unlisted} images of the data folder are not listed in {label_file.name} and were left out")
    return LabelledImages(tuple(paths), tuple(lab), names, True, layout, tuple(notes))


def select(images: LabelledImages, per_class: int | None) -> LabelledImages:
    """The first ``per_class`` images of every class (in path order)."""
    if per_class is None:
        return images
    check_int("samples_per_class", per_class)
    taken: dict[int, int] = defaultdict(int)
    keep = []
    for p, lab in zip(images.paths, images.labels, strict=True):
        if taken[lab] < per_class:
            taken[lab] += 1
            keep.append((p, lab))
    return LabelledImages(tuple(p for p, _ in keep), tuple(lab for _, lab in keep), images.class_names,
                          images.imagenet, images.layout, images.notes)


def hold_out(images: LabelledImages, per_class: int) -> tuple[LabelledImages, LabelledImages]:
    """``(kept, held)``: the last ``per_class`` images of every class (in path order) held out, the others kept.
    Every class must keep at least one image."""
    check_int("holdout_per_class", per_class)
    counts = Counter(images.labels)
    short = [(lab, n) for lab, n in counts.items() if n <= per_class]
    if short:
        lab, n = short[0]
        raise SeprobeError(f"class {images.class_names[lab]!r} has {n} images, none left to train on after holding "
                           f"out {per_class}; valid: holdout_per_class below every class's count (the smallest "
                           f"is {min(counts.values())})", argument="holdout_per_class")
    seen: dict[int, int] = defaultdict(int)
    kept, held = [], []
    for p, lab in zip(images.paths, images.labels, strict=True):
        seen[lab] += 1
        (held if seen[lab] > counts[lab] - per_class else kept).append((p, lab))

    def part(pairs):
        return LabelledImages(tuple(p for p, _ in pairs), tuple(lab for _, lab in pairs), images.class_names,
                              images.imagenet, images.layout, images.notes)

    return part(kept), part(held)


def label_lines(images: LabelledImages, root: Path) -> str:
    """``images`` as a label file of ``root`` (``<file>\t<wnid>`` lines, the files relative to ``root``), which
    :func:`discover` reads back as the same images and labels. ImageNet labels only: a label file names wnids."""
    if not images.imagenet:
        raise SeprobeError(f"{root}: its classes ({images.class_names[0]!r}, ...) are not ImageNet's, and a label "
                           "file names ImageNet wnids; valid: ImageNet images (wnid files, wnid folders or a label "
                           "file)", argument="data")
    wnids = [c.wnid for c in imagenet_classes()]
    base = root.resolve()
    return "".join(f"{Path(os.path.relpath(p.resolve(), base)).as_posix()}\t{wnids[lab]}\n"
                   for p, lab in zip(images.paths, images.labels, strict=True))


@dataclass(frozen=True)
class ImageSource:
    """Labelled images on disk: a ``folder`` in one of the layouts of :func:`discover`, its optional ``labels``
    file, and the first ``samples_per_class`` images of each class (``None``: all). ``arguments`` name the
    folder and the label file in errors (``data`` / ``labels``; ``calibration_data`` / ``calibration_labels``)."""

    folder: Path
    labels: Path | None = None
    samples_per_class: int | None = None
    arguments: tuple[str, str] = ("data", "labels")

    def __post_init__(self):
        data_arg, labels_arg = self.arguments
        check_path(data_arg, self.folder, "a folder of images")
        if self.labels is not None:
            check_path(labels_arg, self.labels, "a label file")
        object.__setattr__(self, "folder", Path(self.folder))
        if self.labels is not None:
            object.__setattr__(self, "labels", Path(self.labels))
        if self.folder.is_file():
            raise SeprobeError(f"{data_arg} {str(self.folder)!r} is a file; valid: a folder of images",
                               argument=data_arg)
        if not self.folder.is_dir():
            raise SeprobeError(f"{data_arg} {str(self.folder)!r} does not exist; valid: a folder of images "
                               "(wnid_name files, class folders, or a flat folder with a label file)",
                               argument=data_arg)
        if self.labels is not None and not self.labels.is_file():
            what = "is a folder" if self.labels.is_dir() else "does not exist"
            raise SeprobeError(f"{labels_arg} {str(self.labels)!r} {what}; valid: a label file", argument=labels_arg)
        check_int("samples_per_class", self.samples_per_class)

    def read(self) -> LabelledImages:
        """The images, their labels checked (:func:`discover`), the first ``samples_per_class`` of each class."""
        return select(discover(self.folder, self.labels), self.samples_per_class)


def to_rgb(im):
    """An 8-bit RGB image. 16- and 32-bit integer images (PNG mode ``I;16``, ``I``) are scaled by 255 / 65535
    (PIL's own ``convert`` clips them at 255, turning almost every pixel white); float images (mode ``F``) are
    taken as 0-1 when their maximum is at most 1, else as 0-255."""
    import numpy as np
    from PIL import Image

    if im.mode.startswith("I") or im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16") or (im.mode == "I" and a.max(initial=0) > 255):
            a = a * (255 / 65535)
        elif im.mode == "F" and a.max(initial=0) <= 1:
            a = a * 255
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")
    return im.convert("RGB")


def check_readable(images: LabelledImages) -> list[str]:
    """Open every image's header (cheap: no decoding); raise :class:`SeprobeError` when none can be read,
    else return the messages of those that cannot (the pass skips them)."""
    from PIL import Image

    failed = []
    for path in images.paths:
        try:
            with Image.open(path) as im:
                im.size  # noqa: B018  (the header is parsed by open)
        except Exception as e:  # PIL raises many types for non-image files
            failed.append(f"{path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    if len(failed) == len(images.paths):
        raise SeprobeError(f"none of the {len(failed)} images can be read (e.g. {failed[0]}); valid: JPEG, PNG "
                           "or other images PIL can open")
    return failed


class ViewDataset(torch.utils.data.Dataset):
    """Each image as ``views`` tensors: view 0 the evaluation crop, views 1.. seeded augmented crops.
    Item ``i`` is image ``i // views``, view ``i % views``; it returns (tensor, label, i, failure).

    An unreadable or corrupt image yields ``None`` (with its path and the reason), never an exception.
    """

    def __init__(self, images: LabelledImages, pre: Preprocessing, views: int = 1, seed: int = 0):
        check_int("views", views)
        self.images, self.views, self.seed = images, views, seed
        self.eval_t, self.view_t = pre.eval_transform(), pre.view_transform()

    def __len__(self) -> int:
        return len(self.images.paths) * self.views

    def __getitem__(self, i: int):
        from PIL import Image

        k, view = divmod(i, self.views)
        path, label = self.images.paths[k], self.images.labels[k]
        try:
            with Image.open(path) as im:
                im = to_rgb(im)
                if view == 0:
                    return self.eval_t(im), label, i, None
                with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
                    # the same views in every run and worker
                    torch.default_generator.manual_seed(self.seed * 1_000_003 + i)
                    return self.view_t(im), label, i, None
        except Exception as e:  # PIL raises many types for truncated or non-image files
            return None, label, i, f"{path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def collate(batch):
    """Stack the readable images; pass the failures on as messages."""
    ok = [b for b in batch if b[0] is not None]
    failed = [b[3] for b in batch if b[0] is None]
    if not ok:
        return None, None, None, failed
    return (torch.stack([b[0] for b in ok]), torch.tensor([b[1] for b in ok]), torch.tensor([b[2] for b in ok]),
            failed)
