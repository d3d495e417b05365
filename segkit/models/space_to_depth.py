"""Strided convolutions on few input channels, rewritten as space-to-depth + stride-1 convolution on the GPU.

The stem of a CT/MRI network (7×7×7, stride 2, one input channel) gets no tensor-core kernel from cuDNN: one
channel is 2 bytes per voxel where its implicit-GEMM kernels want 16. On an H100 it took 6.6 of 28 ms of an
8×128³ forward pass (benchmarks/forward_variants.py); zero-padding the input to 8 channels was slower still
(7.2 ms: 8× the work). The same convolution regrouped is dense: the 2×2×2 phases of each input voxel become 8
channels at half resolution, and the stride-2 kernel of size k becomes a stride-1 kernel of size ⌈k/2⌉ over
them (its taps regrouped the same way, with one zero tap when k is odd). It is the same sum of the same
products in a different order. :func:`use_space_to_depth_stems` swaps such convolutions for a twin that does
this on CUDA tensors; the parameters stay the same objects under the same names, and on the CPU nothing changes.
For bf16 inference on the CPU, :func:`use_phase_convolutions` replaces them by a :class:`PhaseConvolution` whose
stride-1 convolution oneDNN can pack: its AMX kernels are 6–13× faster on 8 phase channels than on one channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segkit.models.swap import replace_modules
from segkit.runtime import channels_last_format

PHASE_CHANNELS = 8  # in_channels × 2^dims must be a multiple of this (16 bytes per voxel in bf16)


def _eligible(conv: nn.Module) -> bool:
    if type(conv) not in TWINS:
        return False
    dims = conv.weight.ndim - 2
    return (conv.groups == 1 and conv.padding_mode == "zeros"
            and all(s == 2 for s in conv.stride) and all(d == 1 for d in conv.dilation)
            and isinstance(conv.padding, tuple) and conv.in_channels * 2**dims % PHASE_CHANNELS == 0
            and conv.in_channels * 2**dims <= 4 * PHASE_CHANNELS)


def _phases_first(dims: int) -> list[int]:
    """The permutation of ``(A, B, n1, 2, n2, 2, ...)`` to ``(A, B, 2, 2, ..., n1, n2, ...)``."""
    return [0, 1, *[3 + 2 * i for i in range(dims)], *[2 + 2 * i for i in range(dims)]]


def _phases(x: torch.Tensor, dims: int) -> torch.Tensor:
    """``(N, C, 2a, 2b[, 2c])`` → ``(N, C·2^dims, a, b[, c])``: channel = (c, phase per axis), laid out like ``x``."""
    n, c, *sizes = x.shape
    half = [s // 2 for s in sizes]
    split = x.reshape(n, c, *[v for h in half for v in (h, 2)])  # (N, C, a, 2, b, 2, ...)
    grouped = split.permute(*_phases_first(dims))  # (N, C, 2, 2, ..., a, b, ...)
    layout = channels_last_format(dims)
    out = grouped.reshape(n, c * 2**dims, *half)
    return out.contiguous(memory_format=layout) if x.is_contiguous(memory_format=layout) else out.contiguous()


def _phase_weight(weight: torch.Tensor, dims: int) -> torch.Tensor:
    """A stride-2 kernel ``(O, C, k, ...)`` as the stride-1 kernel ``(O, C·2^dims, ⌈k/2⌉, ...)`` over phases;
    odd sizes get one leading zero tap so that taps pair up (matching the extra left padding below)."""
    o, c, *kernel = weight.shape
    lead = [k % 2 for k in kernel]
    padded = F.pad(weight, [v for lead_k in reversed(lead) for v in (lead_k, 0)])
    taps = [(k + lead_k) // 2 for k, lead_k in zip(kernel, lead, strict=True)]
    split = padded.reshape(o, c, *[v for t in taps for v in (t, 2)])
    return split.permute(*_phases_first(dims)).reshape(o, c * 2**dims, *taps)


def _phase_padding(sizes: tuple[int, ...], kernel: tuple[int, ...], padding: tuple[int, ...]) -> list[int]:
    """``F.pad`` amounts (last axis first) after which the input's phases cover a stride-2 convolution's taps:
    one extra voxel on the left for odd kernels (their leading zero tap); negative amounts crop on the right."""
    outputs = [(s + 2 * p - k) // 2 + 1 for s, p, k in zip(sizes, padding, kernel, strict=True)]
    taps = [(k + k % 2) // 2 for k in kernel]
    left = [p + k % 2 for p, k in zip(padding, kernel, strict=True)]
    total = [2 * (o + t - 1) for o, t in zip(outputs, taps, strict=True)]  # padded length: the phases cover it
    right = [t - s - lft for t, s, lft in zip(total, sizes, left, strict=True)]
    return [v for lft, r in zip(reversed(left), reversed(right), strict=True) for v in (lft, r)]


def _padded_phases(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` padded for ``conv`` and regrouped into its phases, in the autocast dtype where autocast is on."""
    if torch.is_autocast_enabled(x.device.type):
        x = x.to(torch.get_autocast_dtype(x.device.type))
    return _phases(F.pad(x, _phase_padding(tuple(x.shape[2:]), conv.kernel_size, conv.padding)), x.ndim - 2)


def space_to_depth_convolution(conv: nn.Conv2d | nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a stride-2 convolution, computed as a stride-1 convolution over ``x``'s 2^dims phases."""
    convolve = F.conv3d if x.ndim == 5 else F.conv2d
    return convolve(_padded_phases(conv, x), _phase_weight(conv.weight, x.ndim - 2), conv.bias)


class _SpaceToDepth:
    """Mixin: on CUDA inputs, compute the stride-2 convolution over input phases."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution of ``x`` (on CUDA regrouped; the same sum in another order)."""
        if not x.is_cuda:
            return super().forward(x)
        return space_to_depth_convolution(self, x)


class SpaceToDepthConv2d(_SpaceToDepth, nn.Conv2d):
    """``nn.Conv2d`` (stride 2) computed over input phases on CUDA."""


class SpaceToDepthConv3d(_SpaceToDepth, nn.Conv3d):
    """``nn.Conv3d`` (stride 2) computed over input phases on CUDA."""


TWINS = {nn.Conv2d: SpaceToDepthConv2d, nn.Conv3d: SpaceToDepthConv3d}


def use_space_to_depth_stems(model: nn.Module) -> nn.Module:
    """``model`` with each eligible convolution (stride 2, ungrouped, few input channels) swapped in place for
    its space-to-depth twin sharing the same parameters; returns ``model``."""
    return replace_modules(model, lambda child: _twin(child) if _eligible(child) else None)


class PhaseConvolution(nn.Module):
    """A stride-2 convolution on few input channels, for inference on the CPU: a stride-1 convolution (``inner``, a
    plain ``nn.Conv2d``/``nn.Conv3d`` over the input's 2^dims phases, which ``models.packed_conv`` packs like any
    other) on the padded, regrouped input. With bf16 weights oneDNN's AMX kernels run the one-channel 7×7×7 stem of
    two 96×96×32 windows in 4.8 ms this way against 27.6 ms as it is (benchmarks/cpu_inference.py, 2-core Xeon;
    in float32 not used)."""

    def __init__(self, conv: nn.Conv2d | nn.Conv3d) -> None:
        super().__init__()
        dims = conv.weight.ndim - 2
        weight = _phase_weight(conv.weight.detach(), dims)
        inner = (nn.Conv3d if dims == 3 else nn.Conv2d)(
            weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), bias=conv.bias is not None, device="meta")
        inner.weight = nn.Parameter(weight, requires_grad=False)
        if conv.bias is not None:
            inner.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        self.inner, self.kernel_size, self.padding = inner.eval(), conv.kernel_size, conv.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The strided convolution of ``x``."""
        return self.inner(_padded_phases(self, x))


def use_phase_convolutions(model: nn.Module) -> nn.Module:
    """``model`` (for inference) with each eligible convolution replaced in place by a :class:`PhaseConvolution`
    holding its regrouped weights; returns ``model``."""
    return replace_modules(model, lambda child: PhaseConvolution(child) if _eligible(child) else None)


def _twin(conv: nn.Conv2d | nn.Conv3d) -> nn.Module:
    twin = TWINS[type(conv)](conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                             padding=conv.padding, bias=conv.bias is not None, device="meta")
    twin.weight, twin.bias = conv.weight, conv.bias
    return twin.train(conv.training)
