"""Convolutions with oneDNN-prepacked weights, for fp32 inference on the CPU.

An eager ``nn.Conv3d`` on the CPU re-lays its weights into oneDNN's blocked format on every call (for
channels-last inputs that copy alone cost ~100 ms of a 300 ms UNet-ResNet34 window on the 2-core test machine),
and for batch-1 inputs with few channels×voxels PyTorch's heuristic picks its slow reference convolution instead
of oneDNN. :class:`PackedConv` reorders the weights once, at its first call, for that input's size, and then runs
oneDNN's convolution (``torch.ops.mkldnn._convolution_pointwise``, the op ``torch.compile`` emits for frozen CPU
convolutions; ``_convolution_transpose_pointwise`` for transposed ones), with the following ReLU fused in where a
``conv → norm → ReLU`` block has its norm folded away. The result is the same convolution (equal to the eager
module to float32 rounding, tested); packed weights serve every input size. Anything the packed path does not
cover (autocast, gradients, non-float32 inputs, non-CPU tensors) runs the original module, so a packed model stays
correct wherever it is called.

Measured in ``benchmarks/predict_e2e.py`` on the CPU (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from segkit.models.swap import plain_sequentials, replace_modules

_REORDER = {2: "mkldnn_reorder_conv2d_weight", 3: "mkldnn_reorder_conv3d_weight"}


def packing_available() -> bool:
    """Whether this torch build has oneDNN and the prepacked-convolution ops."""
    return (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and all(hasattr(torch._C._nn, name) for name in _REORDER.values())
            and all(hasattr(torch.ops.mkldnn, name) for name in (
                "_convolution_pointwise", "_convolution_transpose_pointwise", "_reorder_convolution_transpose_weight")))


class PackedConv(nn.Module):
    """``conv`` (a 2D/3D zero-padded convolution or transposed convolution), optionally followed by a fused ReLU,
    with its weights packed for oneDNN at the first call. Keeps ``conv`` (and its parameters) for the unpacked path."""

    def __init__(self, conv: nn.Conv2d | nn.Conv3d, relu: bool = False) -> None:
        super().__init__()
        self.conv, self.relu = conv, relu
        self._attr = "relu" if relu else "none"
        self._geometry = [list(conv.padding), list(conv.stride), list(conv.dilation)]  # the ops' int lists
        self._packed: torch.Tensor | None = None

    def _fast(self, x: torch.Tensor) -> bool:
        return (x.device.type == "cpu" and x.dtype == torch.float32 and self.conv.weight.dtype == torch.float32
                and not (torch.is_grad_enabled() and (x.requires_grad or self.conv.weight.requires_grad))
                and not torch.is_autocast_enabled("cpu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution (and ReLU) of ``x``."""
        if not self._fast(x):
            out = self.conv(x)
            return torch.relu(out) if self.relu else out
        conv, attr, geometry = self.conv, self._attr, self._geometry
        bias = None if conv.bias is None else conv.bias.detach()
        if conv.transposed:
            if self._packed is None:
                self._packed = torch.ops.mkldnn._reorder_convolution_transpose_weight(
                    conv.weight.detach(), geometry[0], list(conv.output_padding), *geometry[1:], conv.groups,
                    list(x.shape))
            return torch.ops.mkldnn._convolution_transpose_pointwise(
                x, self._packed, bias, geometry[0], list(conv.output_padding), *geometry[1:], conv.groups, attr, [], "")
        if self._packed is None:
            reorder = getattr(torch._C._nn, _REORDER[x.ndim - 2])
            self._packed = reorder(conv.weight.detach().to_mkldnn(), *geometry, conv.groups, list(x.shape))
        return torch.ops.mkldnn._convolution_pointwise(x, self._packed, bias, *geometry, conv.groups, attr, [], "")


def _packable(module: nn.Module) -> bool:
    """A zero-padded 2D/3D convolution or transposed convolution (called without ``output_size``, as segkit's
    upsampling does)."""
    return (isinstance(module, _ConvNd) and module.padding_mode == "zeros" and not isinstance(module.padding, str)
            and module.weight.ndim - 2 in _REORDER)


def pack_convolutions(model: nn.Module) -> nn.Module:
    """Replace every packable convolution of ``model`` (in eval mode, on the CPU) by a :class:`PackedConv`, in
    place, fusing ``conv → Identity → ReLU`` runs of an ``nn.Sequential`` (a ``ConvNormAct`` whose batch norm was
    folded). Returns ``model``; packing again changes nothing; a no-op where :func:`packing_available` is False.
    For inference only."""
    if model.training:
        raise ValueError("pack_convolutions needs a model in eval mode")
    if not packing_available():
        return model
    for sequence in plain_sequentials(model):
        _fuse_relus(sequence)
    # a PackedConv is returned as it is: packing twice changes nothing
    return replace_modules(model, lambda child: child if isinstance(child, PackedConv)
                           else PackedConv(child) if _packable(child) else None)


def _fuse_relus(sequence: nn.Sequential) -> None:
    """In ``sequence``, conv → Identity → ReLU becomes PackedConv(relu) → Identity → Identity."""
    names = list(sequence._modules)
    for i in range(len(names) - 2):
        conv, between, act = (sequence._modules[n] for n in names[i:i + 3])
        if _packable(conv) and isinstance(between, nn.Identity) and type(act) is nn.ReLU:
            sequence._modules[names[i]] = PackedConv(conv, relu=True)
            sequence._modules[names[i + 2]] = nn.Identity()
