"""Benchmark: the training engine's step against a bare PyTorch loop, and its data path against the step.

1. Step overhead: the engine's ``Stepper.step`` (learning rate set per step, GradScaler pass-through, top-1 hits
   counted on the device) against ``zero_grad / cross_entropy / backward / SGD step`` on a copy of the same
   network, the same in-memory batch and optimiser, interleaved A, B, A, B in one process. Target: ratio <= 1.03.
2. Data path: decoding the shared CIFAR-10 train set once (50,000 JPEGs, timed), then one augmented global batch
   (order, pad + crop + flip, normalisation) against one training step at the same batch. Target: the batch at
   least 3x faster than the step.

    python tests/benchmarks/bench_train.py [--threads 1] [--batch-size 128] [--repeats 30] [--width 32]
"""

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from seprobe.cost.timing import interleaved, wall_clock
from seprobe.distributed import World
from seprobe.training import Recipe, TrainData, load_data
from seprobe.training.batches import Batching, epoch_order, memory_train
from seprobe.training.steps import Stepper

CIFAR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10"


def cifar_net(width: int) -> nn.Module:
    """A small CIFAR network (3 conv + BN + ReLU stages, global pool, linear): a step of a few tens of ms."""
    layers, channels = [], 3
    for k, out in enumerate((width, 2 * width, 4 * width)):
        layers += [nn.Conv2d(channels, out, 3, stride=1 if k == 0 else 2, padding=1, bias=False),
                   nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        channels = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))


def medians(records) -> dict[str, float]:
    names = {r["name"] for r in records}
    return {n: statistics.median(r["seconds"] for r in records if r["name"] == n) for n in names}


def step_overhead(args) -> float:
    torch.manual_seed(0)
    model = cifar_net(args.width)
    bare = copy.deepcopy(model)
    recipe = Recipe(batch_size=args.batch_size)
    stepper = Stepper(model, model, recipe, torch.device("cpu"))
    opt = torch.optim.SGD(bare.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    x, y = torch.randn(args.batch_size, 3, 32, 32), torch.randint(0, 10, (args.batch_size,))

    def engine():
        stepper.step(x, y, recipe.lr)

    def plain():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(bare(x), y).backward()
        opt.step()

    m = medians(interleaved({"engine": engine, "bare": plain}, wall_clock, warmup=3, repeats=args.repeats))
    print(f"step, batch {args.batch_size}: engine {1e3 * m['engine']:.1f} ms, bare loop {1e3 * m['bare']:.1f} ms, "
          f"ratio {m['engine'] / m['bare']:.3f} (target <= 1.03)")
    return m["bare"]


def data_path(args, step_seconds: float) -> None:
    if not (CIFAR / "train").is_dir():
        print(f"data path: skipped, {CIFAR} is absent")
        return
    start = time.perf_counter()
    data = load_data(TrainData(CIFAR), progress=True)
    print(f"decoding CIFAR-10 once: {len(data.train)} train + {len(data.val)} test images in "
          f"{time.perf_counter() - start:.1f} s ({data.decode_seconds:.1f} s decoding, "
          f"{(len(data.train) + len(data.val)) / data.decode_seconds:.0f} img/s; the rest is listing the files and "
          "opening every header)")
    order, generator = epoch_order(0, 0, len(data.train))
    steps = len(data.train) // args.batch_size
    batches = memory_train(data.train, data, order, generator, range(steps),
                           batching=Batching(args.batch_size, World(), torch.device("cpu")))
    times = []
    for _ in range(min(args.repeats * 3, steps)):
        times.append(wall_clock(lambda: next(batches)))
    batch = statistics.median(times)
    print(f"one augmented batch of {args.batch_size}: {1e3 * batch:.2f} ms vs the step {1e3 * step_seconds:.1f} ms: "
          f"{step_seconds / batch:.1f}x faster (target >= 3x); a whole epoch's batches: "
          f"{steps * batch:.1f} s")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--width", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    data_path(args, step_overhead(args))


if __name__ == "__main__":
    main()
