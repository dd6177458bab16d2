"""Ctrl-C at random moments of ``seprobe complexity --model se_resnet152 --time``'s start-up: every run must exit
130 with one line. Lost interrupts showed only under load: run it with two CPU burners beside it::

    python tests/benchmarks/interrupt_sweep.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time

COMMAND = [sys.executable, "-m", "seprobe", "complexity", "--model", "se_resnet152", "--time", "--repeats", "50"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEPROBE_")} | {"SEPROBE_TEST_READY": "1"}
    bad = 0
    for _ in range(args.runs):
        child = subprocess.Popen(COMMAND, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        child.stderr.readline()  # the ready line
        delay = random.uniform(0.0, 1.6)
        time.sleep(delay)
        child.send_signal(signal.SIGINT)
        try:
            _, err = child.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            bad += 1
            print(f"lost at {delay:.3f} s")
            continue
        if child.returncode != 130 or "Traceback" in err:
            bad += 1
            print(f"exit {child.returncode} at {delay:.3f} s: {err[-300:]}")
    print(f"{bad} of {args.runs} runs lost or wrong")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
