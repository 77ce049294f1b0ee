#!/usr/bin/env bash
# Head width, weight decay and learning rate of the flickr8k-locked suite, chosen on Flickr8k's val split (val_r_mean)
# with `fixed`, seed 0, at the suite's other settings (batch 512, every pair each epoch, 40 epochs). Two runs at a
# time, one thread each. The test split is computed by every run but is not read here.
set -euo pipefail
out="${1:-results/flickr8k-locked/selection}"
base=(--strategy fixed --dataset flickr8k-128 --seed 0 --epochs 40 --no-tracking --out "$out"
      --set towers=locked --set encoder=efficientnet_lite0 --set epoch_by=pairs --set batch_size=512
      --set optimizer=adamw --set warmup_epochs=1 --set threads=1 --set progress=false --set projector_out=128)
run() { tempbench train "${base[@]}" --set projector_hidden="$1" --set weight_decay="$2" --set lr="$3" > /dev/null; }
run 512 0.1 2e-3 & run 512 0.5 2e-3 & wait
run 512 0.1 5e-4 & run 1024 0.1 2e-3 & wait
python - "$out/runs.csv" <<'PY'
import json, sys
import pandas as pd
rows = pd.read_csv(sys.argv[1])
cfg = rows["config"].map(json.loads)
table = pd.DataFrame({"projector_hidden": cfg.map(lambda c: c["projector_hidden"]),
                      "weight_decay": cfg.map(lambda c: c["weight_decay"]), "lr": cfg.map(lambda c: c["lr"]),
                      "val_r_mean": rows["val_r_mean"].round(2), "final_loss": rows["final_loss"].round(4)})
print(table.sort_values("val_r_mean", ascending=False).to_string(index=False))
PY
