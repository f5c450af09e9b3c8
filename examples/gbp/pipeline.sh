#!/usr/bin/env bash
# Synthetic graph -> precompute (cached) -> train the MLP on the cached rows -> predict node ids from stdin.
# Run from anywhere: bash examples/gbp/pipeline.sh   (needs mlkit importable, or run inside the repo; and jq)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$HERE/../..${PYTHONPATH:+:$PYTHONPATH}"        # the repo, when mlkit is not installed
export MLKIT_CACHE="$WORK/cache"                                  # where precomputed rows are cached

# 1. a 20,000-node degree-corrected planted partition (5 classes, 32 features), streamed to disk;
#    stdout is the folder it wrote
GRAPH="$(python -m mlkit gbp synth --out "$WORK/graph" --nodes 20000 --features 32 --train 0.05 --val 0.05 \
  --test 0.1 --quiet)"

# 2a. the memory model's projected peak of that precompute (GiB), nothing computed
python -m mlkit gbp precompute --config "$HERE/config.yaml" --data "$GRAPH" --dry-run --quiet \
  | jq -c '{mode, walk_entries, peak_gib: .projected_gib.peak}'

# 2. precompute the propagated features of the 4,000 split nodes; stdout: one JSON line (rows file, timings)
python -m mlkit gbp precompute --config "$HERE/config.yaml" --data "$GRAPH" --quiet \
  | jq -c '{estimator, shape, timings}'

# 3. train: the same parameters hit the cache, so training starts at once
python -m mlkit gbp train --config "$HERE/config.yaml" --data "$GRAPH" --project "$WORK/runs" --name demo \
  --quiet --json | jq -c '.metrics | {"val/f1", "test/f1", best_epoch}'

# 4. predict: node ids on stdin, one JSON line each (a node outside the targets is propagated on demand)
printf '0\n1\n2\n3\n' | python -m mlkit gbp predict --model "$WORK/runs/gbp/demo/weights/best.pt" --quiet \
  | jq -c '{id, label: .label, p: (.probs | max)}'
