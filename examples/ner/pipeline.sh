#!/usr/bin/env bash
# Synthetic corpus -> lattice model -> tag raw text in a pipeline. Run from anywhere: bash examples/ner/pipeline.sh
# Needs mlkit importable (pip install -e . or run from the repo root) and jq for the last step.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$HERE/../..${PYTHONPATH:+:$PYTHONPATH}"   # the repo, when mlkit is not installed

# 1. a small synthetic lexicon-dependence corpus (BMES splits + lexicon.txt + words.vec)
python -m mlkit ner synth --out "$WORK/data" --train 2000 --dev 200 --test 200

# 2. train the lattice with its lexicon and word vectors (stderr: progress; stdout: one JSON summary)
python -m mlkit ner train --config "$HERE/config.yaml" --data "$WORK/data" \
  --lexicon "$WORK/data/lexicon.txt" --word-vectors "$WORK/data/words.vec" \
  --project "$WORK/runs" --name demo --quiet --json | jq '.metrics["test/f1"]'

# 3. eval on the test split, per-type scores as JSON
python -m mlkit ner eval --model "$WORK/runs/ner/demo/weights/best.pt" --data "$WORK/data" --json --quiet \
  | jq '.metrics | with_entries(select(.key | endswith("/f1")))'

# 4. tag raw text: one sentence per line in, one JSON line out, streamed (spans index the original line)
awk 'BEGIN { RS = "" } NR <= 4 { n = split($0, row, "\n"); s = ""; for (i = 1; i <= n; i++) { split(row[i], f, " "); s = s f[1] } print s }' \
  "$WORK/data/test.char.bmes" > "$WORK/raw.txt"
printf '  %s  与 %s\n' "$(sed -n 1p "$WORK/raw.txt")" "$(sed -n 2p "$WORK/raw.txt")" >> "$WORK/raw.txt"  # spaces kept in offsets
python -m mlkit ner predict --model "$WORK/runs/ner/demo/weights/best.pt" --quiet < "$WORK/raw.txt" \
  | head -n 5 | jq -c '{text, entities: [.entities[] | "\(.type):\(.text)@\(.start)"]}'

# 5. the same as CoNLL columns (char tag), first sentence only
python -m mlkit ner predict --model "$WORK/runs/ner/demo/weights/best.pt" --output-format conll --quiet \
  < "$WORK/raw.txt" | awk 'NF == 0 { exit } { print }' | head -n 12
