"""An experiment for forward_variants.py: instance norm that keeps a channels-last layout (inference only).

PyTorch's instance norm reshapes its input to one batch-norm "batch" of N×C channels, which forces a contiguous
(channels-first) copy; a channels-last network then converts back and forth around every norm layer. This
module computes the same thing with reductions and element-wise ops that keep whatever layout the input has:
statistics in float32 over the spatial axes (biased variance, as instance norm uses), then one fused
multiply-add per voxel. On an H100 it did not pay (forward_variants.py: 43.7 ms per 8×128³ pass against
41.5 ms contiguous): its separate reductions and element-wise passes cost more than the copies they save.
segkit's predictor uses fused Triton kernels instead (``segkit/models/fast_instance_norm.py``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.instancenorm import _InstanceNorm


class LayoutKeepingInstanceNorm(nn.Module):
    """Instance norm (per sample and channel, no running statistics) that preserves the input's memory layout."""

    def __init__(self, source: _InstanceNorm) -> None:
        super().__init__()
        self.eps = source.eps
        self.weight = source.weight
        self.bias = source.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / sqrt(var + eps) * weight + bias`` per sample and channel, in ``x``'s dtype and layout."""
        var, mean = torch.var_mean(x.float(), dim=tuple(range(2, x.ndim)), correction=0, keepdim=True)
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight.float().view(1, -1, *([1] * (x.ndim - 2)))
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias.float().view(1, -1, *([1] * (x.ndim - 2)))
        return torch.addcmul(shift, x, scale).to(x.dtype)


def with_layout_keeping_instance_norm(model: nn.Module) -> nn.Module:
    """``model`` with every instance norm that keeps no running statistics replaced (in place) by
    :class:`LayoutKeepingInstanceNorm` sharing its parameters."""
    for name, child in model.named_children():
        if isinstance(child, _InstanceNorm) and not child.track_running_stats:
            setattr(model, name, LayoutKeepingInstanceNorm(child))
        else:
            with_layout_keeping_instance_norm(child)
    return model
