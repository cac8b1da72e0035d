"""glibc malloc settings for CPU meta-training (the one process-wide fast-path setting).

PyTorch's CPU tensors come from ``malloc``. glibc serves blocks above its mmap threshold
(128 KiB, adapting up to 32 MiB) with a fresh ``mmap`` and returns them with ``munmap`` on
free, so every large temporary is paid for again in page faults and kernel page zeroing. A
second-order meta-step allocates thousands of such temporaries: on the Omniglot CNN (8 tasks,
5-way 1-shot, 75 queries) we counted ~35,000 minor page faults and ~75 ms of system time per
meta-step, ~20% of its CPU time. Raising the mmap and trim thresholds keeps those blocks in the
heap for reuse: page faults drop to ~0. Memory is not returned to the OS below
``trim`` bytes of free heap, so the resident set stays at its peak (which it reaches anyway
on the next meta-step).

:func:`tune_malloc` changes the whole process, so no math function calls it: a training run
asks for it at start (``TrainConfig.tune_malloc``, which the experiments' presets set, so
``maml-probe`` runs and the notebooks have it), and a library user calls it or not. The
environment variable ``MAML_PROBE_MALLOC=0`` turns it off everywhere; it does nothing where
glibc is not the C library.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 << 20      # tensors up to 256 MiB come from the heap
TRIM_THRESHOLD = 1 << 30        # keep up to 1 GiB of freed heap for reuse

_state: dict[str, object] = {"done": False, "applied": False}


def malloc_tuning_enabled() -> bool:
    """Whether ``MAML_PROBE_MALLOC`` allows the tuning (anything but ``0``/``false``/``no``/``off``)."""
    return os.environ.get("MAML_PROBE_MALLOC", "1").strip().lower() not in ("0", "false", "no", "off")


def tune_malloc(force: bool = False) -> bool:
    """Raise glibc's mmap/trim thresholds once per process; True if they are (now) raised."""
    if _state["done"] and not force:
        return bool(_state["applied"])
    _state["done"] = True
    if not sys.platform.startswith("linux") or not (force or malloc_tuning_enabled()):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not hasattr(libc, "gnu_get_libc_version"):  # glibc only (musl has no such thresholds)
            raise AttributeError("not glibc")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    except (OSError, AttributeError):
        ok = False
    _state["applied"] = ok
    return ok


def malloc_tuned() -> bool:
    """Whether :func:`tune_malloc` has raised the thresholds in this process."""
    return bool(_state["applied"])
