"""An address-space cap for hostile-input tests: a regression fails fast with MemoryError
(which the reader turns into "not enough memory to decode", failing the test's message check)
instead of growing the test process to many gigabytes (issue 21: 16 GB from a 13 KB file).
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Iterator

#: Address space allowed above what the process has mapped when the cap is set.
TEST_HEADROOM = 4 << 30


def mapped_bytes() -> int:
    """The process's current address space (``VmSize``), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


@contextlib.contextmanager
def address_space_cap(headroom: int = TEST_HEADROOM) -> Iterator[int]:
    """Lower the soft ``RLIMIT_AS`` to the current address space + ``headroom`` for the block,
    then restore it. Yields the cap in bytes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = mapped_bytes() + headroom
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield cap
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
