#!/usr/bin/env bash
# Train target model C -> train AdvGAN against it -> eval beside FGSM / PGD-40 -> adversarial PNGs from stdin;
# then an RGB (CIFAR-layout) run with --preset cifar.
# Run from anywhere: bash examples/attack/pipeline.sh   (needs mlkit importable, or run inside the repo)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$HERE/../..${PYTHONPATH:+:$PYTHONPATH}"   # the repo, when mlkit is not installed
export MLKIT_CACHE="$WORK/cache"                             # the seeded digits (MNIST idx layout) live here

# 1. the target: model C (Carlini & Wagner) on the embedded digits; prints {"target": file, "metrics": {...}}
python -m mlkit attack target --target-arch c --out "$WORK/target_c.pt" --set target_epochs=4 --quiet

# 2. AdvGAN against that file (any state dict of a|b|c or TorchScript module works the same way)
python -m mlkit attack train --config "$HERE/config.yaml" --target "$WORK/target_c.pt" \
  --project "$WORK/runs" --name demo --quiet --json \
  | python -c 'import json, sys; m = json.load(sys.stdin)["metrics"]; print({k: round(m[k], 4) for k in ("test/clean_accuracy", "test/success", "test/linf_max")})'

# 3. eval: AdvGAN, FGSM and PGD-40 on 200 test images; eps curve and grids land in runs/attack/demo/eval/
python -m mlkit attack eval --model "$WORK/runs/attack/demo/weights/best.pt" --quiet --json \
  | python -c 'import json, sys; m = json.load(sys.stdin)["metrics"]; print({k: round(v, 3) for k, v in m.items() if k.endswith("success") or k.endswith("per_s")})'
ls "$WORK/runs/attack/demo/eval"

# 4. predict: test images by index (or image paths, optionally ',label'); one JSON line each, plus .npz and a PNG grid
printf 'test:0\ntest:1\ntest:2\n' | python -m mlkit attack predict --model "$WORK/runs/attack/demo/weights/best.pt" \
  --quiet --save "$WORK/adv"
ls "$WORK/adv"

# 5. RGB data: --preset cifar (eps 8/255) on the embedded CIFAR-layout default (seeded coloured shapes written as
#    CIFAR-10 pickles; give --data cifar-10-batches-py/ or an image folder for real data), a CPU-sized ResNet-8
#    target and the CycleGAN generator; a short run of about a minute of CPU
python -m mlkit attack train --preset cifar --target-arch resnet8 --set digits.train=1000 --set digits.test=200 \
  --set val=100 --set target_epochs=2 --set epochs=2 --project "$WORK/runs" --name rgb --quiet --json \
  | python -c 'import json, sys; m = json.load(sys.stdin)["metrics"]; print({k: round(m[k], 4) for k in ("test/clean_accuracy", "test/success", "test/linf_max")})'
