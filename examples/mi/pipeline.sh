#!/usr/bin/env bash
# Known-truth data -> DEMI (s = 4) vs InfoNCE -> pointwise MI of a few pairs -> `estimate` on plain .npy arrays.
# Run from the repo root: bash examples/mi/pipeline.sh   (about 3 CPU minutes)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$HERE/../..${PYTHONPATH:+:$PYTHONPATH}"   # the repo, when mlkit is not installed
export MLKIT_CACHE="$WORK/cache"
export OMP_NUM_THREADS=1                                      # small matmuls: one thread per process is fastest

# 1. 20,000 pairs of the correlated Gaussian with I(x; y) = 12 nats (x.npy, y.npy, truth.json)
python -m mlkit mi synth --out "$WORK/gauss" --true-mi 12 --dim 20 --rows 20000

# 2. DEMI-IS with 4 subviews (config.yaml), then InfoNCE on the same rows; each prints estimate vs truth
show='import json, sys; m = json.load(sys.stdin)["metrics"]; print({k: round(v, 3) for k, v in m.items() if k.startswith("test/") and not k.endswith("_seed_std")})'
python -m mlkit mi train --config "$HERE/config.yaml" --data "$WORK/gauss" --project "$WORK/runs" --name demi \
  --quiet --json | python -c "$show"
python -m mlkit mi train --data "$WORK/gauss" --estimator infonce --project "$WORK/runs" --name infonce \
  --set epochs=6 --quiet --json | python -c "$show"
echo "estimate-vs-truth curve: $WORK/runs/mi/demi/mi_curve.png (deleted on exit; copy it to keep it)"

# 3. pointwise MI log p(y|x)/p(y) of pairs 'x1,...,x20;y1,...,y20', one JSON line each
python - "$WORK/gauss" > "$WORK/pairs.txt" <<'PY'
import sys, numpy as np
x, y = np.load(sys.argv[1] + "/x.npy"), np.load(sys.argv[1] + "/y.npy")
for i, j in ((0, 0), (1, 1), (0, 1), (2, 3)):  # two true pairs, two shuffled ones
    print(",".join(f"{v:.4f}" for v in x[i]) + ";" + ",".join(f"{v:.4f}" for v in y[j]))
PY
python -m mlkit mi predict --model "$WORK/runs/mi/demi/weights/best.pt" --input "$WORK/pairs.txt" --quiet

# 4. any two .npy arrays with paired rows: estimate with a 95% interval over 3 seeds
python -m mlkit mi estimate --x "$WORK/gauss/x.npy" --y "$WORK/gauss/y.npy" --splits 4 --quiet \
  | python -c 'import json, sys; d = json.load(sys.stdin); print({k: d[k] for k in ("estimate", "ci", "seeds", "terms", "seconds")})'
