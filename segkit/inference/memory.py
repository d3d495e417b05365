"""A case that does not fit in memory is one line for that case, never the end of the batch."""

from __future__ import annotations

from pathlib import Path

import torch

from segkit.errors import DataError

# what torch's CPU allocator says when malloc fails (a RuntimeError, not a MemoryError)
_CPU_ALLOCATOR_FAILURE = "DefaultCPUAllocator: can't allocate memory"


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure: on a GPU, in NumPy, or in torch's CPU allocator."""
    return isinstance(exc, torch.OutOfMemoryError | MemoryError) or (
        isinstance(exc, RuntimeError) and _CPU_ALLOCATOR_FAILURE in str(exc))


def case_too_large(path: Path, device: torch.device, roi_size: tuple[int, ...], exc: BaseException) -> DataError:
    """The one-line error for a case whose prediction ran out of memory on ``device`` (cached GPU blocks freed)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    window = "×".join(map(str, roi_size))
    fix = ("even with one window per pass and the volume stitched on the host — predict it on a GPU with more free "
           "memory" if device.type == "cuda" else
           "— free memory (other programs, fewer reader threads with --workers 1) or predict it on a larger machine")
    return DataError(f"{path}: does not fit in {device} memory with windows of {window} ({first[:160]}) {fix}")
