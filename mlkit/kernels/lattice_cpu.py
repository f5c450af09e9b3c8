"""The stacked lattice recurrence of `lattice._LatticeFn` as compiled CPU loops (Numba), one thread per direction.

The torch loop issues ~35 small ops per position in each pass, and on CPU their call overhead, not the arithmetic,
is most of the time. Here each direction runs its whole forward (or backward) pass in one compiled loop: the
matrix products go to BLAS (`np.dot`, single-threaded), everything else is fused per row. The two directions are
independent recurrences, so two threads (prange) run them side by side with no per-step synchronisation.

Same inputs, outputs and saved state layout as the torch Function (`lattice._lattice_fn_forward`): step-major
rows [m, D, B] with the rows sorted longest first (the rows running at step j are the prefix n_act[j]); words in
start order (direction d's words starting at j: s_ptr[j·D + d] .. s_ptr[j·D + d + 1], row sb) and in end order
(e_ptr, cell e_pos, row e_row; the words of one row are adjacent). Rows are indices into the D·B stacked rows.
tanh is computed as 2σ(2x) - 1 (Numba's scalar tanh is ~5x slower than its exp).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from mlkit.kernels.threads import keep_torch_threads

_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}  # no inf/nan assumptions


@njit(inline="always", fastmath=_FAST)
def _sig(x):  # pragma: no cover - compiled
    return 1.0 / (1.0 + np.exp(-x))


@njit(inline="always", fastmath=_FAST)
def _tanh(x):  # pragma: no cover - compiled
    return 2.0 / (1.0 + np.exp(-2.0 * x)) - 1.0


@njit(cache=True, nogil=True, fastmath=_FAST)
def _forward_dir(
    d, xg, xl, wgs, wh, uc, vh, n_act, s_ptr, sb, e_ptr, e_pos, e_row, acts, cs, tcs, out, wa, cells, lgs
):  # pragma: no cover - compiled
    m, n_d, n_b, h3 = xg.shape
    hid = h3 // 3
    off = d * n_b
    h = np.zeros((n_b, hid), dtype=xg.dtype)
    for j in range(m):
        nb = n_act[j]
        g = np.dot(h[:nb], wh[d])
        for r in range(nb):
            for k in range(hid):
                i = _sig(g[r, k] + xg[j, d, r, k])
                o = _sig(g[r, hid + k] + xg[j, d, r, hid + k])
                ch = _tanh(g[r, 2 * hid + k] + xg[j, d, r, 2 * hid + k])
                acts[j, d, r, k] = i
                acts[j, d, r, hid + k] = o
                acts[j, d, r, 2 * hid + k] = ch
                cp = cs[j, d, r, k]
                cs[j + 1, d, r, k] = cp + i * (ch - cp)  # coupled gate (rows with no word ending at j)
        e0, e1 = e_ptr[j * n_d + d], e_ptr[j * n_d + d + 1]
        if e1 > e0:
            cw = np.empty((e1 - e0, hid), dtype=xg.dtype)
            for q in range(e1 - e0):
                cw[q] = cells[e_pos[e0 + q]]
            lg = np.dot(cw, uc[d])
            q = 0
            while q < e1 - e0:  # one row's words are adjacent
                row = e_row[e0 + q]
                r = row - off
                q1 = q
                while q1 < e1 - e0 and e_row[e0 + q1] == row:
                    q1 += 1
                for k in range(hid):
                    ei = np.exp(acts[j, d, r, k])
                    z = ei
                    num = ei * acts[j, d, r, 2 * hid + k]
                    for p in range(q, q1):
                        lv = _sig(lg[p, k] + xl[j, row, k])
                        lgs[e0 + p, k] = lv
                        el = np.exp(lv)  # lv in (0, 1): no max shift needed
                        z += el
                        num += el * cw[p, k]
                    cs[j + 1, d, r, k] = num / z
                q = q1
        for r in range(nb):
            for k in range(hid):
                tc = _tanh(cs[j + 1, d, r, k])
                tcs[j, d, r, k] = tc
                hv = acts[j, d, r, hid + k] * tc
                out[j, d, r, k] = hv
                h[r, k] = hv
        s0, s1 = s_ptr[j * n_d + d], s_ptr[j * n_d + d + 1]
        if s1 > s0:
            hw = np.empty((s1 - s0, hid), dtype=xg.dtype)
            for q in range(s1 - s0):
                hw[q] = out[j, d, sb[s0 + q] - off]
            a = np.dot(hw, vh[d])
            for q in range(s1 - s0):
                r = sb[s0 + q] - off
                w = s0 + q
                for k in range(hid):
                    f = _sig(a[q, k] + wgs[w, k])
                    iw = _sig(a[q, hid + k] + wgs[w, hid + k])
                    tw = _tanh(a[q, 2 * hid + k] + wgs[w, 2 * hid + k])
                    wa[w, k] = f
                    wa[w, hid + k] = iw
                    wa[w, 2 * hid + k] = tw
                    cells[w, k] = f * cs[j + 1, d, r, k] + iw * tw


@njit(cache=True, parallel=True)
def _forward_par(args):  # pragma: no cover - compiled
    for d in prange(args[0].shape[1]):
        _forward_dir(d, *args)


def lattice_forward_cpu(parallel: bool, *args) -> None:
    """Both directions' forward passes (args as `_forward_dir` after d), one thread each. Outputs (preallocated,
    written in place): acts [m, D, B, 3H] (i, o, ĉ after their nonlinearities), cs [m+1, D, B, H] (cs[j+1] = c_j;
    pass zeros), tcs = tanh(c), out = h [m, D, B, H] (pass zeros: 0 past a sentence's end), wa [W, 3H] word
    gates, cells [W, H], lgs [E, H] (σ(l))."""
    if parallel:
        with keep_torch_threads():
            _set_threads()
            _forward_par(args)
    else:
        for d in range(args[0].shape[1]):
            _forward_dir(d, *args)


@njit(cache=True, nogil=True, fastmath=_FAST)
def _backward_dir(
    d,
    d_out,
    wh,
    uc,
    vh,
    n_act,
    s_ptr,
    sb,
    e_ptr,
    e_pos,
    e_row,
    acts,
    cs,
    tcs,
    out,
    wa,
    cells,
    lgs,
    dxg,
    dxl,
    dwa,
    dwh,
    duc,
    dvh,
):  # pragma: no cover - compiled
    m, n_d, n_b, hid = out.shape
    off = d * n_b
    dh = np.zeros((n_b, hid), dtype=out.dtype)
    dc = np.zeros((n_b, hid), dtype=out.dtype)
    dcells = np.zeros((cells.shape[0], hid), dtype=out.dtype)
    wh_t = np.ascontiguousarray(wh[d].T)
    uc_t = np.ascontiguousarray(uc[d].T)
    vh_t = np.ascontiguousarray(vh[d].T)
    dct = np.empty((n_b, hid), dtype=out.dtype)
    merged = np.zeros(n_b, dtype=np.bool_)
    for j in range(m - 1, -1, -1):
        nb = n_act[j]
        for r in range(nb):
            for k in range(hid):
                dh[r, k] += d_out[j, d, r, k]
        s0, s1 = s_ptr[j * n_d + d], s_ptr[j * n_d + d + 1]
        if s1 > s0:  # word cells starting at j: their gradients are complete (their ends came later)
            dga = np.empty((s1 - s0, 3 * hid), dtype=out.dtype)
            hw = np.empty((s1 - s0, hid), dtype=out.dtype)
            for q in range(s1 - s0):
                w = s0 + q
                r = sb[w] - off
                for k in range(hid):
                    f = wa[w, k]
                    iw = wa[w, hid + k]
                    tw = wa[w, 2 * hid + k]
                    dcell = dcells[w, k]
                    dga[q, k] = dcell * cs[j + 1, d, r, k] * f * (1.0 - f)
                    dga[q, hid + k] = dcell * tw * iw * (1.0 - iw)
                    dga[q, 2 * hid + k] = dcell * iw * (1.0 - tw * tw)
                    dc[r, k] += dcell * f
                    hw[q, k] = out[j, d, r, k]
                dwa[w] = dga[q]
            dhw = np.dot(dga, vh_t)
            for q in range(s1 - s0):
                r = sb[s0 + q] - off
                for k in range(hid):
                    dh[r, k] += dhw[q, k]
            dvh[d] += np.dot(hw.T, dga)
        dg = np.empty((nb, 3 * hid), dtype=out.dtype)
        for r in range(nb):
            merged[r] = False
            for k in range(hid):
                o = acts[j, d, r, hid + k]
                tc = tcs[j, d, r, k]
                dg[r, hid + k] = dh[r, k] * tc * o * (1.0 - o)
                dct[r, k] = dc[r, k] + dh[r, k] * o * (1.0 - tc * tc)
        e0, e1 = e_ptr[j * n_d + d], e_ptr[j * n_d + d + 1]
        if e1 > e0:
            ne = e1 - e0
            cw = np.empty((ne, hid), dtype=out.dtype)
            dl = np.empty((ne, hid), dtype=out.dtype)
            direct = np.empty((ne, hid), dtype=out.dtype)
            for q in range(ne):
                cw[q] = cells[e_pos[e0 + q]]
            q = 0
            while q < ne:
                row = e_row[e0 + q]
                r = row - off
                merged[r] = True
                q1 = q
                while q1 < ne and e_row[e0 + q1] == row:
                    q1 += 1
                for k in range(hid):
                    i = acts[j, d, r, k]
                    ch = acts[j, d, r, 2 * hid + k]
                    c = cs[j + 1, d, r, k]
                    ei = np.exp(i)
                    z = ei
                    for p in range(q, q1):
                        z += np.exp(lgs[e0 + p, k])
                    g = dct[r, k] / z
                    di = g * ei * (ch - c)
                    dch = g * ei
                    for p in range(q, q1):
                        lv = lgs[e0 + p, k]
                        gp = g * np.exp(lv)
                        direct[p, k] = gp
                        dl[p, k] = gp * (cw[p, k] - c) * lv * (1.0 - lv)
                    dg[r, k] = di * i * (1.0 - i)
                    dg[r, 2 * hid + k] = dch * (1.0 - ch * ch)
                    dc[r, k] = 0.0  # c_{j-1} is not used where words end
                q = q1
            dcw = np.dot(dl, uc_t)
            for q in range(ne):
                cell = e_pos[e0 + q]
                row = e_row[e0 + q]
                for k in range(hid):
                    dcells[cell, k] = dcw[q, k] + direct[q, k]
                    dxl[j, row, k] += dl[q, k]
            duc[d] += np.dot(cw.T, dl)
        for r in range(nb):
            if merged[r]:
                continue
            for k in range(hid):
                i = acts[j, d, r, k]
                ch = acts[j, d, r, 2 * hid + k]
                cp = cs[j, d, r, k]
                g = dct[r, k]
                dg[r, k] = g * (ch - cp) * i * (1.0 - i)
                dg[r, 2 * hid + k] = g * i * (1.0 - ch * ch)
                dc[r, k] = g * (1.0 - i)
        for r in range(nb):
            dxg[j, d, r] = dg[r]
        dhp = np.dot(dg, wh_t)
        for r in range(nb):
            dh[r] = dhp[r]
        if j:
            dwh[d] += np.dot(np.ascontiguousarray(out[j - 1, d, :nb].T), dg)


@njit(cache=True, parallel=True)
def _backward_par(args):  # pragma: no cover - compiled
    for d in prange(args[13].shape[1]):
        _backward_dir(d, *args)


def lattice_backward_cpu(parallel: bool, *args) -> None:
    """Both directions' backward passes (args as `_backward_dir` after d), one thread each. d_out [m, D, B, H]
    step-major; writes dxg [m, D, B, 3H] (rows running at j), dxl [m, D·B, H] (pass zeros), dwa [W, 3H] and
    accumulates dwh, duc, dvh (pass zeros)."""
    if parallel:
        with keep_torch_threads():
            _set_threads()
            _backward_par(args)
    else:
        for d in range(args[13].shape[1]):
            _backward_dir(d, *args)


_BLAS_STATE: list[bool] = []


def _parallel() -> bool:
    """Whether to run the two directions on two threads (Numba prange): when torch may use two and SciPy's
    OpenBLAS, which the compiled np.dot calls, is confirmed single-threaded (a multi-threaded OpenBLAS called
    inside an OpenMP region prints "Detect OpenMP Loop" on every call and may hang). Decided in the forward, on
    the caller's thread (autograd may run the backward on a thread with other settings). SciPy's BLAS stays at one
    thread in a process that trains a lattice; MLKIT_LATTICE_THREADS=1 keeps one thread."""
    import os

    import numba
    import torch

    if not _BLAS_STATE:
        _BLAS_STATE.append(_blas_single_thread())
    two = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS) >= 2
    return bool(_BLAS_STATE[0] and two and os.environ.get("MLKIT_LATTICE_THREADS", "") != "1")


def _set_threads() -> None:
    import numba
    import torch

    # thread-local in Numba: set on the thread that launches (autograd may run the backward elsewhere)
    numba.set_num_threads(min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))


def _blas_single_thread() -> bool:
    """Set the OpenBLAS that SciPy ships (the one Numba's np.dot calls) to one thread; True when confirmed."""
    try:
        import scipy.linalg.cython_blas  # noqa: F401 - load the library before looking for it
        from threadpoolctl import ThreadpoolController

        libs = [
            lib
            for lib in ThreadpoolController().lib_controllers
            if "scipy" in lib.filepath and "numpy" not in lib.filepath
        ]
        for lib in libs:
            lib.set_num_threads(1)
        return bool(libs) and all(lib.num_threads == 1 for lib in libs)
    except Exception:  # noqa: BLE001 - without the setting the loops run on one thread: same results
        return False


def available(x) -> bool:
    """The compiled path serves CPU float32/float64 tensors (CUDA keeps the torch loop)."""
    import torch

    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def np_index(ix: dict) -> dict:
    """NumPy views of the plan's index tensors used by the compiled loops (CPU tensors share memory)."""
    as_np = lambda t: t.numpy().astype(np.int64, copy=False)  # noqa: E731
    return {
        "n_act": np.asarray(ix["n_act"], dtype=np.int64),
        "s_ptr": np.asarray(ix["s_ptr"], dtype=np.int64),
        "sb": as_np(ix["sb"]),
        "e_ptr": np.asarray(ix["e_ptr"], dtype=np.int64),
        "e_pos": as_np(ix["e_pos"]),
        "e_row": as_np(ix["e_row"]),
    }


def enabled(x) -> bool:
    """Whether `_LatticeFn` runs the compiled loops: CPU float tensors, unless MLKIT_LATTICE=torch."""
    import os

    return os.environ.get("MLKIT_LATTICE", "") != "torch" and available(x)


def fn_forward(ctx, pg, pl, pw, wh, uc, vh, ix: dict):
    """`_LatticeFn.forward` on CPU: the torch gathers around the compiled loop (same I/O as the torch loop)."""
    m, n_d, n_b = ix["m"], ix["n_d"], ix["n_b"]
    hid, n = wh.shape[1], n_d * n_b
    xg = pg.index_select(0, ix["x_at"]).view(m, n_d, n_b, 3 * hid)
    xl = pl.index_select(0, ix["x_at"]).view(m, n, hid)
    wgs = pw.index_select(0, ix["w_at"])
    acts = xg.new_empty(m, n_d, n_b, 3 * hid)
    cs = xg.new_zeros(m + 1, n_d, n_b, hid)
    tcs = xg.new_empty(m, n_d, n_b, hid)
    out = xg.new_zeros(m, n_d, n_b, hid)
    wa = wgs.new_empty(wgs.shape)
    cells = xg.new_empty(wgs.shape[0], hid)
    lgs = xg.new_empty(len(ix["e_pos"]), hid)
    if "np" not in ix:
        ix["np"] = np_index(ix)
    p = ix["np"]
    weights = [w.detach().contiguous() for w in (wh, uc, vh)]
    par = _parallel()
    lattice_forward_cpu(
        par,
        xg.numpy(), xl.numpy(), wgs.numpy(), *(w.numpy() for w in weights),
        p["n_act"], p["s_ptr"], p["sb"], p["e_ptr"], p["e_pos"], p["e_row"],
        acts.numpy(), cs.numpy(), tcs.numpy(), out.numpy(), wa.numpy(), cells.numpy(), lgs.numpy(),
    )  # fmt: skip
    ctx.state = ("cpu", acts, cs, tcs, wa, cells, lgs, ix, weights, par)
    ctx.save_for_backward(out)
    return out.view(m * n, hid).index_select(0, ix["out_at"])


def fn_backward(ctx, d_out) -> tuple:
    """`_LatticeFn.backward` on CPU: grads of pg, pl, pw, Wh, Uc, Vh (the plan gets none)."""
    import torch

    _, acts, cs, tcs, wa, cells, lgs, ix, weights, par = ctx.state
    (out,) = ctx.saved_tensors
    m, n_d, n_b, hid = out.shape
    p = ix["np"]
    d_outs = d_out.index_select(0, ix["out_inv"]).view(m, n_d, n_b, hid).contiguous()
    dxg = out.new_empty(m, n_d, n_b, 3 * hid)  # rows running at j are written; x_inv reads only those
    dxl = out.new_zeros(m, n_d * n_b, hid)
    dwa = torch.empty_like(wa)
    dwh, duc, dvh = (torch.zeros_like(w) for w in weights)
    lattice_backward_cpu(
        par,
        d_outs.numpy(), *(w.numpy() for w in weights),
        p["n_act"], p["s_ptr"], p["sb"], p["e_ptr"], p["e_pos"], p["e_row"],
        acts.numpy(), cs.numpy(), tcs.numpy(), out.numpy(), wa.numpy(), cells.numpy(), lgs.numpy(),
        dxg.numpy(), dxl.numpy(), dwa.numpy(), dwh.numpy(), duc.numpy(), dvh.numpy(),
    )  # fmt: skip
    x_inv = ix["x_inv"]
    dpg = dxg.view(-1, 3 * hid).index_select(0, x_inv)
    dpl = dxl.view(-1, hid).index_select(0, x_inv)
    return dpg, dpl, dwa.index_select(0, ix["w_inv"]), dwh, duc, dvh, None
