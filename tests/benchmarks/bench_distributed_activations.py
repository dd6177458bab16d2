"""Benchmark: the activations pass on 1 process and under ``torchrun --nproc-per-node 2`` (CPU, gloo).

MobileNetV3-Small with the real weights of ``../shared/weights`` over ``../shared/data/tiny-imagenet-val`` (10,000
images, 64x64, resized to 256 and centre-cropped to 224 as for ImageNet). The labels come from its
``val_annotations.txt`` (``<file>\\t<wnid>\\t...``), laid out here as ``<wnid>_<file>`` symbolic links in a temporary
folder. Reports the wall time of ``collect()`` (rank 0, combining included) and of the whole command, top-1, and
how far the two runs' gate means lie apart.

    python tests/benchmarks/bench_distributed_activations.py [--limit N] [--batch-size 50]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data" / "tiny-imagenet-val"
WEIGHTS = SHARED / "weights" / "tf_mobilenetv3_small_100.pth"


def worker(data: str, out: str, batch_size: int) -> None:
    import torch

    from seprobe.data.images import discover
    from seprobe.distributed import distributed_session
    from seprobe.models.factory import load_model
    from seprobe.probe.activations import collect
    from seprobe.probe.evaluation import Loader

    images = discover(data)
    loaded = load_model("timm:tf_mobilenetv3_small_100", str(WEIGHTS))
    with distributed_session("cpu") as world:
        run = collect(loaded, images, Loader(batch_size), progress=False)
        if world.is_main:
            run.stats.save(Path(out) / "stats.npz")
            (Path(out) / "run.json").write_text(json.dumps({"seconds": run.seconds, "top1": run.top1,
                                                            "evaluated": run.evaluated, "world": world.size,
                                                            "threads": torch.get_num_threads()}))


def layout(folder: Path, limit: int | None) -> Path:
    rows = [line.split("\t") for line in (DATA / "val_annotations.txt").read_text().splitlines() if line]
    for name, wnid, *_ in rows[:limit]:
        (folder / f"{wnid}_{name}").symlink_to(DATA / "images" / name)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--configs", type=int, default=3, help="2: skip one process on every core")
    args = parser.parse_args()
    if not (DATA.is_dir() and WEIGHTS.is_file()):
        sys.exit(f"needs {DATA} and {WEIGHTS}")
    import numpy as np

    from seprobe.probe.gate_stats import GateStats

    with tempfile.TemporaryDirectory() as tmp:
        data = layout(Path(tmp) / "images", args.limit) if (Path(tmp) / "images").mkdir() is None else None
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        results = {}
        # torchrun sets OMP_NUM_THREADS=1 for each of several ranks; one process takes every core by default
        for key, ranks, threads in (("1x1", 1, "1"), ("2x1", 2, None), ("1xall", 1, None))[:args.configs]:
            out = Path(tmp) / key
            out.mkdir()
            launch = [sys.executable] if ranks == 1 else [sys.executable, "-m", "torch.distributed.run",
                                                          "--standalone", "--nproc-per-node", str(ranks)]
            start = time.perf_counter()
            subprocess.run([*launch, __file__, "--worker", str(data), str(out), str(args.batch_size)],
                           env={**env, "OMP_NUM_THREADS": threads} if threads else env, check=True)
            results[key] = {**json.loads((out / "run.json").read_text()), "command": time.perf_counter() - start}
            print(f"{ranks} process(es): {results[key]}; load average {os.getloadavg()[0]:.1f}", flush=True)
        one, two = (GateStats.load(Path(tmp) / key / "stats.npz") for key in ("1x1", "2x1"))
        gap = max(float(np.abs(one.blocks[b].mean - two.blocks[b].mean).max()) for b in one.blocks)
        same = all((one.blocks[b].count == two.blocks[b].count).all() for b in one.blocks)
        speedup = results["1x1"]["seconds"] / results["2x1"]["seconds"]
        print(f"speed-up of the pass, 2 ranks over 1 (1 thread each): {speedup:.2f}x; "
              f"counts equal: {same}; largest gap between gate means: {gap:.1e}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
