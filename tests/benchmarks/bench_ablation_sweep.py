"""Benchmark: an all-blocks ablation sweep against (blocks + 1) plain evaluation passes, in the same run.

MobileNetV3-Small (../shared weights when present, else random weights), the first ``--images`` ImageNet sample
images (else random images written to a temporary folder), CPU. Measured, interleaved ``--repeats`` times:

* sweep: ``ablate(modes="identity")``, every block alone: the full network + one pass per block, each batch
  decoded once, the prefix before the replaced gate reused (and the same with ``reuse=False``);
* plain evaluation: (blocks + 1) times the evaluation pass of ``seprobe evaluate`` (``collect(with_gates=False)``:
  decode, preprocess, forward, score);
* forward only: (blocks + 1) forward passes over images decoded beforehand (the compute alone).

Goal (the ablate issue): the sweep takes no more than 1.10 times the plain evaluation passes.

    OMP_NUM_THREADS=1 python tests/benchmarks/bench_ablation_sweep.py [--images 200] [--repeats 3]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from seprobe.data.images import LabelledImages, ViewDataset, discover
from seprobe.models.blocks import find_blocks
from seprobe.models.factory import load_model
from seprobe.probe.ablation import ablate
from seprobe.probe.activations import collect
from seprobe.probe.evaluation import Loader

SHARED = Path(__file__).resolve().parents[3] / "shared"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    weights = SHARED / "weights" / "tf_mobilenetv3_small_100.pth"
    loaded = load_model("timm:tf_mobilenetv3_small_100", str(weights) if weights.is_file() else "random")
    with tempfile.TemporaryDirectory() as tmp:
        data = SHARED / "data" / "imagenet-samples"
        if not data.is_dir():
            data = _random_images(Path(tmp), args.images)
        found = discover(data)
        images = LabelledImages(found.paths[: args.images], found.labels[: args.images], found.class_names,
                                found.imagenet, found.layout)
        blocks = len(find_blocks(loaded.model, loaded.preprocessing.crop))
        ds = ViewDataset(images, loaded.preprocessing)
        decoded = torch.stack([ds[i][0] for i in range(len(ds))])

        def sweep(reuse=True):
            ablate(loaded, images, modes="identity", batch_size=args.batch_size, progress=False, reuse=reuse,
                   n_boot=200)

        def plain():
            for _ in range(blocks + 1):
                collect(loaded, images, Loader(args.batch_size), progress=False, with_gates=False)

        def forward_only():
            with torch.inference_mode():
                for _ in range(blocks + 1):
                    for batch in decoded.split(args.batch_size):
                        loaded.model(batch)

        runs = {"sweep (prefix reuse)": sweep, "sweep (no reuse)": lambda: sweep(False),
                f"{blocks + 1} plain evaluation passes": plain, f"{blocks + 1} forward passes only": forward_only}
        times = {k: [] for k in runs}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    print(f"MobileNetV3-Small ({'real' if weights.is_file() else 'random'} weights), {len(images.paths)} images, "
          f"{blocks} SE blocks, batch {args.batch_size}, {torch.get_num_threads()} thread(s), "
          f"{args.repeats} repeats (median, min-max):")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, t in times.items():
        print(f"  {name:34s} {med[name]:7.1f} s  ({min(t):.1f}-{max(t):.1f})")
    plain_name = f"{blocks + 1} plain evaluation passes"
    for name in ("sweep (prefix reuse)", "sweep (no reuse)"):
        print(f"  {name} / plain evaluation: {med[name] / med[plain_name]:.2f}x "
              f"(goal <= 1.10x); / forward only: {med[name] / med[f'{blocks + 1} forward passes only']:.2f}x")


def _random_images(root: Path, n: int) -> Path:
    from PIL import Image

    from seprobe.data.imagenet_classes import imagenet_classes

    rng = np.random.default_rng(0)
    classes = imagenet_classes()
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(
            root / f"{classes[i % 1000].wnid}_{i}.jpg")
    return root


if __name__ == "__main__":
    main()
