"""Spec §7 on YAGO-3SP: DKGE offline (a), online update (b), retrain (c), stale (d), TransE retrain (e).

    python benchmarks/kge_dynamic.py [--data ../shared/data/dkge/yago-3sp] [--frac 0.5] [--dim 50]
        [--epochs 10] [--optimizer adam] [--lr 0.01] [--out table.json]

Prints one JSON object (metrics, seconds, region sizes) on stdout and a Markdown table on stderr. Skips (exit 0,
a note on stderr) when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlkit.tasks.kge import experiment as X  # noqa: E402

DEFAULT = REPO.parent / "shared" / "data" / "dkge" / "yago-3sp"


def table(res: dict) -> str:
    rows = [
        "| run | filtered MRR | Hits@10 | MR | changed-region MRR | CPU s (wall s) |",
        "|---|---|---|---|---|---|",
    ]
    names = {
        "a_offline_g1": "(a) DKGE offline on G1'",
        "b_update": "(b) DKGE online update G1'->G2'",
        "c_retrain": "(c) DKGE retrain on G2'",
        "d_stale": "(d) stale (a) on G2'",
        "e_transe": "(e) TransE retrain on G2'",
    }
    for k, label in names.items():
        r = res[k]
        ch = f"{r['changed_mrr']:.4f}" if "changed_mrr" in r else "-"
        sec = f"{r['cpu_seconds']:.1f} ({r['seconds']:.1f})" if "seconds" in r else "-"
        rows.append(f"| {label} | {r['mrr']:.4f} | {r['hits@10']:.4f} | {r['mr']:.0f} | {ch} | {sec} |")
    reg = res["region"]
    rows.append(
        f"\n|T_aff| = {reg['t_aff']} ({reg['t_aff_fraction']:.1%} of G2' train); affected entities "
        f"{reg['affected_entities']}, new entities {reg['new_entities']}, affected relations "
        f"{reg['affected_relations']}, new relations {reg['new_relations']}; update/retrain CPU time "
        f"{res['b_update']['cpu_seconds'] / res['c_retrain']['cpu_seconds']:.2f}"
    )
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT))
    ap.add_argument("--frac", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dim", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--optimizer", default="adam")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--affected", default="subgraph")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if not Path(a.data).is_dir():
        print(f"skipped: {a.data} is absent (YAGO-3SP snapshot folders)", file=sys.stderr)
        return 0
    cfg = X.default_cfg(a.dim, a.epochs, a.optimizer, a.lr)
    cfg["online"]["affected"] = a.affected
    res = X.run(Path(a.data), a.frac, a.seed, cfg, log=lambda m: print(m, file=sys.stderr, flush=True))
    res["config"] = cfg
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    print(table(res), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
