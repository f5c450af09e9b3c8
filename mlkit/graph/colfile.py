"""Node features kept on disk, column-major, for graphs whose features do not fit in memory (Friendster).

    ColumnFile.from_npy_chunks(files, cache_dir)   convert [k, F] .npy chunks (any float dtype) once into a
                                                   float32 [F, n] file in the cache; returns the ColumnFile
    cf.columns(c0, c1)                             [c1 - c0, n] float32, one contiguous read
    cf[rows], cf[s:e], cf[s:e, c0:c1]              row access as an array would give it (float32)

Reads use positioned file reads (os.pread), not a memory map, so the pages read never count in the process's
resident set: at 3e7 nodes x 100 features (12 GB of float32) the precompute holds only the column chunk it
works on. The source chunks are read by explicit reads too. np.asarray(cf) materialises the whole [n, F]
array (for consumers that need it in memory).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from mlkit.core.errors import DataError

_ROWS = 1 << 16


def _npy_layout(path: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        return shape, dtype, fortran, f.tell()


class ColumnFile:
    """A float32 [n, F] feature matrix stored column-major in one raw file (see the module doc)."""

    def __init__(self, path: Path, n: int, f: int) -> None:
        self.path, self.n, self.f = Path(path), int(n), int(f)
        self.shape = (self.n, self.f)
        self.dtype = np.dtype(np.float32)
        self.ndim = 2
        self._fd = os.open(self.path, os.O_RDONLY)

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def __len__(self) -> int:
        return self.n

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "n": self.n, "f": self.f}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["n"], state["f"])

    # ---------------------------------------------------------------------------------------- reads
    def _read(self, offset: int, count: int, out: np.ndarray) -> None:
        view = memoryview(out.reshape(-1).view(np.uint8))
        want, got = count * 4, 0
        while got < want:
            k = os.preadv(self._fd, [view[got:want]], offset + got)
            if k <= 0:
                raise DataError("feature cache file is truncated", str(self.path), "Delete it; it is rebuilt.")
            got += k

    def columns(self, c0: int, c1: int) -> np.ndarray:
        """Columns [c0, c1) as a [c1 - c0, n] float32 array (contiguous on disk)."""
        out = np.empty((c1 - c0, self.n), dtype=np.float32)
        self._read(c0 * self.n * 4, (c1 - c0) * self.n, out)
        return out

    def _rows(self, s: int, e: int, c0: int, c1: int) -> np.ndarray:
        out = np.empty((c1 - c0, e - s), dtype=np.float32)
        for c in range(c0, c1):
            self._read((c * self.n + s) * 4, e - s, out[c - c0])
        return out.T

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, cols = (key if isinstance(key, tuple) else (key, slice(None)))
        c0, c1, step = cols.indices(self.f) if isinstance(cols, slice) else (0, self.f, 1)
        if isinstance(rows, slice):
            s, e, st = rows.indices(self.n)
            block = self._rows(s, max(s, e), c0, c1)[:: st]
        else:
            ids = np.asarray(rows, dtype=np.int64).reshape(-1)
            if ids.size and (ids.min() < -self.n or ids.max() >= self.n):
                raise IndexError("row index out of range")
            ids = np.where(ids < 0, ids + self.n, ids)
            block = np.empty((ids.shape[0], c1 - c0), dtype=np.float32)
            col = np.empty(self.n, dtype=np.float32)
            for c in range(c0, c1):
                self._read(c * self.n * 4, self.n, col)
                block[:, c - c0] = col[ids]
            if np.ndim(rows) == 0:
                block = block[0]
        if not isinstance(cols, slice):
            return block[..., np.asarray(cols)] if block.ndim == 2 else block[np.asarray(cols)]
        return block[..., ::step] if step != 1 else block

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.ascontiguousarray(self.columns(0, self.f).T)
        return out if dtype is None else out.astype(dtype)

    # ---------------------------------------------------------------------------------------- build
    @classmethod
    def from_npy_chunks(cls, files: list[Path], cache_dir: Path) -> ColumnFile:
        """Stack row chunks [k_i, F] (.npy, any float dtype, C order) into a cached float32 [F, n] file."""
        layouts = []
        for p in files:
            try:
                shape, dtype, fortran, off = _npy_layout(p)
            except (ValueError, OSError) as exc:
                raise DataError(f"cannot read {p.name}: {exc}", str(p), "Write it with numpy.save.") from None
            if len(shape) != 2 or fortran or not np.issubdtype(dtype, np.floating):
                raise DataError(f"feature chunk must be a C-order float [k, F] array, got {dtype} {shape}", str(p))
            if layouts and shape[1] != layouts[0][0][1]:
                raise DataError(f"feature chunk has {shape[1]} columns, expected {layouts[0][0][1]}", str(p))
            layouts.append((shape, dtype, off))
        n, f = sum(s[0] for s, _, _ in layouts), layouts[0][0][1]
        h = hashlib.blake2b(digest_size=12)
        for p in files:
            st = os.stat(p)
            h.update(f"{Path(p).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
        out = Path(cache_dir) / f"{h.hexdigest()}.f32"
        if out.exists() and out.stat().st_size == n * f * 4:
            return cls(out, n, f)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, n * f * 4)
            row = 0
            for p, (shape, dtype, off) in zip(files, layouts):
                with open(p, "rb") as src:
                    src.seek(off)
                    for s in range(0, shape[0], _ROWS):
                        k = min(_ROWS, shape[0] - s)
                        blk = np.fromfile(src, dtype=dtype, count=k * f)
                        if blk.shape[0] != k * f:
                            raise DataError(f"{p.name} is truncated", str(p), "Write the chunk again.")
                        blk = np.ascontiguousarray(blk.reshape(k, f).T, dtype=np.float32)
                        for c in range(f):
                            os.pwrite(fd, blk[c].tobytes(), (c * n + row) * 4)
                        row += k
        finally:
            os.close(fd)
        os.replace(tmp, out)
        return cls(out, n, f)
