#!/usr/bin/env bash
# The GPU check on a lent device machine, in one command (README, "The GPU check"):
#   run(command="bash tests/benchmarks/gpu_checks.sh", carry=[".whl"], timeout_s=480)
# Installs the carried pure-Python wheels in .whl/ (fvcore, iopath, yacs, termcolor, portalocker: the image lacks
# them) into /tmp/site, puts them and this checkout on PYTHONPATH (seprobe itself needs no install), shows the GPU,
# then runs tests/benchmarks/gpu_checks.py with --out "$OUT" (reports/ off the device machine), so that
# timing_gpu.md, timing_gpu.csv and gpu_checks.log come back. Extra arguments go to the script (--budget-s 200).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-reports}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,temperature.gpu,clocks.sm,clocks.max.sm --format=csv || true
python3 -c "import fvcore, seprobe, torch; print('seprobe', seprobe.__version__, 'torch', torch.__version__)"
mkdir -p "$out"
python3 tests/benchmarks/gpu_checks.py --out "$out" "$@" 2>&1 | tee "$out/gpu_checks.log"
