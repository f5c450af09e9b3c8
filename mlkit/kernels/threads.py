"""Keep torch's CPU thread count where the user put it across Numba parallel launches.

Numba's OpenMP threading layer shares libgomp with torch, and each parallel launch sets the calling thread's
OpenMP thread count (what `torch.get_num_threads` reads and torch's own kernels use) to the size of Numba's pool:
with `torch.set_num_threads(1)`, the first Numba kernel silently put torch back on every core.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def keep_torch_threads() -> Iterator[None]:
    """Restore torch's intra-op thread count after the block if a Numba launch inside changed it."""
    torch = sys.modules.get("torch")
    if torch is None:  # torch not in use: nothing to keep
        yield
        return
    n = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
