"""Where GPU time goes: the kernels of a few calls of a function, by total time and by kind (torch.profiler).

Used by train_step.py and forward_variants.py with ``--profile``; prints the top kernels and a breakdown by
kind (convolution forward / data gradient / weight gradient, norms, layout copies, element-wise, ...).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import torch
from rich.console import Console
from rich.table import Table

KINDS = (  # first match wins; matched against the lower-cased kernel name
    ("conv weight gradient", ("wgrad",)),
    ("conv data gradient", ("dgrad",)),
    ("layout copy", ("nchwtonhwc", "nhwctonchw", "transpose", "copy_kernel", "direct_copy")),
    ("convolution", ("conv", "implicit_gemm", "xmma", "sm90", "sm80", "cutlass", "gemm")),
    ("batch norm", ("batch_norm", "batchnorm", "bn_fw", "bn_bw", "welford")),
    ("instance norm (Triton)", ("_partial_sums", "_scale_shift")),
    ("optimizer", ("adam", "foreach", "multi_tensor")),
    ("loss / softmax", ("softmax", "nll", "cross_entropy", "log_")),
    ("reduction", ("reduce",)),
    ("element-wise", ("elementwise", "vectorized", "unrolled", "fill")),
    ("Triton (other)", ("triton",)),
)


def _kind(name: str) -> str:
    lowered = name.lower()
    return next((kind for kind, keys in KINDS if any(k in lowered for k in keys)), "other")


def _device_us(event) -> float:
    for attribute in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(event, attribute):
            return float(getattr(event, attribute))
    return 0.0


def kernel_report(fn: Callable[[], object], calls: int, title: str, top: int = 15) -> None:
    """Run ``fn`` ``calls`` times under the profiler (CUDA kernels only) and print per-call milliseconds."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    kernels = [e for e in prof.key_averages() if _device_us(e) > 0]
    total = sum(_device_us(e) for e in kernels)
    by_kind: dict[str, float] = defaultdict(float)
    launches = 0
    for event in kernels:
        by_kind[_kind(event.key)] += _device_us(event)
        launches += event.count
    console = Console(width=160)
    kinds = Table(title=f"{title}: {total / calls / 1e3:.2f} ms of kernels per call, "
                        f"{launches / calls:.0f} launches per call")
    for column in ("kind", "ms per call", "share"):
        kinds.add_column(column)
    for kind, us in sorted(by_kind.items(), key=lambda item: -item[1]):
        kinds.add_row(kind, f"{us / calls / 1e3:.2f}", f"{us / total:.0%}")
    console.print(kinds)
    table = Table(title=f"{title}: top {top} kernels")
    for column in ("kernel", "kind", "calls", "ms per call", "share"):
        table.add_column(column, overflow="fold")
    for event in sorted(kernels, key=lambda e: -_device_us(e))[:top]:
        table.add_row(event.key[:90], _kind(event.key), f"{event.count / calls:.0f}",
                      f"{_device_us(event) / calls / 1e3:.3f}", f"{_device_us(event) / total:.1%}")
    console.print(table)
