"""Networks: UFGConv layer (spec 2.6) with ReLU or shrinkage (2.7), the node nets UFGConv-R/-S (2.8), GCN and
MLP baselines, and the graph-level nets with framelet pooling (UFGPool, 2.9) or mean/sum pooling."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from mlkit.kernels.framelet import framelet_decompose_torch, framelet_reconstruct_torch
from mlkit.kernels.spmm import spmm_torch, to_torch_csr

NODE_ARCHS = ("ufg-r", "ufg-s", "gcn", "mlp")
GRAPH_ARCHS = ("ufgpool", "meanpool", "sumpool")


class FrameletOp:
    """The framelet transform of one graph on a device: materialized (one stacked SpMM) or matrix-free."""

    def __init__(self, fw: Any, device: str, dtype: torch.dtype) -> None:
        self.K, self.N = fw.num_blocks, fw.num_nodes
        self.coef, self.alphas = fw.coef, fw.alphas
        self.materialized = fw.stacked is not None
        if self.materialized:
            self.P = to_torch_csr(fw.stacked, dtype, device)
            self.PT = to_torch_csr(fw.stacked.T, dtype, device)
        else:
            self.adj = to_torch_csr(fw.a_hat, dtype, device)

    def decompose(self, h: torch.Tensor) -> torch.Tensor:
        """[K, N, F] coefficients of h [N, F]."""
        if self.materialized:
            return spmm_torch(self.P, h, self.PT).view(self.K, self.N, h.shape[1])
        return framelet_decompose_torch(self.adj, h, self.coef, self.alphas)

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        """sum_beta W_beta^T z[beta] -> [N, F]."""
        if self.materialized:
            return spmm_torch(self.PT, z.reshape(self.K * self.N, z.shape[2]), self.P)
        return framelet_reconstruct_torch(self.adj, z, self.coef, self.alphas)


class Features:
    """Node features, dense or (when mostly zero, like bag-of-words) CSR with a cached transpose, so that
    X W, its gradient and input dropout cost O(nnz) instead of O(N F)."""

    def __init__(self, x: np.ndarray, device: str, dtype: torch.dtype, max_density: float = 0.1) -> None:
        import scipy.sparse as sp

        self.shape = x.shape
        density = float(np.count_nonzero(x)) / max(x.size, 1)
        self.sparse = density <= max_density
        if not self.sparse:
            self.dense = torch.from_numpy(
                np.array(x, dtype=np.float32 if dtype == torch.float32 else np.float64)
            )
            self.dense = self.dense.to(device)
            return
        m = sp.csr_matrix(x)
        m.sort_indices()
        order = sp.csr_matrix(
            (np.arange(m.nnz, dtype=np.float64), m.indices, m.indptr), shape=m.shape
        ).T.tocsr()
        order.sort_indices()
        self.crow = torch.from_numpy(m.indptr.astype(np.int64)).to(device)
        self.col = torch.from_numpy(m.indices.astype(np.int64)).to(device)
        self.crow_t = torch.from_numpy(order.indptr.astype(np.int64)).to(device)
        self.col_t = torch.from_numpy(order.indices.astype(np.int64)).to(device)
        self.perm = torch.from_numpy(order.data.astype(np.int64)).to(device)
        self.values = torch.from_numpy(m.data).to(device, dtype)

    def to_dense(self) -> torch.Tensor:
        if not self.sparse:
            return self.dense
        return torch.sparse_csr_tensor(
            self.crow, self.col, self.values, self.shape, check_invariants=False
        ).to_dense()

    def matmul(self, w: torch.Tensor, dropout: float = 0.0, training: bool = False) -> torch.Tensor:
        """dropout(X) @ w."""
        if not self.sparse:
            return nn.functional.dropout(self.dense, dropout, training) @ w
        v = (
            nn.functional.dropout(self.values, dropout, training)
            if (training and dropout > 0)
            else self.values
        )
        a = torch.sparse_csr_tensor(self.crow, self.col, v, self.shape, check_invariants=False)
        at = torch.sparse_csr_tensor(
            self.crow_t, self.col_t, v[self.perm], (self.shape[1], self.shape[0]), check_invariants=False
        )
        return spmm_torch(a, w, at)


def _mm(x: Any, w: torch.Tensor, dropout: float = 0.0, training: bool = False) -> torch.Tensor:
    if isinstance(x, Features):
        return x.matmul(w, dropout, training)
    return nn.functional.dropout(x, dropout, training) @ w


def shrink(z: torch.Tensor, lam: torch.Tensor, mode: str) -> torch.Tensor:
    """Soft: sign(z) max(|z| - lam, 0); hard: z 1[|z| > lam]."""
    if mode == "soft":
        return torch.sign(z) * torch.clamp(z.abs() - lam, min=0.0)
    if mode == "hard":
        return z * (z.abs() > lam).to(z.dtype)
    raise ValueError(f"unknown shrinkage mode {mode}")


class UFGConv(nn.Module):
    """H = X W; Z_b = theta_b * (W_b H); [shrink the high-pass Z_b]; out = sum_b W_b^T Z_b + bias.

    theta has one row per block of the tight-frame set B (K = (r-1) Lev + 1), low-pass first: the original's
    Lev-1 intermediate low-pass blocks (whose theta never gets a gradient there) are not stored.
    """

    def __init__(
        self,
        fin: int,
        fout: int,
        blocks: int,
        nodes: int,
        theta: str = "per-node",
        shrinkage: str | None = None,
        sigma: float = 1.0,
        scaling: str = "none",
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(fin, fout))
        self.theta = nn.Parameter(torch.empty(blocks, nodes if theta == "per-node" else 1))
        self.bias = nn.Parameter(torch.zeros(fout))
        self.shrinkage, self.sigma, self.scaling = shrinkage, sigma, scaling
        self.zero_frac = 0.0
        nn.init.xavier_uniform_(self.weight)
        nn.init.uniform_(self.theta, 0.9, 1.1)

    def forward(self, x: torch.Tensor, op: FrameletOp) -> torch.Tensor:
        z = op.decompose(_mm(x, self.weight)) * self.theta[:, :, None]
        if self.shrinkage and z.shape[0] > 1:
            n = z.shape[1]
            lam = self.sigma * math.sqrt(2.0 * math.log(max(n, 2))) / math.sqrt(n)
            high = z[1:]
            scale = torch.ones(high.shape[0], 1, 1, dtype=z.dtype, device=z.device)
            if self.scaling == "energy":
                with torch.no_grad():
                    energy = high.pow(2).sum(dim=(1, 2))
                    scale = (energy / energy[0].clamp_min(1e-30)).view(-1, 1, 1)
            high = shrink(high, lam * scale, self.shrinkage)
            with torch.no_grad():
                self.zero_frac = float((high == 0).float().mean())
            z = torch.cat([z[:1], high])
        return op.reconstruct(z) + self.bias


class UFGNet(nn.Module):
    """UFGConv-R: conv -> ReLU -> dropout -> conv; UFGConv-S: conv(shrink) -> dropout -> conv(shrink)."""

    def __init__(
        self,
        fin: int,
        hidden: int,
        classes: int,
        blocks: int,
        nodes: int,
        dropout: float,
        relu: bool,
        theta: str,
        shrinkage: str | None,
        sigma: float,
        scaling: str,
    ) -> None:
        super().__init__()
        self.relu, self.dropout = relu, dropout
        kw = {"theta": theta, "shrinkage": shrinkage, "sigma": sigma, "scaling": scaling}
        self.conv1 = UFGConv(fin, hidden, blocks, nodes, **kw)
        self.conv2 = UFGConv(hidden, classes, blocks, nodes, **kw)

    def forward(self, x: torch.Tensor, op: FrameletOp) -> torch.Tensor:
        h = self.conv1(x, op)
        if self.relu:
            h = torch.relu(h)
        h = nn.functional.dropout(h, self.dropout, self.training)
        return self.conv2(h, op)

    def zero_fraction(self) -> float:
        """Fraction of high-pass coefficients set to zero by shrinkage in the last forward (both layers)."""
        return 0.5 * (self.conv1.zero_frac + self.conv2.zero_frac)


class GCN(nn.Module):
    """Kipf & Welling: dropout -> A' X W -> ReLU -> dropout -> A' H W (A' = D~^-1/2 (A + I) D~^-1/2)."""

    def __init__(self, fin: int, hidden: int, classes: int, dropout: float) -> None:
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(fin, hidden), nn.Linear(hidden, classes)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        h = torch.relu(
            spmm_torch(adj, _mm(x, self.lin1.weight.T, self.dropout, self.training)) + self.lin1.bias
        )
        h = nn.functional.dropout(h, self.dropout, self.training)
        return spmm_torch(adj, h @ self.lin2.weight.T) + self.lin2.bias


class MLP(nn.Module):
    """Features only: Linear -> ReLU -> dropout -> Linear."""

    def __init__(self, fin: int, hidden: int, classes: int, dropout: float) -> None:
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(fin, hidden), nn.Linear(hidden, classes)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, _graph: Any = None) -> torch.Tensor:
        h = nn.functional.dropout(
            torch.relu(_mm(x, self.lin1.weight.T) + self.lin1.bias), self.dropout, self.training
        )
        return self.lin2(h)


def gcn_adjacency(adj: Any) -> Any:
    """D~^-1/2 (A + I) D~^-1/2 as scipy CSR."""
    import scipy.sparse as sp

    a = sp.csr_matrix(adj, dtype=np.float64)
    a.setdiag(0)
    a.eliminate_zeros()
    a = a + sp.identity(a.shape[0], format="csr")
    d = sp.diags(1.0 / np.sqrt(np.asarray(a.sum(1)).ravel()))
    return sp.csr_matrix(d @ a @ d)


class GraphNet(nn.Module):
    """GCNConv(F->h) -> ReLU -> GCNConv(h->h) -> ReLU -> pool -> Linear -> ReLU -> Dropout -> Linear(C).

    pool: ufgpool (framelet blocks, readout sum or spectrum: K*h features), mean or sum (h features).
    """

    def __init__(
        self, fin: int, hidden: int, out: int, dropout: float, pool: str, blocks: int, readout: str
    ) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Linear(fin, hidden), nn.Linear(hidden, hidden)
        for conv in (self.conv1, self.conv2):  # PyG GCNConv init: Glorot weight, zero bias
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.pool, self.readout, self.blocks = pool, readout, blocks
        width = blocks * hidden if pool == "ufgpool" else hidden
        self.head = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out)
        )

    def forward(
        self, x: torch.Tensor, adj: torch.Tensor, batch: torch.Tensor, num_graphs: int, pool_op: Any = None
    ) -> torch.Tensor:
        h = torch.relu(spmm_torch(adj, x @ self.conv1.weight.T) + self.conv1.bias)
        h = torch.relu(spmm_torch(adj, h @ self.conv2.weight.T) + self.conv2.bias)
        f = h.shape[1]
        if self.pool == "ufgpool":
            c = spmm_torch(pool_op[0], h, pool_op[1]).view(self.blocks, -1, f)
            if self.readout == "spectrum":
                c = c * c
            pooled = torch.zeros(self.blocks, num_graphs, f, dtype=h.dtype, device=h.device)
            pooled.index_add_(1, batch, c)
            g = pooled.permute(1, 0, 2).reshape(num_graphs, self.blocks * f)
        else:
            g = torch.zeros(num_graphs, f, dtype=h.dtype, device=h.device).index_add_(0, batch, h)
            if self.pool == "meanpool":
                counts = torch.bincount(batch, minlength=num_graphs).clamp_min(1).to(h.dtype)
                g = g / counts[:, None]
        return self.head(g)
