#!/usr/bin/env bash
# synth -> train (TW-autoencoder) -> eval (both protocols) -> predict (palette masks + heatmap overlays).
# Run from anywhere: bash examples/segment/pipeline.sh     (about 1-2 minutes on 2 CPU cores)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$HERE/../..${PYTHONPATH:+:$PYTHONPATH}"   # the repo, when mlkit is not installed
MLKIT=${MLKIT:-"python -m mlkit"}
OUT=${OUT:-/tmp/mlkit-segment-example}
rm -rf "$OUT"

# 1. the seeded shapes set in the generic layout: images/ masks/ labels.csv split.csv classes.txt
$MLKIT segment synth --out "$OUT/shapes" --train 300 --val 100 --seed 1
# 2. train: classification pretraining, then image labels for all + masks for 10 % (heatmaps = seg logits)
$MLKIT segment train --config "$HERE/config.yaml" --data "$OUT/shapes" --project "$OUT/runs" --name tw \
  --device cpu
# 3. evaluate again: mIoU (standard: void ignored; original: centre crop, void -> bg), per-class IoU, confusion
$MLKIT segment eval --model "$OUT/runs/segment/tw/weights/best.pt" --device cpu --json > "$OUT/eval.json"
cat "$OUT/eval.json"
# 4. predict: image paths on stdin -> JSON lines; palette masks and heatmap overlays land in $OUT/pred
ls "$OUT"/shapes/images/*.png | tail -n 4 \
  | $MLKIT segment predict --model "$OUT/runs/segment/tw/weights/best.pt" --device cpu --save "$OUT/pred" \
  > "$OUT/predictions.jsonl"
cat "$OUT/predictions.jsonl"
ls "$OUT/runs/segment/tw/heatmaps" "$OUT/pred"
