"""bioglom.allocator: page faults of repeated large blocks, counted with the setting on and off."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import resource
    from bioglom.allocator import keep_freed_memory
    applied = keep_freed_memory()
    import torch

    def faults(n):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(n):
            torch.empty(16 * 2**20).fill_(1.0)  # 64 MiB: above glibc's largest mmap threshold
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / n

    faults(20)  # the heap grows to hold the block
    print(applied, faults(5))
    """
)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="glibc only",
)
@pytest.mark.parametrize("switch", ["1", "0"])
def test_keep_freed_memory_stops_page_faults_of_repeated_large_blocks(switch):
    """A 64 MiB block allocated, written and freed again and again: with the setting, the
    heap keeps it and the writes fault (almost) no page in; with
    ``BIOGLOM_KEEP_FREED_MEMORY=0`` every write faults in all 16 384 pages again."""
    env = {**os.environ, "BIOGLOM_KEEP_FREED_MEMORY": switch}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    applied, faults = out.stdout.split()
    pages = 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    if switch == "1":
        assert applied == "True"
        assert float(faults) < 0.05 * pages
    else:
        assert applied == "False"
        assert float(faults) > 0.9 * pages
