"""Triton kernels for instance norm on channels-last activations (inference): statistics, then scale-shift (+ReLU).

A channels-last activation ``(N, C, *spatial)`` is, in memory, an ``(N, S, C)`` array (S voxels, channels
innermost). PyTorch's instance norm reshapes it to one batch-norm "batch" of N×C channels, which needs a
channels-first copy, so a channels-last network converts back and forth around every norm. These kernels read
the layout as it is: one pass accumulates each (sample, channel)'s sum and sum of squares in float32 (shifted by
the sample's first voxel, so that a large mean does not cancel the variance away), one pass writes
``x·scale + shift`` with the optional ReLU fused, in the input's dtype. The reference is ``F.instance_norm``
(tests/models/test_fast_instance_norm.py, in Triton's interpreter on the CPU).

Import only where Triton is installed (it comes with PyTorch's CUDA builds): ``fast_instance_norm`` checks.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

BLOCK_ELEMENTS = 4096  # voxels × channels per program
PROGRAMS_PER_SM = 4  # statistics programs to aim for, per multiprocessor


@triton.jit
def _partial_sums(x_ptr, pivot_ptr, sums_ptr, squares_ptr, S, C, rows_per_split, SPLITS,
                  BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr):
    """Program (split, channel block, sample): sum and sum of squares of ``x − pivot`` over its rows."""
    split, channel_block, n = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    cols = channel_block * BLOCK_C + tl.arange(0, BLOCK_C)
    col_ok = cols < C
    pivot = tl.load(pivot_ptr + n * C + cols, mask=col_ok, other=0.0)
    base = x_ptr + n * S * C
    start = split * rows_per_split
    end = tl.minimum(start + rows_per_split, S)
    total = tl.zeros((BLOCK_S, BLOCK_C), dtype=tl.float32)
    total_sq = tl.zeros((BLOCK_S, BLOCK_C), dtype=tl.float32)
    for row0 in range(start, end, BLOCK_S):
        rows = row0 + tl.arange(0, BLOCK_S)
        ok = (rows < end)[:, None] & col_ok[None, :]
        value = tl.load(base + rows.to(tl.int64)[:, None] * C + cols[None, :], mask=ok, other=0.0)
        centred = tl.where(ok, value.to(tl.float32) - pivot[None, :], 0.0)
        total += centred
        total_sq += centred * centred
    out = (n * SPLITS + split) * C + cols
    tl.store(sums_ptr + out, tl.sum(total, axis=0), mask=col_ok)
    tl.store(squares_ptr + out, tl.sum(total_sq, axis=0), mask=col_ok)


@triton.jit
def _scale_shift(x_ptr, y_ptr, scale_ptr, shift_ptr, S, C,
                 BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr, RELU: tl.constexpr):
    """Program (row block, channel block, sample): ``y = x·scale + shift`` (then ReLU) in x's dtype."""
    row_block, channel_block, n = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    rows = row_block * BLOCK_S + tl.arange(0, BLOCK_S)
    cols = channel_block * BLOCK_C + tl.arange(0, BLOCK_C)
    col_ok = cols < C
    ok = (rows < S)[:, None] & col_ok[None, :]
    scale = tl.load(scale_ptr + n * C + cols, mask=col_ok, other=0.0)
    shift = tl.load(shift_ptr + n * C + cols, mask=col_ok, other=0.0)
    offsets = n * S * C + rows.to(tl.int64)[:, None] * C + cols[None, :]
    value = tl.load(x_ptr + offsets, mask=ok, other=0.0).to(tl.float32)
    out = value * scale[None, :] + shift[None, :]
    if RELU:
        out = tl.maximum(out, 0.0)
    tl.store(y_ptr + offsets, out.to(y_ptr.dtype.element_ty), mask=ok)


def _blocks(channels: int) -> tuple[int, int]:
    block_c = min(triton.next_power_of_2(channels), 128)
    return BLOCK_ELEMENTS // block_c, block_c


def _splits(samples: int, voxels: int, channel_blocks: int, block_s: int, device: torch.device) -> int:
    """Row splits per (sample, channel block) so the statistics pass fills the GPU."""
    processors = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
    wanted = max(1, PROGRAMS_PER_SM * processors // (samples * channel_blocks))
    return max(1, min(wanted, triton.cdiv(voxels, block_s)))


def instance_norm_nsc(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
                      relu: bool) -> torch.Tensor:
    """Instance norm of ``x`` viewed as ``(N, S, C)`` (contiguous), affine by ``weight``/``bias`` (C,) when given,
    optionally followed by ReLU; a new tensor of x's shape and dtype."""
    samples, voxels, channels = x.shape
    block_s, block_c = _blocks(channels)
    channel_blocks = triton.cdiv(channels, block_c)
    splits = _splits(samples, voxels, channel_blocks, block_s, x.device)
    rows_per_split = triton.cdiv(triton.cdiv(voxels, splits), block_s) * block_s
    splits = triton.cdiv(voxels, rows_per_split)
    pivot = x[:, 0, :].float().contiguous()
    sums = torch.empty(samples, splits, channels, device=x.device, dtype=torch.float32)
    squares = torch.empty_like(sums)
    with _on_device_of(x):
        _partial_sums[(splits, channel_blocks, samples)](x, pivot, sums, squares, voxels, channels, rows_per_split,
                                                         splits, BLOCK_S=block_s, BLOCK_C=block_c)
    mean_offset = sums.sum(1) / voxels
    var = (squares.sum(1) / voxels - mean_offset * mean_offset).clamp_min(0.0)
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight.float()
    shift = -(pivot + mean_offset) * scale
    if bias is not None:
        shift = shift + bias.float()
    y = torch.empty_like(x)
    grid = (triton.cdiv(voxels, block_s), channel_blocks, samples)
    with _on_device_of(x):
        _scale_shift[grid](x, y, scale.contiguous(), shift.contiguous(), voxels, channels,
                           BLOCK_S=block_s, BLOCK_C=block_c, RELU=relu)
    return y


def _on_device_of(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """``x``'s GPU as the current device while a kernel is launched: Triton launches on the current device's
    stream, not on the tensor's device (a model on ``cuda:1`` in a process whose current device is ``cuda:0``
    would otherwise fail, or be captured into no graph). A no-op for CPU tensors (Triton's interpreter)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()
