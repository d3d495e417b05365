"""Instance norm that keeps a channels-last layout, for inference on a GPU (Triton kernels).

``use_channels_last_instance_norm(model)`` swaps every instance norm without running statistics for a
:class:`ChannelsLastInstanceNorm` sharing its parameters; a norm directly followed by a ReLU in an
``nn.Sequential`` (conv → norm → ReLU) absorbs the ReLU. The fast path runs for channels-last CUDA tensors
outside autograd; anything else (CPU, channels-first input, gradients, no Triton) runs the original module,
so the swap never changes what a model computes beyond float rounding.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.instancenorm import _InstanceNorm

from segkit.models.swap import plain_sequentials, replace_modules
from segkit.runtime import channels_last_format


class ChannelsLastInstanceNorm(nn.Module):
    """Inference instance norm (optionally + ReLU) on channels-last activations without a layout change."""

    def __init__(self, source: _InstanceNorm, relu: bool = False, interpret: bool = False) -> None:
        super().__init__()
        self.source = source
        self.relu = relu
        # run the kernels on CPU tensors too: for Triton's interpreter, in a process started with TRITON_INTERPRET=1
        # (Triton reads it when it is first imported); slow, for tests and debugging without a GPU
        self.interpret = interpret

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu?(instance_norm(x))`` in x's dtype and layout."""
        if self._fast(x):
            n, c = x.shape[:2]
            nsc = x.permute(0, *range(2, x.ndim), 1).reshape(n, -1, c)  # a view: x is channels-last
            from segkit.models.instance_norm_kernels import instance_norm_nsc

            out = instance_norm_nsc(nsc, self.source.weight, self.source.bias, self.source.eps, self.relu)
            return out.view(n, *x.shape[2:], c).permute(0, x.ndim - 1, *range(1, x.ndim - 1))
        out = self.source(x)
        return torch.relu(out) if self.relu else out

    def _fast(self, x: torch.Tensor) -> bool:
        if x.ndim not in (4, 5) or torch.is_grad_enabled():
            return False
        if not (x.is_cuda or self.interpret) or x.shape[1] != self.source.num_features:
            return False
        return x.is_contiguous(memory_format=channels_last_format(x.ndim - 2)) and x[0, 0].numel() > 1


def use_channels_last_instance_norm(model: nn.Module, interpret: bool = False) -> nn.Module:
    """``model`` with its instance norms (those without running statistics) swapped in place; returns it."""
    def swap(child: nn.Module) -> nn.Module | None:
        if isinstance(child, ChannelsLastInstanceNorm):
            return child
        if isinstance(child, _InstanceNorm) and not child.track_running_stats:
            return ChannelsLastInstanceNorm(child, interpret=interpret)
        return None

    replace_modules(model, swap)
    for sequence in plain_sequentials(model):  # norm → ReLU: the ReLU goes into the norm's kernel
        for norm, name in zip(sequence, list(sequence._modules)[1:], strict=False):
            if isinstance(norm, ChannelsLastInstanceNorm) and type(sequence._modules[name]) is nn.ReLU:
                norm.relu = True
                sequence._modules[name] = nn.Identity()
    return model
