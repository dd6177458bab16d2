"""Labelled images from disk, in the layouts ImageNet users have, with the model's own preprocessing.

Layouts (``discover``):

* a flat folder of files named ``<wnid>_<name>.<ext>`` (like ``shared/data/imagenet-samples``);
* class folders named by wnid (ImageNet's train/val trees);
* any ImageFolder tree (class folders of other names: labels are the sorted folder names, not ImageNet's);
* a flat folder with a label file (``labels=``): lines ``<file> <label>`` (Caffe's ``val.txt``; the label an
  index 0-999 or a wnid), or one wnid per line for the files in sorted order (TF-slim's
  ``imagenet_2012_validation_synset_labels.txt``). The devkit's ``ILSVRC2012_validation_ground_truth.txt``
  numbers classes in the devkit's own order, not the sorted one, and is refused rather than misread.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import transforms as T

from ..errors import SeprobeError
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
        return T.Compose([T.Resize(self.resize, interpolation=_interp(self.interpolation)), T.CenterCrop(self.crop),
                          T.ToTensor(), T.Normalize(self.mean, self.std)])

    def view_transform(self) -> T.Compose:
        """An augmented view: a random resized crop (35-100 % of the area) and a random horizontal flip."""
        return T.Compose([T.RandomResizedCrop(self.crop, scale=(0.35, 1.0), interpolation=_interp(self.interpolation)),
                          T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(self.mean, self.std)])


def _interp(name: str) -> T.InterpolationMode:
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


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def discover(root: str | Path, labels: str | Path | None = None) -> LabelledImages:
    root = Path(root)
    if not root.is_dir():
        raise SeprobeError(f"data folder {str(root)!r} does not exist; valid: a folder of images "
                           "(wnid_name files, class folders, or a flat folder with --labels)")
    imagenet_names = tuple(c.name for c in imagenet_classes())
    if labels is not None:
        return _with_label_file(root, Path(labels), imagenet_names)
    files = _images(root)
    if files and all(_WNID_FILE.match(p.name) for p in files):
        idx = [wnid_to_index(_WNID_FILE.match(p.name).group(1)) for p in files]
        bad = [p.name for p, i in zip(files, idx, strict=True) if i is None]
        if bad:
            raise SeprobeError(f"{root}: file {bad[0]!r} names no ImageNet-1k wnid; valid: <wnid>_<name>.<ext>")
        return LabelledImages(tuple(files), tuple(idx), imagenet_names, True, "wnid-named files")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise SeprobeError(f"{root}: no class folders and no <wnid>_<name> images; valid: one of the layouts in "
                           "`seprobe activations --help`, or a flat folder with --labels FILE")
    is_imagenet = all(wnid_to_index(f.name) is not None for f in folders)
    paths, lab = [], []
    for k, folder in enumerate(folders):
        for p in _images(folder):
            paths.append(p)
            lab.append(wnid_to_index(folder.name) if is_imagenet else k)
    names = imagenet_names if is_imagenet else tuple(f.name for f in folders)
    return LabelledImages(tuple(paths), tuple(lab), names, is_imagenet,
                          "wnid class folders" if is_imagenet else "class folders")


def _with_label_file(root: Path, label_file: Path, names: tuple[str, ...]) -> LabelledImages:
    if not label_file.is_file():
        raise SeprobeError(f"label file {str(label_file)!r} does not exist; valid: a '<file> <label>' list "
                           "or one wnid per line")
    rows = [line.split() for line in label_file.read_text().splitlines() if line.strip()]
    files = _images(root)

    def label(value: str, line: int) -> int:
        i = wnid_to_index(value) if value.startswith("n") else (int(value) if value.isdigit() else None)
        if i is None or not 0 <= i < 1000:
            raise SeprobeError(f"{label_file}: line {line}: label {value!r}; valid: a wnid or an index 0-999")
        return i

    if all(len(r) == 1 for r in rows):
        if all(r[0].isdigit() for r in rows):
            raise SeprobeError(f"{label_file}: one number per line looks like the devkit's ILSVRC2012_ID ground "
                               "truth, whose class ids are not the sorted indices; valid: one wnid per line, or "
                               "'<file> <index or wnid>' lines")
        if len(rows) != len(files):
            raise SeprobeError(f"{label_file}: {len(rows)} labels for {len(files)} images in {root}; valid: "
                               "one wnid per image, in sorted file order")
        return LabelledImages(tuple(files), tuple(label(r[0], i + 1) for i, r in enumerate(rows)), names, True,
                              "flat folder + label list")
    paths, lab = [], []
    for i, r in enumerate(rows):
        if len(r) != 2:
            raise SeprobeError(f"{label_file}: line {i + 1}: {' '.join(r)!r}; valid: '<file> <label>'")
        paths.append(root / r[0])
        lab.append(label(r[1], i + 1))
    return LabelledImages(tuple(paths), tuple(lab), names, True, "flat folder + '<file> <label>' list")


def select(images: LabelledImages, per_class: int | None) -> LabelledImages:
    """The first ``per_class`` images of every class (in path order)."""
    if per_class is None:
        return images
    if per_class < 1:
        raise SeprobeError(f"invalid --samples-per-class {per_class}; valid: an integer >= 1")
    taken: dict[int, int] = defaultdict(int)
    keep = []
    for p, lab in zip(images.paths, images.labels, strict=True):
        if taken[lab] < per_class:
            taken[lab] += 1
            keep.append((p, lab))
    return LabelledImages(tuple(p for p, _ in keep), tuple(lab for _, lab in keep), images.class_names,
                          images.imagenet, images.layout)


class ViewDataset(torch.utils.data.Dataset):
    """Each image as ``views`` tensors: view 0 the evaluation crop, views 1.. seeded augmented crops.
    Item ``i`` is image ``i // views``, view ``i % views``; it returns (tensor, label, i, failure).

    An unreadable or corrupt image yields ``None`` (with its path and the reason), never an exception.
    """

    def __init__(self, images: LabelledImages, pre: Preprocessing, views: int = 1, seed: int = 0):
        if views < 1:
            raise SeprobeError(f"invalid --views {views}; valid: an integer >= 1")
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
                im = im.convert("RGB")
                if view == 0:
                    return self.eval_t(im), label, i, None
                torch.manual_seed(self.seed * 1_000_003 + i)  # the same views in every run and worker
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
