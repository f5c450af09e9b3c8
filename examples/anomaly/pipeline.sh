#!/usr/bin/env bash
# synth -> preprocess -> train -> eval -> predict on the synthetic `blob` category, exactly as a user would run it.
# Run from the repository root:  bash examples/anomaly/pipeline.sh     (about 5 minutes on 2 CPU cores)
set -euo pipefail
MLKIT=${MLKIT:-"python -m mlkit"}            # or `mlkit` when the package is installed
OUT=${OUT:-/tmp/mlkit-anomaly-example}
rm -rf "$OUT"

# 1. the synthetic category in the real MVTec 3D-AD layout (dent = 3-D only, stain = RGB only, combined)
$MLKIT anomaly synth --out "$OUT/raw"
# 2. background plane removal, square padding, largest cluster; writes a new root, never touches the input
$MLKIT anomaly preprocess --data "$OUT/raw" --out "$OUT/mvtec" --quiet
# 3. train (UFF, three memory banks, decision-layer fusion, threshold on validation/good); prints the test table
$MLKIT anomaly train --config examples/anomaly/config.yaml --data "$OUT/mvtec" --project "$OUT/runs" --name blob
# 4. evaluate the checkpoint again and write heatmap panels (RGB | overlay | GT) to $OUT/runs/anomaly/blob/eval/maps
$MLKIT anomaly eval --model "$OUT/runs/anomaly/blob" --project "$OUT/runs" --save-maps --json > "$OUT/eval.json"
# 5. predict: one rgb path per line on stdin (its xyz partner is found in ../xyz), one JSON line out per input
find "$OUT/mvtec/blob/test" -path '*/rgb/*.png' | sort | head -n 6 \
  | $MLKIT anomaly predict --model "$OUT/runs/anomaly/blob" --project "$OUT/runs" > "$OUT/predictions.jsonl"
cat "$OUT/predictions.jsonl"
