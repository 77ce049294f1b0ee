#!/usr/bin/env bash
# Prepared GPU device check (issue 6): on a lent GPU machine with no network and no faiss/optuna/mlflow, install the
# copied tree without dependencies, run the quick perf table on CUDA and the GPU-marked tests, and leave everything
# under $OUT. Budget: under 5 minutes. Usage, from the repository root:  OUT=/some/dir bash .ci/device_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:?set OUT to the folder that comes back}"
mkdir -p "$OUT"

{ date -u; nvidia-smi || true; python -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
  python -m pip list 2>/dev/null | grep -iE "^(torch|torchvision|numpy|faiss|scikit-learn|pandas|scipy|pytest) " || true
  uptime; } > "$OUT/env.txt" 2>&1

python -m pip install -q --no-deps --no-build-isolation -e . > "$OUT/install.txt" 2>&1 || { cat "$OUT/install.txt"; exit 1; }

# 1. the whole table, the issue's GPU configuration (ResNet-18 CIFAR stem, batch 512, bf16, channels_last)
timeout 240 tempbench perf --quick --device cuda --json --out "$OUT/perf-gpu.json" > /dev/null 2> "$OUT/perf-gpu.err"
echo "perf rc=$?" | tee -a "$OUT/status.txt"
python -c "import json, sys; from tempbench.perf import format_full_table as f; print(f(json.load(open(sys.argv[1]))))" \
  "$OUT/perf-gpu.json" > "$OUT/perf-gpu.txt" 2>&1 && cat "$OUT/perf-gpu.txt"

# 2. the GPU-marked tests (collection errors from optional packages that are missing here do not stop the rest)
timeout 150 python -m pytest -q -m gpu -p no:cacheprovider --continue-on-collection-errors tests \
  > "$OUT/pytest-gpu.txt" 2>&1
echo "pytest rc=$?" | tee -a "$OUT/status.txt"
tail -5 "$OUT/pytest-gpu.txt"

# 3. best effort, if time is left: the training rows again with torch.compile
timeout 200 tempbench perf --quick --device cuda --compile --skip-eval --json --out "$OUT/perf-gpu-compile.json" \
  > /dev/null 2> "$OUT/perf-gpu-compile.err"
echo "perf --compile rc=$?" | tee -a "$OUT/status.txt"
exit 0
