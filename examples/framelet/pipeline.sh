#!/usr/bin/env bash
# Synthetic CSBM graphs -> train UFGConv-S on the heterophilous one -> predict node ids from stdin.
# Run from anywhere: bash examples/framelet/pipeline.sh   (needs mlkit importable, or run inside the repo)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$HERE/../..${PYTHONPATH:+:$PYTHONPATH}"   # the repo, when mlkit is not installed
export MLKIT_CACHE="$WORK/cache"                             # cached lambda_max / framelet operators

# 1. CSBM graphs (homophilous, heterophilous, noisy copies; generic node layout) and the two-class graph set
python -m mlkit framelet synth --out "$WORK/data" --nodes 1000 --features 64 --graphs 100

# 2. train UFGConv-S (3 reps x 100 epochs, see config.yaml); stdout is one JSON object with the metrics
python -m mlkit framelet train --config "$HERE/config.yaml" --data "$WORK/data/heterophilous" \
  --project "$WORK/runs" --name demo --quiet --json \
  | python -c 'import json, sys; m = json.load(sys.stdin)["metrics"]; print({k: round(m[k], 4) for k in ("test/acc", "test/acc_std", "shrink/zero_frac")})'

# 3. predict: node ids on stdin, one JSON line each ({"id", "label", "probs"})
printf '0\n1\n2\n3\n' | python -m mlkit framelet predict --model "$WORK/runs/framelet/demo/weights/best.pt" --quiet
