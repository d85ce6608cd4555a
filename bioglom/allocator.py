"""Keep freed host memory in the process instead of handing it back to the OS (glibc only).

glibc's ``malloc`` serves every block above a threshold (32 MB at most by default) with a
fresh ``mmap`` and returns it to the OS on ``free``. An update of unshared columns allocates
several such blocks at every settling step -- one weight gradient per layer is
``K' x N x d_in x d_out`` floats, 33.5 MB at the reference configuration -- so the kernel must
map and zero them again each time. A weight-gradient ``bmm`` with a 42 MB output took 19 ms
instead of 3.5 ms on the 2-core development CPU, with 10 241 page faults per call
(``docs/performance-notes.md``, entry 7). Raising the
mmap and trim thresholds keeps those blocks in the heap, where the next step reuses them.

The cost: the process's resident memory stays at its peak instead of shrinking after a large
temporary is freed (what jemalloc and tcmalloc, the allocators PyTorch's CPU tuning guide
recommends, also do). :func:`keep_freed_memory` is called by :func:`bioglom.train.train` and
the benchmark; set ``BIOGLOM_KEEP_FREED_MEMORY=0`` to leave glibc's defaults alone.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_THRESHOLD = -3
_applied: bool | None = None


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
    """Set glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` to ``threshold`` bytes (1 GiB)
    for the whole process. Returns True when applied (now or by an earlier call); False on
    other C libraries or when ``BIOGLOM_KEEP_FREED_MEMORY=0``."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("BIOGLOM_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, threshold) == 1
    ok = libc.mallopt(_M_TRIM_THRESHOLD, threshold) == 1 and ok
    _applied = ok
    return ok
