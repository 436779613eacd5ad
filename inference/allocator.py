"""Keep the C allocator from handing freed memory back to the system between clips.

The pitch tracker's per-clip temporaries (about 1 MB each for a 3 s clip) make glibc's malloc trim the heap
after each clip and fault the pages in again at the next: about 1,000 minor page faults per clip, which
doubled the time of the CNN with pitch channels and made the S4 defaults 15 ms per clip instead of 9
(benchmarks/results/dev-speaker-cv/ROUNDS.md, ninth round). A long-running inference process (`python -m
modeling.predict`, the demo) keeps that memory instead, as `MALLOC_TRIM_THRESHOLD_` / `MALLOC_MMAP_THRESHOLD_`
in its environment would.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def keep_freed_memory(trim_threshold: int = 256 << 20, mmap_threshold: int = 16 << 20) -> bool:
    """Sets this process's glibc trim threshold (free memory kept at the top of the heap) and mmap threshold
    (allocations above it get their own mapping, unmapped on free). True where it took effect; False where
    the C library has no glibc `mallopt` (macOS, Windows) or refuses it: nothing changes there."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_TRIM_THRESHOLD, trim_threshold)) and bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold))
