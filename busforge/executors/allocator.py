"""Keep freed memory in a render process instead of handing it back to the OS after every image.

glibc serves large allocations (above a threshold that adapts as the program runs) with fresh
`mmap`s and trims the heap's free top back to the OS. A render allocates and frees dozens of
0.5-2 MB arrays per image, so, depending on how the threshold happened to adapt, a process could
page-fault its working set in again for every image: 2,208 minor faults per profiled 512² image
before, 11 with this (`python benchmarks/render_procedural.py --before DIR`, DIR a checkout of
223e950). Fixed thresholds make every process reuse its freed memory: the resident size stays at
one image's working set, which a render needs again for the next image anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit: larger blocks still get their own mmap
TRIM_THRESHOLD = 256 << 20  # free heap top kept before any is given back


def retain_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (module docstring).

    Returns whether they were set: False on other C libraries (macOS, musl), where it does nothing.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl has a mallopt that ignores these
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
