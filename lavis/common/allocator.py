"""How the C allocator serves the large, short-lived CPU tensors of a training step.

glibc's ``malloc`` maps blocks above its mmap threshold (128 KiB, rising to at most 32 MiB as
such blocks are freed) straight from the kernel and unmaps them on ``free``. A BLIP-base training
step at 384 px allocates and frees many blocks that size (attention scores, MLP activations,
gradients), so every step maps fresh pages and faults each 4 KiB page in when it is first touched.
:func:`reuse_freed_memory` makes malloc serve those blocks from its heap and keep what is freed
for the next step, as an allocator such as jemalloc or tcmalloc does. The runner applies it when
it trains on a CPU (``run.reuse_cpu_memory``); it changes where memory comes from, not what is
computed.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: free memory at the top of the heap that malloc keeps instead of returning it (the C int maximum)
KEEP_BYTES = 2**31 - 1

_applied = False


def reuse_freed_memory() -> bool:
    """Serve large blocks from glibc's heap and keep freed memory for reuse; process-wide.

    Returns whether glibc took the settings (False on other platforms and C libraries; an
    allocator preloaded in glibc's place, such as jemalloc or tcmalloc, keeps freed memory itself
    and is not affected). Calling it again does nothing more.
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        version = libc.gnu_get_libc_version
    except (OSError, AttributeError):
        return False
    version.restype = ctypes.c_char_p
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_MMAP_MAX, 0) != 1 or mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) != 1:
        log.info("glibc %s did not take the malloc settings; CPU memory is allocated as before",
                 version().decode())
        return False
    _applied = True
    return True
