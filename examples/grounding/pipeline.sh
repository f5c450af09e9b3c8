#!/usr/bin/env bash
# synth -> train NCE+Distill and NCE only -> eval (table + per type) -> predict (JSON lines + PNGs).
# Run from anywhere: bash examples/grounding/pipeline.sh     (about 2-3 minutes on 2 CPU cores)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$HERE/../..${PYTHONPATH:+:$PYTHONPATH}"   # the repo, when mlkit is not installed
MLKIT=${MLKIT:-"python -m mlkit"}
OUT=${OUT:-/tmp/mlkit-grounding-example}
rm -rf "$OUT"

# 1. a synthetic set in the real Flickr30K Entities layout: Sentences/ Annotations/ flickr30k-images/
#    {train,val,test}.txt, features/<id>.npz (boxes, 77-d feats, det_logits) + classes.txt, glove_synth.txt
$MLKIT grounding synth --out "$OUT/shapes" --train 400 --val 50 --test 100 --seed 1
head -n 2 "$OUT/shapes/Sentences/$(head -n 1 "$OUT/shapes/test.txt").txt"
# 2. train NCE+Distill, then the NCE-only ablation on the same data
$MLKIT grounding train --config "$HERE/config.yaml" --data "$OUT/shapes" --project "$OUT/runs" --name distill \
  --device cpu
$MLKIT grounding train --config "$HERE/config.yaml" --data "$OUT/shapes" --project "$OUT/runs" --name nce \
  --no-distill --device cpu
# 3. evaluate again: R@1/5/10, pointing game, proposal upper bound, per type, baselines (JSON on stdout)
$MLKIT grounding eval --model "$OUT/runs/grounding/distill/weights/best.pt" --device cpu --json > "$OUT/eval.json"
cat "$OUT/runs/grounding/distill/eval.md" "$OUT/runs/grounding/nce/eval.md"
# the reviewable phrase->class map built through word vectors
head -c 300 "$OUT/runs/grounding/distill/phrase_to_label.json"; echo
# 4. predict: {"image", "phrase"} lines -> {"phrase", "box", "score"} lines; PNGs (boxes + heat maps) in $OUT/pred
for id in $(head -n 3 "$OUT/shapes/test.txt"); do
  echo "{\"image\": \"$OUT/shapes/flickr30k-images/$id.jpg\", \"phrase\": \"the red ball\"}"
done | $MLKIT grounding predict --model "$OUT/runs/grounding/distill/weights/best.pt" --device cpu \
  --save "$OUT/pred" > "$OUT/predictions.jsonl"
cat "$OUT/predictions.jsonl"
ls "$OUT/pred" "$OUT/runs/grounding/distill/viz"
