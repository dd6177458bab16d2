"""Training and validation images, from the layouts users have, as the training loop consumes them.

Layouts (:func:`load_data`, ``TrainData.train`` and ``TrainData.val``):

* ``DIR`` with ``DIR/train`` and ``DIR/test`` (or ``DIR/val``) class folders (``shared/data/cifar10``, copies of
  ImageFolder trees) and no ``val``;
* separate ``train`` and ``val`` folders, in any layout :func:`~seprobe.data.images.discover` reads (with the
  label files ``train_labels`` / ``val_labels``);
* torchvision's CIFAR files: ``cifar-10-batches-py/`` or ``cifar-100-python/`` (or ``DIR`` above them),
  recognised by their file names, read with an unpickler that admits numpy arrays only.

Classes: ImageNet wnids (``discover`` tells) keep their ImageNet-1k indices and a 1000-way head; other class
folders are numbered 0..K-1 in sorted name order, and the caller sizes the head from ``num_classes``.

Two steps, two objects: :func:`list_data` makes a :class:`DataListing` (the files, their headers read, and what
a run is checked against), :func:`decode` turns it into the :class:`Datasets` a run trains on. The listing
refuses what would surprise: an unreadable header, a class folder without images (it would widen the head), a
single class, a large image among small ones (the size of most training images decides the kind of run, never
the first file's). Its record of the data (:meth:`DataListing.describe`) is keyed by content (the files' paths
within their folder, labels and sizes), so that a data folder moved or renamed resumes its runs.

Small images (side <= 64: CIFAR, Tiny ImageNet) are decoded once into a uint8 N x C x H x W tensor that lives
on the training device, augmented there (:mod:`.augment`) and normalised with the training set's per-channel
mean and std. Larger images are read by a ``DataLoader`` with workers: a random resized crop and a flip at
training (each image's randomness seeded by seed, epoch and image, so any worker count gives the same batches),
the evaluation preprocessing (resize + centre crop, ImageNet mean / std) at validation.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from ..data.images import LabelledImages, Preprocessing, discover, select, to_rgb
from ..defaults import NUM_WORKERS
from ..errors import SeprobeError
from ..schema import Bool, Choice, Int, Options
from .recipe import SMALL_SIDE

CIFAR_FILES = {"cifar-10-batches-py": ("batches.meta", [f"data_batch_{i}" for i in range(1, 6)], "test_batch"),
               "cifar-100-python": ("meta", ["train"], "test")}


@dataclass(frozen=True)
class TrainData(Options):
    """Where the images are (see the module docstring) and how many to take: the first ``samples_per_class``
    / ``val_samples_per_class`` of each class, in sorted file order (file order for CIFAR's files).
    ``preprocessing``: the model's evaluation transform for large images (ImageNet's by default);
    ``num_workers``: loader processes for large images (may change on resume). ``normalise``: in-memory images
    are normalised by the training set's per-channel mean and std (``"data"``, He et al.'s CIFAR recipe) or by
    ``preprocessing``'s (``"model"``: the network's evaluation transform, so that its weights are evaluated by
    every command exactly as they were trained). ``upscale``: small images are read like large ones, each
    brought to the model's input by ``preprocessing`` (a random resized crop at training, the evaluation resize
    and centre crop at validation), as an ImageNet network sees them in ``seprobe evaluate``: for fine-tuning
    such a network on Tiny ImageNet."""

    train: str | Path
    val: str | Path | None = None
    train_labels: str | Path | None = None
    val_labels: str | Path | None = None
    samples_per_class: Annotated[int | None, Int(1, description="an integer >= 1, or None (all)")] = None
    val_samples_per_class: Annotated[int | None, Int(1, description="an integer >= 1, or None (all)")] = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    num_workers: Annotated[int, Int(0)] = NUM_WORKERS["train"]
    normalise: Annotated[str, Choice(choices=("data", "model"))] = "data"
    upscale: Annotated[bool, Bool()] = False


@dataclass(frozen=True)
class Split:
    """One side of the data: ``images`` a uint8 N x C x H x W tensor (small images), or ``files`` (large)."""

    labels: torch.Tensor
    images: torch.Tensor | None = None
    files: LabelledImages | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class DataListing:
    """What :func:`list_data` found, nothing decoded yet: each side's labels with its image files (CIFAR's arrays,
    read with the listing), and what a run is checked against before decoding (:meth:`describe`)."""

    request: TrainData
    train: Split
    val: Split
    num_classes: int              # the head's size: 1000 for ImageNet classes
    imagenet: bool
    class_names: tuple[str, ...]
    layout: str
    side: int                     # the training images' side (the crop for large images)
    in_memory: bool               # trained from memory: small image files (:func:`decode` reads them), CIFAR's arrays
    notes: tuple[str, ...] = ()
    content: dict = field(default_factory=dict)   # each side's content key (:func:`_files_key`, :func:`_arrays_key`)

    def describe(self) -> dict:
        """The record of the data kept with a run, keyed by content (no paths: a moved data folder may resume)."""
        return _describe(self)


@dataclass(frozen=True)
class Datasets:
    """The images a run trains and validates on: in memory (``Split.images``) or files read as it goes."""

    train: Split
    val: Split
    num_classes: int
    imagenet: bool
    class_names: tuple[str, ...]
    layout: str
    side: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    request: TrainData            # what was asked for: the loop reads preprocessing and num_workers from it
    decode_seconds: float = 0.0
    notes: tuple[str, ...] = ()
    content: dict = field(default_factory=dict)

    @property
    def in_memory(self) -> bool:
        return self.train.images is not None

    def describe(self) -> dict:
        """As :meth:`DataListing.describe`: the same record before and after decoding."""
        return _describe(self)


def _describe(data: DataListing | Datasets) -> dict:
    """The options asked for first (a resume that differs is refused naming the first difference), then what
    was found, then each side's content key."""
    request = data.request
    return {"samples_per_class": request.samples_per_class, "val_samples_per_class": request.val_samples_per_class,
            "upscale": request.upscale, "layout": data.layout, "train_images": len(data.train),
            "val_images": len(data.val), "num_classes": data.num_classes, "imagenet": data.imagenet,
            "side": data.side, "in_memory": data.in_memory,
            "classes": list(data.class_names) if not data.imagenet else "imagenet", **data.content}


def data_paths(request: TrainData) -> dict:
    """Where the data of ``request`` is, as absolute paths (a run resumed from another working folder finds
    it): kept with a run for information, not compared."""
    return {k: None if getattr(request, k) is None else os.path.abspath(getattr(request, k))
            for k in ("train", "val", "train_labels", "val_labels")}


def _key(rows) -> str:
    """A short digest of ``rows`` (tuples of plain values), in order."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(("\t".join(map(str, row)) + "\n").encode())
    return digest.hexdigest()[:16]


def _files_key(images: LabelledImages, root: Path, sizes: list[int]) -> str:
    """The content key of one side's image files: each path relative to its folder ``root``, its label and its
    size in bytes (``sizes``, read with the headers), so that the same files under another folder name match."""
    return _key((Path(os.path.relpath(p, root)).as_posix(), label, size)
                for p, label, size in zip(images.paths, images.labels, sizes, strict=True))


def _arrays_key(split: Split) -> str:
    """The content key of CIFAR's arrays of one side: their labels and pixels."""
    digest = hashlib.sha256(split.labels.numpy().tobytes())
    digest.update(split.images.contiguous().numpy().data)
    return digest.hexdigest()[:16]


# --- layouts -------------------------------------------------------------------------------------------------------

def _cifar_root(path: Path) -> Path | None:
    for name, (meta, _, _) in CIFAR_FILES.items():
        for candidate in (path, path / name):
            if candidate.name == name and (candidate / meta).is_file():
                return candidate
    return None


def _split_folders(root: Path) -> tuple[Path, Path] | None:
    if not (root / "train").is_dir():
        return None
    for name in ("test", "val"):
        if (root / name).is_dir():
            return root / "train", root / name
    return None


def load_data(request: TrainData, progress: bool = False) -> Datasets:
    """The images of ``request``, decoded: :func:`list_data`, then :func:`decode`."""
    return decode(list_data(request), progress)


def list_data(request: TrainData) -> DataListing:
    """The images of ``request``, listed and their headers read but small image files not yet decoded (that is
    the long part: :func:`decode`). Every layout problem is one :class:`SeprobeError`, raised here, and the
    listing knows what a run is checked against (``num_classes``, :meth:`DataListing.describe`).

    A caller that must size the model's head lists the data, builds the model with ``num_classes`` and
    passes the listing to :func:`~seprobe.training.train`, which decodes it after its own checks."""
    root = Path(request.train)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise SeprobeError(f"train folder {str(root)!r} {what}; valid: a folder of class folders, DIR with "
                           "train/ and test/ (or val/), or torchvision's CIFAR files")
    cifar = _cifar_root(root) if request.val is None else None
    if cifar is not None:
        if request.upscale:
            raise SeprobeError(f"upscale reads image files, and {str(cifar)!r} holds CIFAR's pickled arrays; "
                               "valid: CIFAR as image folders (e.g. shared/data/cifar10), or no upscale",
                               argument="upscale")
        return _cifar_listing(cifar, request)
    if request.val is None:
        folders = _split_folders(root)
        if folders is None:
            raise SeprobeError(f"train folder {str(root)!r} holds neither train/ + test/ (or val/) nor CIFAR's "
                               "files; valid: give val, or such a folder")
        # the layout names no folder of the user's: it is part of the run's record, which a moved folder keeps
        train_dir, val_dir, layout = *folders, f"{folders[0].name}/ + {folders[1].name}/ of one folder"
    else:
        train_dir, val_dir, layout = root, Path(request.val), "train + val folders"
    train = select(discover(train_dir, request.train_labels), request.samples_per_class)
    val = select(discover(val_dir, request.val_labels), request.val_samples_per_class)
    _check_same_classes(train, val)
    return _file_listing(train, val, request, f"{layout} ({train.layout})", (train_dir, val_dir))


def _check_classes(labels, names: tuple[str, ...], where: str) -> None:
    """Refuse training data of one class: every prediction is then right, and top-1 reads 100 %."""
    found = Counter(int(v) for v in labels)
    if len(found) < 2:
        (only,) = found or [None]
        name = names[only] if only is not None and only < len(names) else only
        raise SeprobeError(f"{where} hold one class ({name!r}); valid: at least two classes (with one, every "
                           "prediction is right and top-1 reads 100 % without learning anything)")


def _check_no_empty_class(part: LabelledImages, folder: Path, side: str) -> None:
    """Refuse a class folder without images: its class would still get a place in the head (whose size is the
    number of class folders), and in validation it would be a class never measured."""
    if part.imagenet:
        return  # a 1000-way head whatever the folders
    counts = Counter(part.labels)
    empty = [name for k, name in enumerate(part.class_names) if not counts[k]]
    if empty:
        more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
        raise SeprobeError(f"class folder {str(folder / empty[0])!r}{more} holds no image; valid: images directly "
                           f"inside every class folder of the {side} data, or the class removed from train and "
                           "val (an empty folder still adds a class to the network's head)")


def _check_same_classes(train: LabelledImages, val: LabelledImages) -> None:
    if train.imagenet != val.imagenet:
        which = "train" if train.imagenet else "val"
        raise SeprobeError(f"only the {which} images have ImageNet classes; valid: ImageNet wnids on both sides "
                           "or the same class folders on both")
    if not train.imagenet and train.class_names != val.class_names:
        differ = sorted(set(train.class_names) ^ set(val.class_names)) or [next(
            a for a, b in zip(train.class_names, val.class_names, strict=False) if a != b)]
        raise SeprobeError(f"the val classes differ from the train classes (e.g. {differ[0]!r}); valid: the same "
                           "class folders in train and val")


# --- CIFAR's own files -----------------------------------------------------------------------------------------------

class _ArraysOnly(pickle.Unpickler):
    """CIFAR's pickles hold dicts of lists and numpy arrays: anything else (code) is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed")
        return super().find_class(module, name)


def _read_pickle(path: Path) -> dict:
    if not path.is_file():
        raise SeprobeError(f"CIFAR file {str(path)!r} is missing; valid: the folder torchvision's CIFAR10 / "
                           "CIFAR100 download leaves, complete")
    try:
        with open(path, "rb") as f:
            return _ArraysOnly(f, encoding="latin1").load()
    except Exception as e:  # truncated or foreign files raise many types
        raise SeprobeError(f"CIFAR file {str(path)!r} cannot be read ({type(e).__name__}: {e}); valid: the "
                           "pickles torchvision's CIFAR10 / CIFAR100 download leaves") from None


def _cifar_part(root: Path, files: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in files:
        d = _read_pickle(root / name)
        key = "labels" if "labels" in d else "fine_labels"
        if "data" not in d or key not in d:
            raise SeprobeError(f"CIFAR file {str(root / name)!r} lacks 'data' or '{key}'; valid: torchvision's "
                               "CIFAR pickles")
        images.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(int(v) for v in d[key])
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)


def _first_per_class(labels: torch.Tensor, per_class: int | None) -> torch.Tensor:
    """Indices of the first ``per_class`` items of each label, in order."""
    if per_class is None:
        return torch.arange(len(labels))
    keep, taken = [], {}
    for i, lab in enumerate(labels.tolist()):
        if taken.get(lab, 0) < per_class:
            taken[lab] = taken.get(lab, 0) + 1
            keep.append(i)
    return torch.tensor(keep, dtype=torch.int64)


def _cifar_listing(root: Path, request: TrainData) -> DataListing:
    meta_name, train_files, test_file = CIFAR_FILES[root.name]
    meta = _read_pickle(root / meta_name)
    names = tuple(meta.get("label_names") or meta.get("fine_label_names") or ())
    parts = []
    for files, per_class in ((train_files, request.samples_per_class), ([test_file], request.val_samples_per_class)):
        images, labels = _cifar_part(root, files)
        keep = _first_per_class(labels, per_class)
        parts.append(Split(labels[keep], images=images[keep]))
    train, val = parts
    _check_classes(train.labels, names, f"the training images of {str(root)!r}")
    return DataListing(request, train, val, _num_classes(False, names, train), False, names,
                       f"torchvision {root.name}", max(train.images.shape[-2:]), in_memory=True,
                       content={"train_files": _arrays_key(train), "val_files": _arrays_key(val)})


# --- decoding small images once ---------------------------------------------------------------------------------

def _header(path: Path) -> tuple[int, int, int] | str:
    """(width, height, bytes) of the image at ``path``, from its header (nothing decoded), or why it cannot be
    read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            width, height = im.size
        return width, height, path.stat().st_size
    except Exception as e:  # PIL raises many types for non-image files
        return f"{path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def _headers(images: LabelledImages, threads: int = 8) -> tuple[list[tuple[int, int]], list[int]]:
    """Every image's size in pixels and in bytes, from its header; an unreadable one is a SeprobeError."""
    with ThreadPoolExecutor(threads) as pool:
        found = list(pool.map(_header, images.paths, chunksize=256))
    failed = [f for f in found if isinstance(f, str)]
    if failed:
        raise SeprobeError(f"{len(failed)} image(s) cannot be read (e.g. {failed[0]}); valid: every training "
                           "and validation image readable")
    return [(w, h) for w, h, _ in found], [size for _, _, size in found]


def _small(train: LabelledImages, sizes: list[tuple[int, int]]) -> bool:
    """Whether the training images are small (side <= SMALL_SIDE: in memory, the CIFAR recipe), decided by most
    of them, whatever their order: a few small images among large ones are read like the others (ImageNet has
    some), a large one among small ones cannot be meant (it would switch the run to the large-image recipe)."""
    small = [k for k, size in enumerate(sizes) if max(size) <= SMALL_SIDE]
    if 2 * len(small) < len(sizes):
        return False
    large = next((k for k, size in enumerate(sizes) if max(size) > SMALL_SIDE), None)
    if large is not None:
        (w, h), (sw, sh) = sizes[large], sizes[small[0]]
        raise SeprobeError(f"the training images mix small and large ones: {str(train.paths[small[0]])!r} is "
                           f"{sw}x{sh}, {str(train.paths[large])!r} is {w}x{h} ({len(sizes) - len(small)} of "
                           f"{len(sizes)} are larger than {SMALL_SIDE} pixels); valid: small images (side <= "
                           f"{SMALL_SIDE}, the CIFAR recipe) or large ones (the ImageNet recipe), or upscale to read "
                           "every image as a large one")
    return True


def _check_one_size(parts: list[tuple[LabelledImages, list[tuple[int, int]]]]) -> None:
    """Refuse small images of more than one size (they are stacked into one tensor), naming one of each."""
    first_images, first_sizes = parts[0]
    want = first_sizes[0]
    for images, sizes in parts:
        odd = next((k for k, size in enumerate(sizes) if size != want), None)
        if odd is not None:
            raise SeprobeError(f"image {str(images.paths[odd])!r} is {sizes[odd][0]}x{sizes[odd][1]} but "
                               f"{str(first_images.paths[0])!r} is {want[0]}x{want[1]}; valid: small images (side "
                               f"<= {SMALL_SIDE}) all of one size")


def _decode_one(path: Path) -> np.ndarray:
    """The pixels of the image at ``path``; an image broken past its header (a truncated JPEG, which the
    listing opened) is a SeprobeError naming it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(to_rgb(im))
    except Exception as e:  # PIL raises many types for truncated or corrupt data
        reason = str(e).splitlines()[0] if str(e) else ""
        raise SeprobeError(f"image {str(path)!r} cannot be decoded ({type(e).__name__}: {reason}); valid: every "
                           "training and validation image complete (copy it again, or remove it)") from None


def decode_all(images: LabelledImages, threads: int = 4, progress: bool = False) -> torch.Tensor:
    """Every image of ``images`` as one uint8 N x 3 x H x W tensor (all of one size, else a SeprobeError)."""
    from tqdm.auto import tqdm

    with ThreadPoolExecutor(threads) as pool:
        arrays = list(tqdm(pool.map(_decode_one, images.paths, chunksize=64), total=len(images.paths),
                           desc="decoding", unit="img", disable=not progress, leave=False))
    shape = arrays[0].shape
    odd = next((k for k, a in enumerate(arrays) if a.shape != shape), None)
    if odd is not None:
        raise SeprobeError(f"image {str(images.paths[odd])!r} is {arrays[odd].shape[1]}x{arrays[odd].shape[0]} "
                           f"but {images.paths[0].name} is {shape[1]}x{shape[0]}; valid: small images (side <= "
                           f"{SMALL_SIDE}) all of one size")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _file_listing(train: LabelledImages, val: LabelledImages, request: TrainData, layout: str,
                  roots: tuple[Path, Path]) -> DataListing:
    """The listing of image files: every header read (sizes in pixels and bytes), the run's kind decided from
    all of them (:func:`_small`), the classes checked, each side keyed by content."""
    (train_sizes, train_bytes), (val_sizes, val_bytes) = _headers(train), _headers(val)
    small = not request.upscale and _small(train, train_sizes)
    if small:
        _check_one_size([(train, train_sizes), (val, val_sizes)])
    _check_no_empty_class(train, roots[0], "training")
    _check_no_empty_class(val, roots[1], "validation")
    _check_classes(train.labels, train.class_names, f"the training images of {str(roots[0])!r}")
    content = {"train_files": _files_key(train, roots[0], train_bytes),
               "val_files": _files_key(val, roots[1], val_bytes)}
    return DataListing(request, Split(torch.tensor(train.labels), files=train),
                       Split(torch.tensor(val.labels), files=val), 1000 if train.imagenet else len(train.class_names),
                       train.imagenet, train.class_names, layout,
                       max(train_sizes[0]) if small else request.preprocessing.crop, in_memory=small,
                       notes=train.notes + val.notes, content=content)


def decode(listing: DataListing, progress: bool = False) -> Datasets:
    """The datasets of ``listing``: its small image files decoded into memory (the long part of a start), CIFAR's
    arrays as they were read, large images left as files."""
    request = listing.request
    if not listing.in_memory:
        pre = request.preprocessing
        return Datasets(listing.train, listing.val, listing.num_classes, listing.imagenet, listing.class_names,
                        listing.layout, listing.side, tuple(pre.mean), tuple(pre.std), request, notes=listing.notes,
                        content=listing.content)
    train, val, seconds = listing.train, listing.val, 0.0
    if train.images is None:
        start = time.perf_counter()
        train, val = [Split(p.labels, images=decode_all(p.files, progress=progress)) for p in (train, val)]
        seconds = time.perf_counter() - start
    if train.images.shape[1:] != val.images.shape[1:]:
        raise SeprobeError(f"train images are {tuple(train.images.shape[1:])} but val images "
                           f"{tuple(val.images.shape[1:])}; valid: both of one size")
    mean, std = channel_stats(train.images) if request.normalise == "data" else (request.preprocessing.mean,
                                                                               request.preprocessing.std)
    return Datasets(train, val, _num_classes(listing.imagenet, listing.class_names, train), listing.imagenet,
                    listing.class_names, listing.layout, max(train.images.shape[-2:]), mean, std, request, seconds,
                    listing.notes, listing.content)


def _num_classes(imagenet: bool, names: tuple[str, ...], train: Split) -> int:
    return 1000 if imagenet else (len(names) or int(train.labels.max()) + 1)


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images, in 0-1, over every pixel (exact integer sums,
    taken in chunks so that 50,000 CIFAR images need no float copy)."""
    sums = torch.zeros(images.shape[1], dtype=torch.int64)
    squares = torch.zeros(images.shape[1], dtype=torch.int64)
    for part in images.split(chunk):
        wide = part.long()
        sums += wide.sum((0, 2, 3))
        squares += (wide * wide).sum((0, 2, 3))
    count = images.numel() // images.shape[1]
    mean = sums.double() / count
    var = squares.double() / count - mean * mean
    return tuple((mean / 255).tolist()), tuple((var.clamp(min=0).sqrt() / 255).tolist())
