"""Sliding-window passes replayed as CUDA graphs: one capture per window-batch shape, then no launch overhead.

A UNet forward pass is hundreds of kernel launches; with Triton norms and cuDNN's per-call planning the host
can take longer to launch a pass than the GPU takes to run it (benchmarks/forward_variants.py, H100: 39 ms per
8×128³ pass launched eagerly against 28 ms of kernels). Every pass of a sliding window has the same input
shape, so :class:`GraphedForward` captures the model's forward once per shape (after warm-up passes that let
cuDNN autotune and Triton compile) and afterwards only copies the input in and replays. Inference only: with
gradients enabled, on the CPU, or for a shape that does not fit in memory for capture, it runs the model eagerly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

WARMUP_PASSES = 2  # before capture: cuDNN autotuning and Triton compilation must not happen inside the graph


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    input: torch.Tensor
    output: torch.Tensor


class GraphedForward(torch.nn.Module):
    """``model``'s forward, replayed from a CUDA graph per (shape, dtype, strides, autocast) of its input."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self._graphs: dict[tuple, _Captured | None] = {}  # None: capture failed for lack of memory, run eagerly
        self._pool = None  # one memory pool shared by all captures

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output for ``x`` (a new tensor, not the graph's buffer)."""
        if not x.is_cuda or torch.is_grad_enabled():
            return self.model(x)
        # capture and replay use the current device's streams: make it x's (``--device cuda:1`` in one process)
        with torch.cuda.device(x.device):
            return self._replayed(x)

    def _replayed(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype, x.stride(), x.device, torch.is_autocast_enabled("cuda"),
               torch.get_autocast_dtype("cuda"))
        if key not in self._graphs:
            self._graphs[key] = self._capture(x)
        captured = self._graphs[key]
        if captured is None:
            return self.model(x)
        captured.input.copy_(x)
        captured.graph.replay()
        return captured.output.clone()

    def _capture(self, x: torch.Tensor) -> _Captured | None:
        static = torch.empty_like(x).copy_(x)
        stream = torch.cuda.Stream(x.device)
        stream.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_PASSES):
                self.model(static)
        torch.cuda.current_stream(x.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        # autocast's weight-cast cache would keep casts made outside the graph alive inside it: off for capture
        enabled, dtype = torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
        try:
            with torch.autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=False), \
                    torch.cuda.graph(graph, pool=self._pool):
                output = self.model(static)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            return None
        self._pool = graph.pool()
        return _Captured(graph, static, output)
