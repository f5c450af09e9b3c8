"""One DRIT training iteration (spec §2.2) and the unpaired batch sampler.

Every parameter group is stepped by one Adam (the original's separate optimizers are its parameter groups); a step
moves exactly the groups whose gradients are set, the others' gradients are None (Adam skips those). The second
generator step (random-attribute GAN + latent regression, E^c and G only) takes its gradients with
torch.autograd.grad on the same forward graph *before* the first step changes the weights: the original reused the
graph after the step (PyTorch 0.4 allowed it; newer PyTorch refuses), so both steps here see the pre-step forward.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from mlkit.tasks.translate.loss import content_d_loss, content_g_loss, d_loss, gan, kl, mode_seeking
from mlkit.tasks.translate.model import DRIT

D_GROUPS = ("dis_a", "dis_b", "dis_a2", "dis_b2", "dis_c")


def is_full(it: int, d_iter: int) -> bool:
    """d_iter schedule: iteration `it` (0-based, global) is a full D + E/G update on every d_iter-th one, a
    content-discriminator-only update otherwise."""
    return (it + 1) % d_iter == 0


def unpaired_batches(n_a: int, n_b: int, per: int, gen: torch.Generator, rank: int = 0, world: int = 1,
                     iters: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
    """(indices into A, indices into B), `per` each, for one epoch of max(n_a, n_b) // (per * world) iterations
    (or `iters` when > 0): the larger domain walks a permutation, the smaller is drawn at random every step, so no
    image of either domain is silently dropped by zipping two loaders. Ranks take disjoint slices."""
    big, small = max(n_a, n_b), min(n_a, n_b)
    perm = torch.randperm(big, generator=gen)
    step = per * world
    n_it = big // step if iters <= 0 else iters
    for i in range(n_it):
        j = (i * step) % max(big - step + 1, 1)
        pb = perm[j : j + step][rank * per : (rank + 1) * per]
        ps = torch.randint(0, small, (step,), generator=gen)[rank * per : (rank + 1) * per]
        yield (pb, ps) if n_a >= n_b else (ps, pb)


def augment(x: torch.Tensor, size: int, gen: torch.Generator | None, flip: bool) -> torch.Tensor:
    """uint8 (N, C, L, L) -> float in [-1, 1] (N, C, size, size): random crop + random h-flip when `gen` is given,
    else the centre crop."""
    n, _, h, w = x.shape
    if gen is None:
        y0, x0 = (h - size) // 2, (w - size) // 2
        out = x[:, :, y0 : y0 + size, x0 : x0 + size]
    else:
        oy = torch.randint(0, h - size + 1, (n,), generator=gen).tolist()
        ox = torch.randint(0, w - size + 1, (n,), generator=gen).tolist()
        out = torch.stack([x[i, :, oy[i] : oy[i] + size, ox[i] : ox[i] + size] for i in range(n)])
        if flip:
            f = (torch.rand(n, generator=gen) < 0.5).tolist()
            out = torch.stack([o.flip(-1) if fi else o for o, fi in zip(out, f)])
    return out.float() / 127.5 - 1.0


class Stepper:
    """Runs iterations on a DRIT bundle with one Adam; `sync(params)` all-reduces gradients under torchrun."""

    def __init__(self, cfg: dict, m: DRIT, opt: torch.optim.Optimizer, sync=None) -> None:  # noqa: ANN001
        self.cfg, self.m, self.opt = cfg, m, opt
        self.lam = cfg["loss"]
        self.groups = m.groups()
        self.sync = sync or (lambda params: None)
        self.zero_attr = bool(cfg["model"]["zero_attr"])
        self.ms = bool(cfg["model"]["mode_seeking"])

    def _step(self, names: tuple[str, ...], clip: dict[str, float] | None = None) -> None:
        """Step only the named groups: every other parameter's gradient is dropped first."""
        keep = {id(p) for n in names for p in self.groups[n]}
        for ps in self.groups.values():
            for p in ps:
                if id(p) not in keep:
                    p.grad = None
        params = [p for n in names for p in self.groups[n] if p.grad is not None]
        self.sync(params)
        for n, v in (clip or {}).items():
            torch.nn.utils.clip_grad_norm_(self.groups[n], v)
        self.opt.step()

    def _zero(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def content_only(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
        """The 2-of-3 iterations: D^c alone on detached content codes of the 'encoded' halves."""
        h = a.shape[0] // 2
        with torch.no_grad():
            zc_a, zc_b = self.m.enc_c["a"](a[:h]), self.m.enc_c["b"](b[:h])
        self._zero()
        loss = content_d_loss(self.m.dis_c, zc_a, zc_b)
        loss.backward()
        self._step(("dis_c",), {"dis_c": 5.0})
        return {"dc_loss": float(loss.detach())}

    def _z(self, n: int, like: torch.Tensor) -> torch.Tensor:
        z = torch.randn(n, self.m.nz, device=like.device)
        return torch.zeros_like(z) if self.zero_attr else z

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both translations of one iteration (spec §2.2 steps 1-4); the graph is kept for both G steps."""
        m, h = self.m, a.shape[0] // 2
        f: dict[str, torch.Tensor] = {"a": a[:h], "b": b[:h], "a_rnd": a[h:], "b_rnd": b[h:]}
        zc_a, zc_b = m.enc_c["a"](f["a"]), m.enc_c["b"](f["b"])
        za_a, mu_a, lv_a = m.attr("a", f["a"])
        za_b, mu_b, lv_b = m.attr("b", f["b"])
        if self.zero_attr:
            za_a, za_b = torch.zeros_like(za_a), torch.zeros_like(za_b)
        zr = self._z(h, a)
        ca, cb, za, zb = [zc_b, zc_a, zc_b], [zc_a, zc_b, zc_a], [za_a, za_a, zr], [za_b, za_b, zr]
        if self.ms:
            zr2 = self._z(h, a)
            ca, cb, za, zb, f["zr2"] = ca + [zc_b], cb + [zc_a], za + [zr2], zb + [zr2], zr2
        out_a = m.gen["a"](torch.cat(ca), torch.cat(za)).split(h)
        out_b = m.gen["b"](torch.cat(cb), torch.cat(zb)).split(h)
        f.update(u=out_a[0], a_hat=out_a[1], a_r=out_a[2], v=out_b[0], b_hat=out_b[1], b_r=out_b[2], zr=zr,
                 zc_a=zc_a, zc_b=zc_b, mu_a=mu_a, mu_b=mu_b)  # fmt: skip
        if self.ms:
            f["a_r2"], f["b_r2"] = out_a[3], out_b[3]
        if lv_a is not None:
            f["lv_a"], f["lv_b"] = lv_a, lv_b
        # second translation: u is an A image with B's content, v a B image with A's content
        zc_u, zc_v = m.enc_c["a"](f["u"]), m.enc_c["b"](f["v"])
        za_u, za_v = m.attr("a", f["u"])[0], m.attr("b", f["v"])[0]
        if self.zero_attr:
            za_u, za_v = torch.zeros_like(za_u), torch.zeros_like(za_v)
        f["a_cc"], f["b_cc"] = m.gen["a"](zc_v, za_u), m.gen["b"](zc_u, za_v)
        f["mu_ar"], f["mu_br"] = m.enc_a["a"](f["a_r"])[0], m.enc_a["b"](f["b_r"])[0]
        return f

    def losses(self, f: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """(loss of the E^c/E^a/G step, loss of the E^c/G-only step, logged terms)."""
        m, L = self.m, self.lam
        l1 = torch.nn.functional.l1_loss
        adv = gan(m.dis["a"](f["u"]), 1.0) + gan(m.dis["b"](f["v"]), 1.0)
        cont = content_g_loss(m.dis_c, f["zc_a"]) + content_g_loss(m.dis_c, f["zc_b"])
        recon = l1(f["a_hat"], f["a"]) + l1(f["b_hat"], f["b"])
        cyc = l1(f["a_cc"], f["a"]) + l1(f["b_cc"], f["b"])
        zero = f["a"].new_zeros(())
        if self.zero_attr:
            reg = zero
        elif "lv_a" in f:
            reg = kl(f["mu_a"], f["lv_a"]) + kl(f["mu_b"], f["lv_b"])
        else:  # feature-wise mode: deterministic attributes, 0.01 mean(z^2)
            reg = f["mu_a"].pow(2).mean() + f["mu_b"].pow(2).mean()
        zc2 = f["zc_a"].pow(2).mean() + f["zc_b"].pow(2).mean()
        loss1 = (L["gan"] * adv + L["content"] * cont + L["recon"] * recon + L["cycle"] * cyc + L["kl"] * reg
                 + L["content_l2"] * zc2)  # fmt: skip
        adv2 = gan(m.dis["a2"](f["a_r"]), 1.0) + gan(m.dis["b2"](f["b_r"]), 1.0)
        lat = zero if self.zero_attr else \
            torch.mean(torch.abs(f["mu_ar"] - f["zr"])) + torch.mean(torch.abs(f["mu_br"] - f["zr"]))  # fmt: skip
        loss2 = L["gan"] * adv2 + L["latent"] * lat
        ms = zero
        if self.ms:
            adv2 = adv2 + gan(m.dis["a2"](f["a_r2"]), 1.0) + gan(m.dis["b2"](f["b_r2"]), 1.0)
            ms = mode_seeking(f["a_r"], f["a_r2"], f["zr"], f["zr2"]) + mode_seeking(f["b_r"], f["b_r2"], f["zr"], f["zr2"])
            loss2 = L["gan"] * adv2 + L["latent"] * lat + L["mode_seeking"] * ms
        terms = {"g_gan": adv, "g_content": cont, "recon": recon, "cycle": cyc, "kl": reg, "latent": lat,
                 "g_gan2": adv2, "mode_seeking": ms}  # fmt: skip
        return loss1, loss2, {k: float(v.detach()) for k, v in terms.items()}

    def full(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
        """D step (D_A, D_B, D_A2, D_B2, D^c), then the E^c/E^a/G step, then the E^c/G-only step."""
        m = self.m
        f = self.forward(a, b)
        self._zero()
        ra, rb = (f["a_r"], f["b_r"]) if not self.ms else (torch.cat([f["a_r"], f["a_r2"]]), torch.cat([f["b_r"], f["b_r2"]]))
        ld = d_loss(m.dis["a"], f["a"], f["u"].detach()) + d_loss(m.dis["b"], f["b"], f["v"].detach()) + \
            d_loss(m.dis["a2"], f["a_rnd"], ra.detach()) + d_loss(m.dis["b2"], f["b_rnd"], rb.detach())  # fmt: skip
        lc = content_d_loss(m.dis_c, f["zc_a"].detach(), f["zc_b"].detach())
        (ld + lc).backward()
        self._step(D_GROUPS, {"dis_c": 5.0})
        self._zero()
        loss1, loss2, terms = self.losses(f)
        eg = [p for n in ("enc_c", "gen") for p in self.groups[n]]
        g2 = torch.autograd.grad(loss2, eg, retain_graph=True, allow_unused=True)
        loss1.backward()
        self._step(("enc_c", "enc_a", "gen"))
        self._zero()
        for p, g in zip(eg, g2):
            p.grad = g
        self._step(("enc_c", "gen"))
        self._zero()
        del f
        return {"loss": float(loss1.detach()) + float(loss2.detach()), "d_loss": float(ld.detach()),
                "dc_loss": float(lc.detach()), **terms}  # fmt: skip
