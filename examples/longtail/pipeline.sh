#!/usr/bin/env bash
# LiVT end to end: MGP (pretrain) -> Balanced Fine-Tuning with Bal-BCE (and plain BCE to compare) -> eval -> predict.
# Run from the repository root: bash examples/longtail/pipeline.sh     (about 2 minutes on 2 CPU cores)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$HERE/../..${PYTHONPATH:+:$PYTHONPATH}"   # the repo, when mlkit is not installed
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
MLKIT=${MLKIT:-"python -m mlkit"}
OUT=${OUT:-/tmp/mlkit-longtail-example}
rm -rf "$OUT"
RUNS="$OUT/runs/longtail"

# 1. stage 1, MGP: MAE on the long-tailed train images, no labels (reconstructions.png in the run dir)
$MLKIT longtail pretrain --config "$HERE/config.yaml" --project "$OUT/runs" --name mgp --device cpu --quiet
# 2. stage 2, BFT from the MGP encoder: Bal-BCE, and plain BCE as the baseline
$MLKIT longtail train --config "$HERE/config.yaml" --project "$OUT/runs" --name balbce --init "$RUNS/mgp" \
  --device cpu --quiet
$MLKIT longtail train --config "$HERE/config.yaml" --project "$OUT/runs" --name bce --init "$RUNS/mgp" \
  --loss bce --device cpu --quiet
# 3. eval: overall / balanced accuracy, many / medium / few, ECE; per_class.csv and confusion.png in <run>/eval
for run in balbce bce; do
  $MLKIT longtail eval --model "$RUNS/$run" --device cpu --quiet --json > "$OUT/eval_$run.json"
  cat "$OUT/eval_$run.json"
done
# 4. predict: image paths on stdin -> JSON lines with the top-3 classes (scores are sigmoids of the plain logits)
ls "$RUNS"/balbce/samples/*.png | $MLKIT longtail predict --model "$RUNS/balbce" --device cpu --quiet \
  > "$OUT/predictions.jsonl"
head -n 3 "$OUT/predictions.jsonl"
ls "$RUNS/mgp/reconstructions.png" "$RUNS/balbce/eval/confusion.png" "$RUNS/balbce/eval/per_class.csv"
