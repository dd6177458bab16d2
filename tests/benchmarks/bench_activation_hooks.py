"""Benchmark: the cost of reading the gates, against plain inference, in the same run.

SE-ResNet-50, batch 32, 224x224, CPU: plain `model(x)` under inference_mode, interleaved with the same forward
pass plus the gate hooks and the streaming statistics update of all 16 blocks over the 1000 ImageNet classes
(+ "all"). Target (the activations issue): overhead under 5 %.

    python tests/benchmarks/bench_activation_hooks.py [--repeats 5] [--batch-size 32]
"""

import argparse
import copy
import statistics

import torch

from seprobe import build_model
from seprobe.cost.timing import interleaved, wall_clock
from seprobe.models.blocks import find_blocks, gate_range
from seprobe.probe.gate_stats import GateStats
from seprobe.probe.hooks import GateHooks


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    model = build_model("se_resnet50").eval()
    x = torch.randn(args.batch_size, 3, 224, 224)
    labels = torch.randint(0, 1000, (args.batch_size,))
    gates = find_blocks(model)
    stats = GateStats({g.name: (g.channels, *gate_range(model, g)) for g in gates}, num_classes=1000)

    hooked_model = copy.deepcopy(model)  # the same weights; only this copy carries the hooks
    recorder = GateHooks(hooked_model, gates)

    def plain():
        with torch.inference_mode():
            model(x)

    def hooked():
        with torch.inference_mode():
            hooked_model(x)
        update()

    def update():
        for g in gates:
            stats.update(g.name, recorder.values[g.name], labels)

    records = interleaved({"plain inference": plain, "with hooks + statistics": hooked}, wall_clock,
                          warmup=1, repeats=args.repeats)
    records += interleaved({"statistics update alone": update}, wall_clock, warmup=1, repeats=args.repeats)
    medians = {}
    for name in ("plain inference", "with hooks + statistics", "statistics update alone"):
        t = [r["seconds"] for r in records if r["name"] == name]
        medians[name] = statistics.median(t)
        print(f"{name:26s} median {1e3 * medians[name]:8.1f} ms  (min {1e3 * min(t):.1f}, max {1e3 * max(t):.1f}, "
              f"{len(t)} repeats, batch {args.batch_size})")
    pairs = [h["seconds"] / p["seconds"] for p, h in zip(records[0:2 * args.repeats:2], records[1:2 * args.repeats:2],
                                                         strict=True)]
    print(f"overhead of hooks + statistics: {100 * (statistics.median(pairs) - 1):+.2f} % (median of "
          f"{len(pairs)} interleaved pairs); statistics alone: "
          f"{100 * medians['statistics update alone'] / medians['plain inference']:.2f} % of plain inference "
          "(target < 5 %)")


if __name__ == "__main__":
    main()
