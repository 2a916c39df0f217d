"""The host allocator, tuned for a training or serving loop: memory a step frees stays with the
process for the next step instead of going back to the kernel.

    from dlhpc.engine.allocator import tune_host_allocator
    tune_host_allocator()   # the CLI calls it first thing, in every dlhpc process

Why: PyTorch's CPU tensors come from glibc's ``malloc``. By default glibc serves every block over
128 kB with a fresh ``mmap`` and returns it with ``munmap`` when freed, and gives the top of the
heap back (``brk``) once more than 128 kB of it is free. A training step allocates and frees the
same activations every time (the tutorial CNN's first convolution alone is 5.5 MB at a batch of
64), so each step paid for new zeroed pages from the kernel: page faults, not arithmetic. glibc
raises its thresholds on its own, but only after freeing a mapping larger than the current one
(in ``dlhpc train`` that was the first evaluation, so the whole first epoch ran slow).
Fixing the thresholds at the start made the CNN's training step 1.41× faster at batch 128 on
one thread (84.9 → 60.2 ms), 1.40× at batch 64 and 1.57× at batch 128 on two threads
(``benchmarks/host_allocator_cpu_20261129.md``). This is what
jemalloc/tcmalloc tuning guides for PyTorch on CPU do, with the allocator the process already has.

The cost: memory freed by a step is kept (up to ``TRIM_THRESHOLD`` free at the heap's top) for
the next one, the usual trade of a training process. Blocks over ``MMAP_THRESHOLD`` (glibc's
maximum for it) are still mapped and unmapped each time. On a C library other than glibc this
does nothing.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_host_allocator"]

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # the largest glibc accepts on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 2**30

_tuned: bool | None = None


def tune_host_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; True if they are set (once)."""
    global _tuned
    if _tuned is None:
        mallopt = _glibc_mallopt()
        settings = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        _tuned = mallopt is not None and all(mallopt(p, v) for p, v in settings)
    return _tuned


def _glibc_mallopt() -> Any:
    """glibc's ``mallopt`` from this process's symbols, or None on another C library."""
    try:  # "glibc 2.36" on glibc; absent (ValueError) or something else elsewhere
        libc_name = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        return None
    if not libc_name.startswith("glibc"):
        return None
    try:
        fn = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn
