"""Attack runs and their measures: success (all images / originally-correct ones), robust accuracy, L-inf / L2 of
the final x' - x, images/s, per-class success, the success-vs-eps curve (CSV + PNG) and adversarial PNG grids."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import torch

from mlkit.kernels.perturb import cw_l2, fgsm, pgd
from mlkit.tasks.attack.loss import goal, perturb

METHODS = ("advgan", "fgsm", "pgd", "pgd-l2", "cw")
BOUNDED = ("advgan", "fgsm", "pgd")  # L-inf methods, the ones on the eps curve


def attack(cfg: dict, bundle: torch.nn.Module, method: str, x: torch.Tensor, y: torch.Tensor,
           eps: float | None = None) -> torch.Tensor:  # fmt: skip
    """x' for one batch by `method` at L-inf `eps` (default cfg eps); the target is bundle.target."""
    ev = cfg["eval"]
    eps = float(cfg["eps"]) if eps is None else eps
    targeted = bool(cfg["targeted"])
    t = goal(y, targeted, int(cfg["target_class"]), getattr(bundle, "k", 10))
    f = bundle.target
    if method == "advgan":
        with torch.no_grad():
            return perturb(bundle.G(x), x, eps)
    if method == "fgsm":
        return fgsm(f, x, t, eps, targeted)
    if method == "pgd":
        g = torch.Generator().manual_seed(int(cfg["seed"]))
        return pgd(f, x, t, eps, int(ev["pgd_steps"]), float(ev["pgd_step"]) or None, "linf", targeted, generator=g)
    if method == "pgd-l2":
        g = torch.Generator().manual_seed(int(cfg["seed"]))
        return pgd(f, x, t, float(ev["l2_eps"]), int(ev["pgd_steps"]), None, "l2", targeted, generator=g)
    if method == "cw":
        return cw_l2(f, x, t, float(ev["cw_c"]), int(ev["cw_steps"]), float(ev["cw_lr"]), float(cfg["kappa"]),
                     targeted, int(ev["cw_search"]))  # fmt: skip
    raise ValueError(method)


def measure(cfg: dict, bundle: torch.nn.Module, method: str, x: torch.Tensor, y: torch.Tensor,
            eps: float | None = None, batch: int = 250) -> dict:  # fmt: skip
    """One method over (x, y): metrics plus per-image arrays (pred, adv) for tables and grids."""
    targeted = bool(cfg["targeted"])
    f = bundle.target
    advs, preds, clean = [], [], []
    secs = cpu = 0.0
    for i in range(0, len(x), batch):
        xb, yb = x[i : i + batch], y[i : i + batch]
        t0, c0 = time.perf_counter(), time.process_time()
        adv = attack(cfg, bundle, method, xb, yb, eps)
        if adv.is_cuda:
            torch.cuda.synchronize()
        secs += time.perf_counter() - t0
        cpu += time.process_time() - c0
        with torch.no_grad():
            preds.append(f(adv).argmax(1))
            clean.append(f(xb).argmax(1))
        advs.append(adv)
    adv, pred, cl = torch.cat(advs), torch.cat(preds), torch.cat(clean)
    t = goal(y, targeted, int(cfg["target_class"]), getattr(bundle, "k", 10))
    ok = (pred == t) if targeted else (pred != y)
    if targeted:
        ok = ok & (t != y)  # a target equal to the true label does not count
    correct = cl == y
    d = (adv - x).flatten(1)
    return {
        "success": float(ok.float().mean()),
        "success_correct": float(ok[correct].float().mean()) if bool(correct.any()) else 0.0,
        "robust_accuracy": float((pred == y).float().mean()),
        "clean_accuracy": float(correct.float().mean()),
        "linf": float(d.abs().amax(1).mean()),
        "linf_max": float(d.abs().amax()),
        "l2": float(d.norm(dim=1).mean()),
        "images_per_s": len(x) / max(secs, 1e-9),
        "images_per_s_cpu": len(x) / max(cpu, 1e-9),
        "_ok": ok.cpu().numpy(), "_pred": pred.cpu().numpy(), "_adv": adv.detach().cpu().numpy(),
    }  # fmt: skip


def per_class(ok: np.ndarray, y: np.ndarray, k: int = 10) -> list[float]:
    return [float(ok[y == c].mean()) if (y == c).any() else float("nan") for c in range(k)]


def eps_curve(cfg: dict, bundle: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, folder: Path,
              methods: tuple[str, ...]) -> list[dict]:  # fmt: skip
    """Success vs L-inf eps for the bounded methods; writes eps_curve.csv and eps_curve.png."""
    rows = []
    for eps in [float(e) for e in cfg["eval"]["curve_eps"]]:
        row = {"eps": eps}
        for m in methods:
            row[m] = measure(cfg, bundle, m, x, y, eps)["success"]
        rows.append(row)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "eps_curve.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["eps", *methods])
        w.writeheader()
        w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for m in methods:
        ax.plot([r["eps"] for r in rows], [r[m] for r in rows], marker="o", label=m)
    ax.axvline(float(cfg["eps"]), color="grey", ls=":", lw=1)
    ax.set(xlabel="L-inf eps (pixels in [0, 1])", ylabel="attack success", ylim=(-0.02, 1.02),
           title="success vs eps" + (" (targeted)" if cfg["targeted"] else ""))  # fmt: skip
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "eps_curve.png", dpi=110)
    plt.close(fig)
    return rows


def write_grid(path: Path, x: np.ndarray, adv: np.ndarray, y: list[int], pred: list[int], title: str = "") -> Path:
    """PNG: one column per image; rows original, perturbation x10 (grey = 0), adversarial; labels above (grey or
    RGB images, (n, c, h, w) in [0, 1])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(x)
    img_of = lambda a: a[0] if a.shape[0] == 1 else np.clip(a.transpose(1, 2, 0), 0, 1)  # noqa: E731
    fig, axes = plt.subplots(3, n, figsize=(1.1 * n + 0.6, 3.6), squeeze=False)
    for j in range(n):
        pert = np.clip(0.5 + 10 * (img_of(adv[j]) - img_of(x[j])), 0, 1)
        for r, (img, lab) in enumerate(((img_of(x[j]), f"y={y[j]}"), (pert, "x10"), (img_of(adv[j]), f"->{pred[j]}"))):
            ax = axes[r, j]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            ax.set_title(lab, fontsize=7, color="red" if r == 2 and pred[j] != y[j] else "black")
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
