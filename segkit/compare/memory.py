"""Wall time and peak memory of one block of work (one volume's forward pass).

On a GPU the peak is ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``: the most bytes
held by tensors at once during the block, the model's weights and the input included (not the caching
allocator's reserve, not the CUDA context).

On a CPU there is no allocator counter, so the probe measures the process: it returns freed heap memory to
the system (``malloc_trim``), resets the kernel's peak-RSS mark (``/proc/self/clear_refs`` ← ``5``, Linux),
and reports ``VmHWM`` at the end minus ``VmRSS`` at the start — the growth of the resident set, i.e. the
memory the block needed on top of what the process already held (weights and input are already resident,
so they are not counted). Where the peak mark cannot be reset (other systems), the growth of the lifetime
peak (``ru_maxrss``) is reported instead, which is only a lower bound; ``method`` says which one applied.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import resource
import sys
import time
from pathlib import Path

import torch

STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")
CUDA_METHOD = "cuda max_memory_allocated"
RSS_METHOD = "peak RSS growth (VmHWM at end - VmRSS at start)"
LIFETIME_METHOD = "lifetime peak RSS growth (ru_maxrss; lower bound)"


def _status_kib(field: str) -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):  # not glibc: freed memory may stay in the process
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak_rss() -> bool:
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def _lifetime_peak_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


class Probe:
    """``with Probe(device) as probe: ...`` then ``probe.seconds``, ``probe.peak_mib`` and ``probe.method``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = float("nan")
        self.peak_mib = float("nan")
        self.method = CUDA_METHOD if device.type == "cuda" else RSS_METHOD

    def __enter__(self) -> Probe:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            gc.collect()
            _malloc_trim()
            if _reset_peak_rss():
                self._start_mib = _status_kib("VmRSS") / 1024
            else:
                self.method, self._start_mib = LIFETIME_METHOD, _lifetime_peak_mib()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds = time.perf_counter() - self._started
        if self.device.type == "cuda":
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.method == RSS_METHOD:
            self.peak_mib = max(_status_kib("VmHWM") / 1024 - self._start_mib, 0.0)
        else:
            self.peak_mib = max(_lifetime_peak_mib() - self._start_mib, 0.0)
