#!/usr/bin/env bash
# synth -> train (DRIT) -> eval (diversity, FID/KID on feat-cnn, content + DA checks) -> predict (PNGs + JSON lines).
# Run from the repo root (or anywhere): bash examples/translate/pipeline.sh    (a few minutes on 2 CPU cores)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$HERE/../..${PYTHONPATH:+:$PYTHONPATH}"   # the repo, when mlkit is not installed
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
MLKIT=${MLKIT:-"python -m mlkit"}
OUT=${OUT:-/tmp/mlkit-translate-example}
rm -rf "$OUT"

# 1. mnistm-lite in the DRIT layout: trainA/ (plain digits) trainB/ (|photo - digit|) testA/ testB/ labels.csv
$MLKIT translate synth --out "$OUT/mnistm" --train 600 --test 100 --seed 1
# 2. train; grids of test translations land in runs/translate/demo/images/ after every epoch
$MLKIT translate train --config "$HERE/config.yaml" --data "$OUT/mnistm" --project "$OUT/runs" --name demo \
  --device cpu --quiet --json > "$OUT/train.json"
# 3. evaluate again: diversity (pixel L1 + feat-cnn distance), FID/KID, cross-cycle L1, content and DA accuracies
$MLKIT translate eval --model "$OUT/runs/translate/demo/weights/best.pt" --device cpu --quiet --json > "$OUT/eval.json"
python -c 'import json, sys; m = json.load(open(sys.argv[1]))["metrics"]; print({k: round(v, 4) for k, v in m.items() if "_a2b" not in k and "_b2a" not in k or "content" in k})' "$OUT/eval.json"
# 4. predict: image paths on stdin (a TAB + a testB image: take that image's attribute) -> 5 PNGs + a grid each
A=$(ls "$OUT"/mnistm/testA/*.png | head -n 3)
B=$(ls "$OUT"/mnistm/testB/*.png | head -n 1)
{ printf '%s\n' $A; printf '%s\t%s\n' "$(echo "$A" | head -n 1)" "$B"; } \
  | $MLKIT translate predict --model "$OUT/runs/translate/demo/weights/best.pt" --device cpu --quiet \
      --save "$OUT/pred" > "$OUT/predictions.jsonl"
python -c 'import json, sys; [print(r["id"][-40:], r["attribute"], len(r["outputs"]), r["grid"]) for r in map(json.loads, open(sys.argv[1]))]' "$OUT/predictions.jsonl"
ls "$OUT/runs/translate/demo/images" "$OUT/runs/translate/demo/eval"
