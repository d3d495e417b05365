"""Encoders built once per (name, dims) for the tests that run every encoder, with their features on one input."""

from __future__ import annotations

from functools import cache

import torch

from segkit.models.encoders.base import Encoder, EncoderArgs
from segkit.registry import ENCODERS

INPUT = {2: (2, 2, 64, 64), 3: (1, 2, 32, 32, 32)}  # batch, channels, spatial


@cache
def encoder_and_features(name: str, dims: int) -> tuple[Encoder, torch.Tensor, tuple[torch.Tensor, ...]]:
    """A seeded batch-norm encoder in eval mode (2 input channels), a seeded input of ``INPUT[dims]`` and the
    encoder's features on it, computed without gradients.

    Only the first layer's weight keeps ``requires_grad``: gradients through the whole encoder must still flow
    back to reach it, but no other weight gradient is computed (the encoders are large; this keeps the suite
    fast). Callers must not change the encoder's weights.
    """
    torch.manual_seed(0)
    encoder = ENCODERS.get(name)(EncoderArgs(spatial_dims=dims, in_channels=2, norm="batch")).eval()
    for index, parameter in enumerate(encoder.parameters()):
        parameter.requires_grad_(index == 0)
    x = torch.randn(*INPUT[dims])
    with torch.no_grad():
        features = tuple(encoder(x))
    return encoder, x, features
