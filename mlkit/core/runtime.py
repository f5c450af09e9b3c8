"""The run context: device, seed, distributed state, console and run dir, passed explicitly to tasks."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from mlkit.core.console import make_console, progress_enabled, track
from mlkit.core.errors import UsageError

T = TypeVar("T")


@dataclass
class Dist:
    """Distributed state read from torchrun's environment."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_from_env() -> Dist:
    """Read WORLD_SIZE, RANK and LOCAL_RANK as torchrun sets them."""
    return Dist(
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        rank=int(os.environ.get("RANK", "0")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def select_device(spec: str, dist: Dist | None = None) -> str:
    """Resolve auto|cpu|cuda|cuda:N to a torch device string; under torchrun cuda means cuda:LOCAL_RANK."""
    import torch

    spec = (spec or "auto").strip().lower()
    has_cuda = torch.cuda.is_available()
    if spec == "auto":
        spec = "cuda" if has_cuda else "cpu"
    if spec == "cpu":
        return "cpu"
    if spec.startswith("cuda"):
        if not has_cuda:
            raise UsageError(
                f"device '{spec}' asked for, but CUDA is not available", None, "Use --device cpu."
            )
        if spec == "cuda":
            index = dist.local_rank if dist and dist.enabled else 0
        else:
            try:
                index = int(spec.split(":", 1)[1])
            except ValueError:
                raise UsageError(f"bad device '{spec}'", None, "Use auto, cpu, cuda or cuda:N.") from None
        if index >= torch.cuda.device_count():
            raise UsageError(
                f"device cuda:{index} does not exist ({torch.cuda.device_count()} visible)",
                None,
                "Pick another N.",
            )
        return f"cuda:{index}"
    raise UsageError(f"bad device '{spec}'", None, "Use auto, cpu, cuda or cuda:N.")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (all devices); optionally ask for deterministic kernels."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


@dataclass
class Ctx:
    """Everything a task's run functions need besides the config; built by the CLI, passed explicitly."""

    task: str
    mode: str
    device: str = "cpu"
    seed: int = 0
    dist: Dist = field(default_factory=Dist)
    run_dir: Path | None = None
    console: Console = field(default_factory=make_console)
    quiet: bool = False
    debug: bool = False
    project: Path = Path("runs")

    @property
    def is_main(self) -> bool:
        return self.dist.rank == 0

    def log(self, message: str) -> None:
        """An info line on stderr, rank 0 only."""
        if self.is_main:
            self.console.print(message)

    def warn(self, message: str) -> None:
        """A warning line on stderr, rank 0 only; shown even with --quiet."""
        if self.is_main:
            sys.stderr.write(f"warning: {message}\n")
            sys.stderr.flush()

    def track(self, items: Iterable[T], description: str = "", total: int | None = None) -> Iterator[T]:
        """Iterate with a progress bar when a person is watching (rank 0, terminal, not --quiet)."""
        enabled = self.is_main and progress_enabled(self.console, self.quiet)
        return track(items, self.console, enabled, description, total)

    # --- distributed helpers (torch imported lazily) ---
    def barrier(self) -> None:
        """Wait for every rank (no-op when not distributed)."""
        if self.dist.enabled:
            import torch.distributed as tdist

            if tdist.is_initialized():
                tdist.barrier()

    def wrap(self, model: Any) -> Any:
        """Wrap a model in DistributedDataParallel under torchrun, else return it."""
        if not self.dist.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        if self.device.startswith("cuda"):
            return DDP(model, device_ids=[int(self.device.split(":")[1])])
        return DDP(model)

    @staticmethod
    def unwrap(model: Any) -> Any:
        """The bare module under a DDP wrapper."""
        return getattr(model, "module", model)

    def sampler(self, dataset: Any, shuffle: bool, drop_last: bool = False) -> Any:
        """A DistributedSampler under torchrun (seeded by the run seed), else None."""
        if not self.dist.enabled:
            return None
        from torch.utils.data.distributed import DistributedSampler

        return DistributedSampler(
            dataset,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
            shuffle=shuffle,
            seed=self.seed,
            drop_last=drop_last,
        )

    def all_reduce_mean(self, value: float) -> float:
        """Average a float over ranks."""
        if not self.dist.enabled:
            return value
        import torch
        import torch.distributed as tdist

        t = torch.tensor([value], dtype=torch.float64)
        tdist.all_reduce(t)
        return float(t.item()) / self.dist.world_size

    def broadcast(self, obj: Any) -> Any:
        """Send a picklable object from rank 0 to every rank."""
        if not self.dist.enabled:
            return obj
        import torch.distributed as tdist

        box = [obj]
        tdist.broadcast_object_list(box, src=0)
        return box[0]


def init_distributed(dist: Dist, device: str) -> None:
    """Start the process group under torchrun: nccl on CUDA, gloo on CPU."""
    if not dist.enabled:
        return
    import torch
    import torch.distributed as tdist

    if tdist.is_initialized():
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if device.startswith("cuda"):
        torch.cuda.set_device(int(device.split(":")[1]))
    tdist.init_process_group(backend=backend)


def close_distributed() -> None:
    """Tear the process group down if one is up."""
    try:
        import torch.distributed as tdist

        if tdist.is_available() and tdist.is_initialized():
            tdist.destroy_process_group()
    except Exception:  # noqa: BLE001 - teardown must never mask the real error
        pass


_MALLOC_TUNED = False


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back to the OS (no-op elsewhere).

    A batched recurrence allocates and frees the same few 1-30 MB buffers every step; by default glibc maps each
    one fresh (mmap above its dynamic threshold) or trims the heap after it, so every batch pays the page faults
    again, and on a VM that reports freed pages to its host (Firecracker here) two threads faulting at once cost
    ~10x one. Allocations up to 32 MB (glibc's ceiling) come from the heap and the heap is not trimmed; bigger
    ones are still mapped and unmapped as before, so the peak resident size does not grow. This is the
    setting Intel's PyTorch CPU tuning guide reaches with MALLOC_* variables or jemalloc. Set MLKIT_MALLOC=default
    to leave malloc alone. Returns whether the settings were applied.
    """
    global _MALLOC_TUNED
    if (
        _MALLOC_TUNED
        or os.environ.get("MLKIT_MALLOC", "") == "default"
        or not sys.platform.startswith("linux")
    ):
        return _MALLOC_TUNED
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = mallopt(m_mmap_threshold, 32 * 1024 * 1024) == 1 and mallopt(m_trim_threshold, 2**31 - 1) == 1
    _MALLOC_TUNED = ok
    return ok


_SIGINT_SEEN = False


def _on_sigint(signum: int, frame: Any) -> None:
    global _SIGINT_SEEN
    _SIGINT_SEEN = True
    raise KeyboardInterrupt


def watch_sigint() -> Any:
    """Note every Ctrl-C (then raise KeyboardInterrupt as Python does); returns the handler it replaced.

    A Ctrl-C that lands inside compiled code (a Numba kernel called from an autograd backward, say) can
    surface as another exception (SystemError "returned a result with an exception set"); with the note,
    the runner and the CLI still treat it as an interruption: exit 130 with the resume hint.
    """
    import signal
    import threading

    global _SIGINT_SEEN
    _SIGINT_SEEN = False
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, _on_sigint)


def restore_sigint(previous: Any) -> None:
    """Put back the handler watch_sigint replaced."""
    import signal

    if previous is not None:
        signal.signal(signal.SIGINT, previous)


def sigint_seen() -> bool:
    """Whether Ctrl-C arrived since watch_sigint()."""
    return _SIGINT_SEEN
