"""Folding batch norm into the convolution before it, for inference.

In eval mode a batch norm is a fixed per-channel affine map, so ``bn(conv(x))`` equals one convolution with
rescaled weights and a bias (PyTorch's ``fuse_conv_bn_eval``). That removes one pass over every activation
map of the network. Pairs are found where segkit's models create them: consecutive ``ConvNd``, ``BatchNormNd``
children of an ``nn.Sequential`` (decoder blocks, ResNet downsampling) and ``convN``/``bnN`` attributes of a
module (ResNet stems and blocks, where ``bnN`` is applied right after ``convN``). DenseNet's norms come before
their convolutions and are left alone. The result is checked against the unfolded model in the tests.
"""

from __future__ import annotations

import itertools
import re

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils.fusion import fuse_conv_bn_eval

_NUMBERED_CONV = re.compile(r"conv(\d+)")


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """Fold every conv → batch-norm pair of ``model`` (in eval mode) into the conv, in place; the folded norm
    becomes ``nn.Identity``. Returns ``model``. Only for inference: the folded model cannot be trained."""
    if model.training:
        raise ValueError("fold_batch_norm needs a model in eval mode (running statistics are folded in)")
    for module in list(model.modules()):
        for conv_name, norm_name in _pairs(module):
            conv, norm = getattr(module, conv_name), getattr(module, norm_name)
            setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
            setattr(module, norm_name, nn.Identity())
    return model


def _pairs(module: nn.Module) -> list[tuple[str, str]]:
    """(conv child name, batch-norm child name) pairs of ``module`` that can be folded."""
    children = dict(module.named_children())
    if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:  # children in order
        candidates = list(itertools.pairwise(children))
    else:
        candidates = [(name, f"bn{match.group(1)}") for name in children
                      if (match := _NUMBERED_CONV.fullmatch(name)) and f"bn{match.group(1)}" in children]
    return [(c, n) for c, n in candidates if _foldable(children[c], children[n])]


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return (isinstance(conv, _ConvNd) and not conv.transposed and isinstance(norm, _BatchNorm)
            and norm.track_running_stats and norm.running_mean is not None
            and conv.out_channels == norm.num_features)
