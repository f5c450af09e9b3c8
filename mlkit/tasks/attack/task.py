"""Attack hooks: AdvGAN training (target first, cached), eval of AdvGAN and the FGSM / PGD / CW baselines, predict.

One Adam holds G's and D's parameter groups (and the surrogate's in the black-box settings); each step clears the
other groups' gradients first, so D and G steps alternate exactly (D first, `d_steps` per G step).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlkit.core.config import apply_preset
from mlkit.core.errors import DataError, UsageError
from mlkit.core.runtime import Ctx
from mlkit.core.task import Task, TrainState
from mlkit.tasks.attack import evaluation as E
from mlkit.tasks.attack.loss import d_loss, g_loss, goal, perturb
from mlkit.tasks.attack.model import TARGET_ARCHS, AdvGAN, Target, target_net
from mlkit.tasks.attack.sources import check_target, dataset, get_target, load_split, resolve
from mlkit.tasks.attack.target import accuracy, fit_classifier, load_target

SETTINGS = ("semi-whitebox", "blackbox-static", "blackbox-dynamic")


class AttackTask(Task):
    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def finalize(self, cfg: dict, explicit: frozenset[str], mode: str) -> dict:
        cfg = apply_preset(cfg, explicit)
        archs = ("auto", *TARGET_ARCHS)
        checks = (("arch", ("advgan",)), ("setting", SETTINGS), ("target_arch", archs), ("surrogate_arch", archs),
                  ("loss", ("paper", "port")), ("predict.method", E.METHODS),
                  ("embedded", ("digits", "cifar")))  # fmt: skip
        for key, ok in checks:
            val = cfg["predict"]["method"] if key == "predict.method" else cfg[key]
            if val not in ok:
                raise UsageError(f"unknown {key} '{val}'", key, f"Use one of {', '.join(ok)}.")
        bad = [m for m in cfg["eval"]["methods"] if m not in E.METHODS]
        if bad:
            raise UsageError(f"unknown eval method '{bad[0]}'", "eval.methods", f"Use {', '.join(E.METHODS)}.")
        if not 0 <= float(cfg["eps"]) <= 1 or float(cfg["c"]) < 0:
            raise UsageError("need 0 <= eps <= 1, c >= 0", "eps")
        for key in ("mean", "std"):
            v = cfg[key]
            vals = v if isinstance(v, list) else [v] if v is not None else [1.0]
            if not vals or not all(isinstance(a, (int, float)) for a in vals) or (key == "std" and min(vals) <= 0):
                raise UsageError(f"{key} must be null, a number or a per-channel list (std > 0)", key)
        if int(cfg["target_class"]) < -1 or int(cfg["val"]) < 1 or int(cfg["d_steps"]) < 0:
            raise UsageError("need target_class >= -1, val >= 1, d_steps >= 0", "target_class")
        if int(cfg["image_size"]) < 0 or not 0 < float(cfg["folder_test"]) < 1:
            raise UsageError("need image_size >= 0 and 0 < folder_test < 1", "image_size")
        if int(cfg["rounds"]) < 1 or int(cfg["distill_epochs"]) < 1:
            raise UsageError("rounds and distill_epochs must be >= 1", "rounds")
        return cfg

    # ---------------------------------------------------------------- train
    def load_data(self, cfg: dict, ctx: Ctx) -> dict:
        ds = dataset(cfg, ctx)
        out: dict[str, Any] = {k: load_split(cfg, ctx, k) for k in ("train", "val", "test")}
        out["info"] = info = resolve(cfg, ds)
        out["target"], out["target_kind"] = get_target(cfg, ctx, info)
        check_target(cfg, out["target"], out["test"][0][:2], info)
        acc = accuracy(out["target"], *out["test"])
        ctx.log(f"{ds.layout} data {'x'.join(map(str, info['shape']))}, {info['k']} classes: {len(out['train'][1])} "
                f"train / {len(out['val'][1])} val / {len(out['test'][1])} test images; target "
                f"{out['target_kind']} clean accuracy {acc:.4f} on the test split")  # fmt: skip
        out["clean"] = acc
        return out

    def checkpoint_extra(self, cfg: dict, ctx: Ctx, data: dict) -> dict:
        info = data["info"]  # the target's weights are in the checkpoint (a TorchScript target's module: its file)
        return {"target_kind": data["target_kind"], "shape": list(info["shape"]), "k": info["k"],
                "surrogate_arch": info["surrogate_arch"]}  # fmt: skip

    def build_model(self, cfg: dict, ctx: Ctx, data: dict) -> AdvGAN:
        import copy

        info, sur = data["info"], None
        if cfg["setting"] != "semi-whitebox":
            tg = data["target"]
            sur = Target(target_net(info["surrogate_arch"], info["k"], info["shape"][0]), tg.mean, tg.std)
        return AdvGAN(copy.deepcopy(data["target"]), sur, int(cfg["width"]), info["shape"], info["k"]).to(ctx.device)

    def build_optimizer(self, cfg: dict, model: AdvGAN) -> tuple[Any, Any]:
        groups = [{"params": list(model.G.parameters())}, {"params": list(model.D.parameters())}]
        if model.surrogate is not None:
            groups.append({"params": list(model.surrogate.parameters()), "lr": float(cfg["distill_lr"])})
        opt = torch.optim.Adam(groups, lr=float(cfg["lr"]))
        sched = None
        if int(cfg["lr_drop_epoch"]) > 0:
            lam = [lambda e, k=int(cfg["lr_drop_epoch"]): 0.1 if e >= k else 1.0] * 2 + [lambda e: 1.0] * (len(groups) - 2)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
        return opt, sched

    def _distill(self, cfg: dict, ctx: Ctx, st: TrainState, with_adv: bool) -> int:
        """Fit the surrogate to the black box's probabilities on x (and x + G(x)); returns the queries made."""
        m: AdvGAN = st.model
        x = st.data["train"][0]
        if with_adv:
            with torch.no_grad():
                x = torch.cat([x, torch.cat([perturb(m.G(x[i : i + 500]), x[i : i + 500], float(cfg["eps"]))
                                             for i in range(0, len(x), 500)])])  # fmt: skip
        with torch.no_grad():  # the black box answers probabilities only; no gradient ever flows through it
            soft = torch.cat([torch.softmax(m.target(x[i : i + 500]), 1) for i in range(0, len(x), 500)])
        for p in m.G.parameters():
            p.grad = None
        for p in m.D.parameters():
            p.grad = None
        seed = int(cfg["seed"]) * 1000 + st.epoch
        fit_classifier(m.surrogate, x, soft.argmax(1), int(cfg["distill_epochs"]), float(cfg["distill_lr"]),
                       int(cfg["batch_size"]), seed, soft=soft, opt=st.optimizer)  # fmt: skip
        return len(x)

    def train_epoch(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        m: AdvGAN = st.model
        x, y = st.data["train"]
        box = cfg["setting"] != "semi-whitebox"
        out: dict[str, float] = {"train/queries": 0.0} if box else {}  # black-box queries made this epoch
        if box and st.epoch == 0:
            out["train/queries"] = float(self._distill(cfg, ctx, st, with_adv=False))
        f = m.surrogate if box else m.target
        if box:
            f.eval()
            for p in f.parameters():
                p.requires_grad_(False)
        eps, bs, targeted = float(cfg["eps"]), int(cfg["batch_size"]), bool(cfg["targeted"])
        g_params, d_params = list(m.G.parameters()), list(m.D.parameters())
        idx = torch.randperm(len(y), generator=st.generator)
        if ctx.dist.enabled:
            ws = ctx.dist.world_size  # equal shards: every rank makes the same number of all-reduced steps
            idx = idx[: len(idx) - len(idx) % ws][ctx.dist.rank :: ws]
        m.G.train()
        m.D.train()
        sums = {"loss": 0.0, "d_loss": 0.0, "adv": 0.0, "gan": 0.0, "norm": 0.0, "success": 0.0}
        n = 0
        for i in range(0, len(idx) - bs + 1 if len(idx) >= bs else 1, bs):
            b = idx[i : i + bs].to(x.device)
            xb, yb = x[b], y[b]
            t = goal(yb, targeted, int(cfg["target_class"]), m.k)
            dl = torch.zeros(())
            for _ in range(int(cfg["d_steps"])):
                with torch.no_grad():
                    adv_d = perturb(m.G(xb), xb, eps)
                st.optimizer.zero_grad(set_to_none=True)
                dl = d_loss(m.D, xb, adv_d)
                dl.backward()
                self._sync(ctx, d_params)
                st.optimizer.step()
            raw = m.G(xb)
            adv = perturb(raw, xb, eps)
            st.optimizer.zero_grad(set_to_none=True)
            terms = g_loss(cfg, m.D, f, xb, raw, adv, t)
            terms["total"].backward()
            for p in d_params:
                p.grad = None  # the G step moves G only
            self._sync(ctx, g_params)
            st.optimizer.step()
            if not torch.isfinite(terms["total"]):
                from mlkit.core.errors import RunFailure

                raise RunFailure("AdvGAN loss is not finite", f"epoch {st.epoch + 1}", "Lower lr or raise c.")
            with torch.no_grad():
                ok = (terms["logits"].argmax(1) == t) if targeted else (terms["logits"].argmax(1) != yb)
            for k, v in (("loss", terms["total"]), ("d_loss", dl), ("adv", terms["adv"]), ("gan", terms["gan"]),
                         ("norm", terms["norm"]), ("success", ok.float().mean())):  # fmt: skip
                sums[k] += float(v.detach())
            n += 1
            if st.tick():
                break
        if cfg["setting"] == "blackbox-dynamic":
            every = max(1, int(cfg["epochs"]) // int(cfg["rounds"]))
            if (st.epoch + 1) % every == 0 and (st.epoch + 1) // every <= int(cfg["rounds"]):
                for p in f.parameters():
                    p.requires_grad_(True)
                out["train/queries"] = out.get("train/queries", 0.0) + self._distill(cfg, ctx, st, with_adv=True)
        if st.scheduler is not None:
            st.scheduler.step()
        out.update({f"train/{k}": ctx.all_reduce_mean(v / max(n, 1)) for k, v in sums.items()})
        return out

    @staticmethod
    def _sync(ctx: Ctx, params: list) -> None:
        """Average gradients over ranks under torchrun (G, D and the surrogate are stepped outside DDP)."""
        if not ctx.dist.enabled:
            return
        import torch.distributed as tdist

        for p in params:
            if p.grad is not None:
                tdist.all_reduce(p.grad)
                p.grad /= ctx.dist.world_size

    def _score(self, cfg: dict, m: AdvGAN, x: torch.Tensor, y: torch.Tensor) -> dict:
        m.eval()
        r = E.measure(cfg, m, "advgan", x, y)
        return {k: v for k, v in r.items() if not k.startswith("_")}

    def validate(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        r = self._score(cfg, st.model, *st.data["val"])
        return {"val/success": r["success"], "val/linf": r["linf"], "val/l2": r["l2"]}

    def test(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        r = self._score(cfg, st.model, *st.data["test"])
        return {f"test/{k}": v for k, v in r.items()}

    # ---------------------------------------------------------------- eval
    def restore(self, cfg: dict, ctx: Ctx, ckpt: dict) -> AdvGAN:
        ex, sd = ckpt.get("extra", {}), ckpt["state_dict"]
        kind = ex.get("target_kind", cfg["target_arch"])
        shape, k = tuple(ex.get("shape", (1, 28, 28))), int(ex.get("k", 10))
        if kind == "script":  # TorchScript targets are rebuilt from their file; the weights come from the checkpoint
            tgt = load_target(cfg["target"], "script", sd["target.mean"], sd["target.std"])[0]
        else:
            tgt = Target(target_net(kind, k, shape[0]), sd["target.mean"], sd["target.std"])
        sur = None
        if cfg["setting"] != "semi-whitebox":
            sa = ex.get("surrogate_arch", cfg["surrogate_arch"])
            sur = Target(target_net(sa, k, shape[0]), sd["surrogate.mean"], sd["surrogate.std"])
        m = AdvGAN(tgt, sur, int(cfg["width"]), shape, k)
        m.load_state_dict(sd)
        return m.to(ctx.device).eval()

    def evaluate(self, cfg: dict, ctx: Ctx, m: AdvGAN) -> dict:
        x, y = load_split(cfg, ctx, "test")
        lim = int(cfg["eval"]["limit"])
        if lim > 0:
            x, y = x[:lim], y[:lim]
        methods = list(dict.fromkeys(["advgan", *cfg["eval"]["methods"]]))
        res = {meth: E.measure(cfg, m, meth, x, y) for meth in methods}
        out: dict[str, Any] = {f"test/{k}": v for k, v in res["advgan"].items() if not k.startswith("_")}
        for meth in methods[1:]:
            out.update({f"test/{meth}/{k}": v for k, v in res[meth].items() if not k.startswith("_")})
        folder = (ctx.run_dir or Path(".")) / "eval"
        ynp = y.cpu().numpy()
        table = {meth: E.per_class(res[meth]["_ok"], ynp, m.k) for meth in methods}
        if ctx.is_main:
            folder.mkdir(parents=True, exist_ok=True)
            curve = E.eps_curve(cfg, m, x, y, folder, tuple(mm for mm in methods if mm in E.BOUNDED))
            k = int(cfg["eval"]["grid"])
            for meth in methods:
                E.write_grid(folder / f"grid_{meth}.png", x[:k].cpu().numpy(), res[meth]["_adv"][:k],
                             ynp[:k].tolist(), res[meth]["_pred"][:k].tolist(), f"{meth}, eps {cfg['eps']}")  # fmt: skip
            body = {"metrics": out, "per_class_success": table, "eps_curve": curve}
            (folder / "eval.json").write_text(json.dumps(body, indent=1), encoding="utf-8")
            if not ctx.quiet:
                from rich.table import Table

                tb = Table(title="success per true class")
                for col in ("class", *methods):
                    tb.add_column(col)
                for c in range(m.k):
                    tb.add_row(str(c), *[f"{table[mm][c]:.3f}" for mm in methods])
                ctx.console.print(tb)
                ctx.log(f"eps curve, grids and eval.json in {folder}")
        return out

    # ---------------------------------------------------------------- predict
    def parse_record(self, cfg: dict, restored: Any, line: str, n: int) -> tuple[str, np.ndarray, int]:
        s = line.strip()
        if s.startswith("test:"):
            try:
                i = int(s[5:])
                if "test" not in self._cache:
                    x, y = load_split(cfg, Ctx(task="attack", mode="predict"), "test")
                    self._cache["test"] = (x.cpu().numpy(), y.cpu().numpy())
                x, y = self._cache["test"]
                if i < 0:
                    raise IndexError
                return s, x[i], int(y[i])
            except (ValueError, IndexError):
                raise DataError(f"bad test index '{s}'", f"input line {n}", "Write test:N, 0 <= N < test size.") from None
        path, _, lab = s.rpartition(",") if s.rpartition(",")[2].strip().isdigit() else (s, "", "")
        p = Path(path.strip()).expanduser()
        try:
            from PIL import Image

            ch, h, w = restored.shape
            with Image.open(p) as im:
                a = np.asarray(im.convert("L" if ch == 1 else "RGB").resize((w, h)), dtype=np.float32) / 255.0
            a = a[None] if ch == 1 else a.transpose(2, 0, 1)
        except (OSError, ValueError):
            raise DataError(f"cannot read image '{path.strip()}'", f"input line {n}",
                            "Give an image path (PNG/JPEG) per line, optionally ',label'.") from None  # fmt: skip
        return s, a, int(lab) if lab else -1

    def predict_batch_size(self, cfg: dict) -> int:
        return 64

    def predict_batch(self, cfg: dict, ctx: Ctx, m: AdvGAN, records: list) -> list[dict]:
        x = torch.from_numpy(np.stack([r[1] for r in records])).to(ctx.device)
        with torch.no_grad():
            clean = m.target(x).argmax(1)
        given = torch.tensor([r[2] for r in records], device=ctx.device)
        y = torch.where(given >= 0, given, clean)  # no label given: attack the model's own prediction
        adv = E.attack(cfg, m, cfg["predict"]["method"], x, y)
        with torch.no_grad():
            probs = torch.softmax(m.target(adv), 1).cpu()
        out_dir = Path(cfg["predict"]["out"]).expanduser() if cfg["predict"]["out"] else \
            (ctx.run_dir / "predict" if ctx.run_dir is not None else Path("predictions"))  # fmt: skip
        out_dir.mkdir(parents=True, exist_ok=True)
        k = len(list(out_dir.glob("batch*.npz")))
        npz = out_dir / f"batch{k:04d}.npz"
        np.savez_compressed(npz, original=x.cpu().numpy(), adversarial=adv.cpu().numpy(),
                            label=y.cpu().numpy(), adv_label=probs.argmax(1).numpy())  # fmt: skip
        grid = E.write_grid(out_dir / f"batch{k:04d}.png", x[:16].cpu().numpy(), adv[:16].cpu().numpy(),
                            y[:16].tolist(), probs.argmax(1)[:16].tolist(), cfg["predict"]["method"])  # fmt: skip
        d = (adv - x).flatten(1)
        return [{"id": r[0], "label": int(p.argmax()), "probs": [round(float(v), 6) for v in p],
                 "orig_label": int(c), "true_label": r[2] if r[2] >= 0 else None, "linf": float(d[i].abs().max()),
                 "l2": float(d[i].norm()), "npz": str(npz), "grid": str(grid)}
                for i, (r, p, c) in enumerate(zip(records, probs, clean.tolist()))]  # fmt: skip

    def sample_inputs(self, run_dir: Path) -> list[str]:
        return ["test:0", "test:1", "test:2"]


TASK = AttackTask()
