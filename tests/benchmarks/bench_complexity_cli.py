"""Benchmark: wall time of `seprobe complexity --model se_resnet50` (no --time), Python start-up included,
against a plain script that imports torch, torchvision and fvcore and counts the same model once.

Target (the complexity issue): under 5 s on a 2-core CPU, and no slower than the plain script, although
seprobe counts two models (with and without SE) where the plain script counts one.

    python tests/benchmarks/bench_complexity_cli.py [--runs 5]
"""

import argparse
import statistics
import subprocess
import sys
import time

PLAIN = """
import torch
from fvcore.nn import FlopCountAnalysis
import seprobe
model = seprobe.build_model("se_resnet50").eval()
analysis = FlopCountAnalysis(model, torch.zeros(1, 3, 224, 224))
print(analysis.total())
"""


def wall(cmd):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    seprobe_cmd = [sys.executable, "-m", "seprobe", "complexity", "--model", "se_resnet50"]
    plain_cmd = [sys.executable, "-c", PLAIN]
    wall(seprobe_cmd)  # warm the file cache
    times = {"seprobe complexity (SE + plain model)": [], "plain torch+fvcore script (SE model only)": []}
    for _ in range(runs):  # interleaved, so drift falls on both
        times["seprobe complexity (SE + plain model)"].append(wall(seprobe_cmd))
        times["plain torch+fvcore script (SE model only)"].append(wall(plain_cmd))
    for name, t in times.items():
        print(f"{name:45s} median {statistics.median(t):.2f} s  min {min(t):.2f} s  max {max(t):.2f} s  "
              f"({runs} runs)")


if __name__ == "__main__":
    main()
