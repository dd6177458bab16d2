"""Benchmark: wall time of `seprobe reports` (every complexity study, no timing, no activations), Python start-up
included, written to a temporary folder. Target (the studies issue): under 60 s on a 2-core CPU.

    python tests/benchmarks/bench_reports.py [--runs 2]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    runs = parser.parse_args().runs
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "seprobe", "reports", "--studies", str(ROOT / "studies"),
                            "--out", out], check=True, capture_output=True)
            times.append(time.perf_counter() - start)
            count = len(list(Path(out).glob("*.md"))) - 1
    print(f"seprobe reports: {count} reports, median {statistics.median(times):.1f} s (min {min(times):.1f}, "
          f"max {max(times):.1f}, {runs} runs; target < 60 s)")


if __name__ == "__main__":
    main()
