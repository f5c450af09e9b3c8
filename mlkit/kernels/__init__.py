"""Hot-spot kernels, one module per hot spot, all following one convention.

Each module `mlkit/kernels/<name>.py` holds, for its operation `<op>`:

- `<op>_reference(...)`: plain NumPy/SciPy, written for clarity; the truth the others are tested against;
- `<op>_numba(...)`: the Numba CPU kernel (`@njit(cache=True)`, `prange` where rows or columns are independent);
- `<op>_torch(...)`: the torch path, which runs on CUDA tensors (and on CPU tensors);
- `<op>(x, ...)`: the entry point, which dispatches on its input: a CUDA tensor goes to the torch path, NumPy arrays
  and CPU tensors go to Numba.

`tests/kernels/test_<name>.py` checks the Numba and torch paths against the reference with hypothesis, plus a
`gpu`-marked test of the CUDA path; CI runs the kernel tests a second time with NUMBA_DISABLE_JIT=1, so the Python
bodies of the Numba kernels are checked too. `benchmarks/` times each kernel against a baseline in the same run.
"""

from __future__ import annotations

from typing import Any


def is_cuda(x: Any) -> bool:
    """True for a torch tensor that lives on a CUDA device (never imports torch itself)."""
    return getattr(getattr(x, "device", None), "type", None) == "cuda"


def is_torch(x: Any) -> bool:
    """True for a torch tensor (never imports torch itself)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "device")
