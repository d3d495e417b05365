"""Convolutions with oneDNN-prepacked weights, for fp32 and bf16 inference on the CPU.

An eager ``nn.Conv3d`` on the CPU re-lays its weights into oneDNN's blocked format on every call (for
channels-last inputs that copy alone cost ~100 ms of a 300 ms UNet-ResNet34 window on the 2-core test machine),
and for batch-1 inputs with few channels×voxels PyTorch's heuristic picks its slow reference convolution instead
of oneDNN. :class:`PackedConv` reorders the weights once, at its first call, for that input's size, and then runs
oneDNN's convolution (``torch.ops.mkldnn._convolution_pointwise``, the op ``torch.compile`` emits for frozen CPU
convolutions; ``_convolution_transpose_pointwise`` for transposed ones), with the following ReLU fused in where a
``conv → norm → ReLU`` block has its norm folded away. The result is the same convolution (equal to the eager
module to float32 rounding, tested); packed weights serve every input size. With bf16 weights
(``pack_convolutions(model, torch.bfloat16)``, called under bf16 autocast) oneDNN runs the CPU's AMX/AVX512-BF16
units. Anything the packed path does not cover (gradients, an input dtype other than the weights' outside a matching
autocast, non-CPU tensors) runs the original module, so a packed model stays correct wherever it is called.

Measured in ``benchmarks/predict_e2e.py`` on the CPU (docs/BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from segkit.models.swap import plain_sequentials, replace_modules

_REORDER = {2: "mkldnn_reorder_conv2d_weight", 3: "mkldnn_reorder_conv3d_weight"}
_PACKED_DTYPES = (torch.float32, torch.bfloat16)
# a bf16 output rounds to 2^-9 of itself; garbage from a faulty kernel is off by tens of percent of the largest value
_BF16_TOLERANCE = 1 / 64
# (convolution's signature, input shape) → whether oneDNN's bf16 kernel computed it right: a kernel's fault is a
# property of its shapes, not of its weights, so one check serves every model in the process
_KERNEL_VERDICTS: dict[tuple, bool] = {}


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
        self._signature = (tuple(conv.weight.shape), tuple(conv.stride), tuple(conv.padding), tuple(conv.dilation),
                           conv.groups, conv.transposed, tuple(conv.output_padding), conv.bias is not None, relu)

    def _input(self, x: torch.Tensor) -> torch.Tensor | None:
        """``x`` as the packed path takes it (in the weights' dtype, as autocast would cast it), or None where the
        original module must run."""
        weight = self.conv.weight
        if x.device.type != "cpu" or weight.dtype not in _PACKED_DTYPES or (
                torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)):
            return None
        if torch.is_autocast_enabled("cpu"):
            return x.to(weight.dtype) if torch.get_autocast_dtype("cpu") == weight.dtype else None
        return x if x.dtype == weight.dtype else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution (and ReLU) of ``x``."""
        packed_input = self._input(x)
        if packed_input is None:
            out = self.conv(x)
            return torch.relu(out) if self.relu else out
        if self._packed is None or self._packed.dtype != self.conv.weight.dtype:  # packed again after a cast
            self._packed = self._pack(packed_input)
        if packed_input.dtype == torch.bfloat16 and not self._kernel_sound(packed_input):
            return self._in_float32(packed_input)
        return self._packed_forward(packed_input)

    def _packed_forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, attr, geometry = self.conv, self._attr, self._geometry
        bias = None if conv.bias is None else conv.bias.detach()
        if conv.transposed:
            return torch.ops.mkldnn._convolution_transpose_pointwise(
                x, self._packed, bias, geometry[0], list(conv.output_padding), *geometry[1:], conv.groups, attr, [], "")
        return torch.ops.mkldnn._convolution_pointwise(x, self._packed, bias, *geometry, conv.groups, attr, [], "")

    def _kernel_sound(self, x: torch.Tensor) -> bool:
        """Whether oneDNN's bf16 kernel for inputs shaped like ``x`` computes this convolution. Some do not: with
        torch 2.13's oneDNN on AMX CPUs, strided convolutions whose output is one voxel wide along the last axis (a
        96×96×32 window's bottleneck: 6×6×2 → 3×3×1) return garbage or NaN, depending on what memory held before,
        so a single check can pass by chance: those shapes are never trusted. Any other kernel is checked once per
        process against the same products summed in float32 (about 1 s for a whole UNet-ResNet34:
        benchmarks/cpu_inference.py); one that disagrees is not used for that shape."""
        key = (self._signature, tuple(x.shape))
        if key not in _KERNEL_VERDICTS:
            _KERNEL_VERDICTS[key] = not _faulty_on_amx(self.conv, key[1]) and self._agrees_in_float32(x)
        return _KERNEL_VERDICTS[key]

    def _agrees_in_float32(self, x: torch.Tensor) -> bool:
        expected = self._in_float32(x).float()
        error = (self._packed_forward(x).float() - expected).abs().max()
        return bool(error <= _BF16_TOLERANCE * expected.abs().max() + _BF16_TOLERANCE)

    def _in_float32(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution of bf16 ``x`` with the bf16 weights, summed in float32 and rounded to bf16."""
        conv = self.conv
        bias = None if conv.bias is None else conv.bias.detach().float()
        with torch.autocast("cpu", enabled=False):
            out = torch.convolution(x.float(), conv.weight.detach().float(), bias, conv.stride, conv.padding,
                                    conv.dilation, conv.transposed, conv.output_padding, conv.groups)
        return (torch.relu(out) if self.relu else out).to(x.dtype)

    def _pack(self, x: torch.Tensor) -> torch.Tensor:
        """The weights in oneDNN's blocked layout for inputs like ``x``."""
        conv, geometry = self.conv, self._geometry
        if conv.transposed:
            return torch.ops.mkldnn._reorder_convolution_transpose_weight(
                conv.weight.detach(), geometry[0], list(conv.output_padding), *geometry[1:], conv.groups,
                list(x.shape))
        reorder = getattr(torch._C._nn, _REORDER[x.ndim - 2])
        return reorder(conv.weight.detach().to_mkldnn(), *geometry, conv.groups, list(x.shape))


def _faulty_on_amx(conv: _ConvNd, shape: tuple[int, ...]) -> bool:
    """Whether ``conv`` on inputs of ``shape`` is a strided convolution whose output is one voxel wide along the
    last axis and wider along another: the geometry oneDNN's AMX bf16 kernels get wrong (docs/PREDICTION.md)."""
    if conv.transposed or all(s == 1 for s in conv.stride):
        return False
    out = [(size + 2 * p - d * (k - 1) - 1) // s + 1 for size, p, d, k, s in zip(
        shape[2:], conv.padding, conv.dilation, conv.kernel_size, conv.stride, strict=True)]
    return out[-1] == 1 and any(size > 1 for size in out[:-1])


def faulty_bf16_convolutions(model: nn.Module, input_shape: tuple[int, ...]) -> list[str]:
    """Names (with their input and output sizes) of ``model``'s convolutions that, for inputs of ``input_shape``
    ``(B, C, *spatial)``, have the geometry oneDNN's AMX bf16 kernels compute wrongly; found with one float32 pass
    over zeros. For refusing bf16 autocast where segkit cannot guard the kernels (training)."""
    found: list[str] = []

    def record(name: str) -> Callable:
        def hook(module: _ConvNd, inputs: tuple[torch.Tensor, ...]) -> None:
            shape = tuple(inputs[0].shape)
            if _faulty_on_amx(module, shape):
                found.append(f"{name} ({'×'.join(map(str, shape[2:]))} → stride {module.stride[0]})")
        return hook

    handles = [m.register_forward_pre_hook(record(name)) for name, m in model.named_modules()
               if isinstance(m, _ConvNd)]
    try:
        weight = next(model.parameters())
        with torch.no_grad(), torch.autocast(weight.device.type, enabled=False):
            model(torch.zeros(input_shape, device=weight.device))
    finally:
        for handle in handles:
            handle.remove()
    return found


def _packable(module: nn.Module) -> bool:
    """A zero-padded 2D/3D convolution or transposed convolution (called without ``output_size``, as segkit's
    upsampling does)."""
    return (isinstance(module, _ConvNd) and module.padding_mode == "zeros" and not isinstance(module.padding, str)
            and module.weight.ndim - 2 in _REORDER)


def pack_convolutions(model: nn.Module, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Replace every packable convolution of ``model`` (in eval mode, on the CPU) by a :class:`PackedConv`, in
    place, fusing ``conv → Identity → ReLU`` runs of an ``nn.Sequential`` (a ``ConvNormAct`` whose batch norm was
    folded). ``dtype=torch.bfloat16`` casts the convolutions' weights (only theirs: norms keep float32 parameters,
    as under autocast) for a model called under bf16 autocast. Returns ``model``; packing again changes nothing; a
    no-op where :func:`packing_available` is False. For inference only."""
    if model.training:
        raise ValueError("pack_convolutions needs a model in eval mode")
    if dtype not in _PACKED_DTYPES:
        raise ValueError(f"pack_convolutions packs float32 or bfloat16 weights, not {dtype}")
    if not packing_available():
        return model
    for sequence in plain_sequentials(model):
        _fuse_relus(sequence)
    # a PackedConv is returned as it is: packing twice changes nothing
    replace_modules(model, lambda child: child if isinstance(child, PackedConv)
                    else PackedConv(child) if _packable(child) else None)
    for module in model.modules():
        if isinstance(module, PackedConv):
            module.conv.to(dtype)
    return model


def _fuse_relus(sequence: nn.Sequential) -> None:
    """In ``sequence``, conv → Identity → ReLU becomes PackedConv(relu) → Identity → Identity."""
    names = list(sequence._modules)
    for i in range(len(names) - 2):
        conv, between, act = (sequence._modules[n] for n in names[i:i + 3])
        if _packable(conv) and isinstance(between, nn.Identity) and type(act) is nn.ReLU:
            sequence._modules[names[i]] = PackedConv(conv, relu=True)
            sequence._modules[names[i + 2]] = nn.Identity()
