"""UNet = encoder (from the registry) + decoder + 1×1 segmentation head."""

from __future__ import annotations

import torch
from torch import nn

from segkit.config import ModelCfg
from segkit.errors import ConfigError
from segkit.models.decoder import UNetDecoder
from segkit.models.encoders.base import Encoder
from segkit.models.layers import conv
from segkit.registry import ENCODERS


class UNet(nn.Module):
    """A UNet whose encoder is any registered encoder; outputs logits at input resolution."""

    def __init__(self, encoder: Encoder, decoder: UNetDecoder, spatial_dims: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.head = conv(spatial_dims, decoder.out_channels, num_classes, 1, bias=True)

    @property
    def size_divisor(self) -> int:
        """Each spatial input size must be a multiple of this."""
        return self.encoder.max_reduction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x)))


def build_model(cfg: ModelCfg) -> UNet:
    """Build the UNet described by ``cfg`` (names resolve through the registries)."""
    encoder = ENCODERS.get(cfg.encoder)(cfg.spatial_dims, cfg.in_channels, cfg.norm)
    stages = len(encoder.feature_info)
    if len(cfg.decoder_channels) != stages:
        raise ConfigError(
            f"model.decoder_channels: encoder '{cfg.encoder}' has {stages} stages, so give {stages} "
            f"values (got {len(cfg.decoder_channels)})"
        )
    decoder = UNetDecoder(encoder.feature_info, cfg.decoder_channels, cfg.spatial_dims,
                          cfg.upsample, cfg.fusion, cfg.norm)
    return UNet(encoder, decoder, cfg.spatial_dims, cfg.num_classes)
