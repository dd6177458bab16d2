"""Benchmark: how long the command line takes to answer without doing any work (the surface issue's target:
well under a second): --help, --version, a usage error and a missing input, Python start-up included.

    python tests/benchmarks/bench_startup.py [--runs 10]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

CASES = {
    "seprobe --help": ["--help"],
    "seprobe --version": ["--version"],
    "seprobe complexity --help": ["complexity", "--help"],
    "usage error (--gate softmax)": ["complexity", "--model", "se_resnet50", "--gate", "softmax"],
    "missing inputs (activations)": ["activations", "--stage", "5"],
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEPROBE_")}
    with tempfile.TemporaryDirectory() as cwd:  # no seprobe.toml / pyproject defaults there
        for name, args in CASES.items():
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "seprobe", *args], capture_output=True, cwd=cwd, env=env)
                times.append(time.perf_counter() - start)
            print(f"{name:32s} median {statistics.median(times):.2f} s  max {max(times):.2f} s  ({runs} runs)")


if __name__ == "__main__":
    main()
