#!/usr/bin/env bash
# Dynamic KG -> DKGE on snapshot 1 -> online update to snapshot 2 -> eval, predict, export.
# Run from the repo root: bash examples/kge/pipeline.sh   (needs mlkit importable, or run inside the repo; and jq)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$HERE/../..${PYTHONPATH:+:$PYTHONPATH}"        # the repo, when mlkit is not installed
export MLKIT_CACHE="$WORK/cache"

# 1. a seeded dynamic KG: snapshot1/ and snapshot2/ in the OpenKE layout (ids differ per snapshot)
KG="$(python -m mlkit kge synth --out "$WORK/kg" --entities 400 --triples 4000)"

# 2. train DKGE on snapshot 1; filtered MRR / Hits@10 on its test split
python -m mlkit kge train --config "$HERE/config.yaml" --data "$KG" --snapshot 1 --project "$WORK/runs" \
  --name offline --quiet --json | jq -c '.metrics | {"test/mrr", "test/hits@10", best_epoch}'

# 3. online update to snapshot 2: only the affected region trains; the new model is a run of its own
python -m mlkit kge update --config "$HERE/config.yaml" --model "$WORK/runs/kge/offline" --to "$KG/snapshot2" \
  --project "$WORK/runs" --name online --quiet \
  | jq -c '.metrics | {"update/affected_entities", "update/t_aff", "update/t_aff_fraction", "update/seconds", "test/mrr"}'

# 4. the updated model answers queries by name: 'head relation ?' or '? relation tail'
E1="$(sed -n 2p "$KG/snapshot2/entity2id.txt" | cut -f1)"; E2="$(sed -n 3p "$KG/snapshot2/entity2id.txt" | cut -f1)"
R1="$(sed -n 2p "$KG/snapshot2/relation2id.txt" | cut -f1)"
printf '%s\t%s\t?\n?\t%s\t%s\n' "$E1" "$R1" "$R1" "$E2" | python -m mlkit kge predict --model "$WORK/runs/kge/online" --top-k 3 --quiet \
  | jq -c '{id, direction, entities, distances}'

# 5. embeddings as .npy + TSV (joint embeddings o and knowledge embeddings k)
python -m mlkit kge export --model "$WORK/runs/kge/online" --out "$WORK/emb" --quiet | jq -c '.files'
