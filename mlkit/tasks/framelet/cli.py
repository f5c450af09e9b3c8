"""Extra verb of the framelet task: `mlkit framelet synth` writes the synthetic datasets of spec section 3."""

from __future__ import annotations

from pathlib import Path

import typer


def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write the datasets into (one sub-folder each)."),
    nodes: int = typer.Option(3000, "--nodes", help="CSBM nodes N."),
    classes: int = typer.Option(4, "--classes", help="CSBM classes C."),
    features: int = typer.Option(200, "--features", help="CSBM feature dimension F."),
    degree: float = typer.Option(10.0, "--degree", help="CSBM expected degree."),
    mu: float = typer.Option(
        1.0, "--mu", help="CSBM class-mean strength: mean = mu sqrt(F/C) e(y) (noise sigma_x = 1)."
    ),
    noise: list[float] = typer.Option(
        [1.0, 2.0], "--noise", help="Feature-noise levels eta for the noisy copies."
    ),
    rewire: list[float] = typer.Option(
        [0.2], "--rewire", help="Structure-noise levels rho (fraction of edges rewired)."
    ),
    graphs: int = typer.Option(600, "--graphs", help="Graphs in the two-class graph-classification set."),
    seed: int = typer.Option(0, "--seed", help="Generator seed."),
) -> None:
    """Write CSBM node-classification graphs (homophilous, heterophilous, feature- and structure-noisy copies of
    the homophilous one; generic node layout) and the two-class graph-classification set (TU raw, SYNTH2)."""
    import sys

    from mlkit.graph.tu import write_tu
    from mlkit.tasks.framelet import synth as S
    from mlkit.tasks.framelet.data import save_graph

    def save(g, folder: str) -> None:
        save_graph(g, out / folder)
        sys.stderr.write(f"wrote {out / folder} ({g.num_nodes} nodes, {g.num_edges // 2} edges)\n")

    kw = {"nodes": nodes, "classes": classes, "features": features, "degree": degree, "mu": mu, "seed": seed}
    homo = S.csbm(ratio=S.RATIOS["homophilous"], name="csbm-homophilous", **kw)
    save(homo, "homophilous")
    save(S.csbm(ratio=S.RATIOS["heterophilous"], name="csbm-heterophilous", **kw), "heterophilous")
    for eta in noise:
        save(S.feature_noise(homo, eta, seed + 1), f"homophilous-feature-noise-{eta:g}")
    for rho in rewire:
        save(S.structure_noise(homo, rho, seed + 1), f"homophilous-rewired-{rho:g}")
    gs, ys = S.two_class_graphs(count=graphs, seed=seed)
    write_tu(out / "graphs", "SYNTH2", gs, ys)
    sys.stderr.write(f"wrote {out / 'graphs'} ({graphs} graphs, TU raw SYNTH2)\n")
