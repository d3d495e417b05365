"""UNet assembly: output shapes per upsampling mode × fusion × dims, and decoder bookkeeping."""

from __future__ import annotations

import pytest
import torch

from segkit.config import ModelCfg
from segkit.errors import ConfigError
from segkit.models import build_model

SHAPES = [  # (spatial_dims, input spatial shape)
    (2, (64, 96)),
    (3, (32, 64, 32)),
]


@pytest.mark.parametrize("upsample", ["transposed", "nearest", "linear", "pixelshuffle"])
@pytest.mark.parametrize("fusion", ["concat", "add"])
@pytest.mark.parametrize(("dims", "spatial"), SHAPES)
def test_output_has_input_size_and_class_channels(upsample: str, fusion: str, dims: int, spatial: tuple) -> None:
    model = build_model(ModelCfg(spatial_dims=dims, encoder="resnet18", upsample=upsample, fusion=fusion,
                                 in_channels=2, num_classes=3, decoder_channels=(32, 16, 16, 8, 8)))
    out = model(torch.randn(2, 2, *spatial))
    assert out.shape == (2, 3, *spatial)
    assert torch.isfinite(out).all()


def test_resnet34_unet_3d_default_recipe_shape() -> None:
    model = build_model(ModelCfg(spatial_dims=3, encoder="resnet34", num_classes=4))
    assert model.size_divisor == 32
    out = model(torch.randn(1, 1, 32, 32, 64))
    assert out.shape == (1, 4, 32, 32, 64)


def test_concat_and_add_fusion_differ_in_decoder_inputs() -> None:
    concat = build_model(ModelCfg(spatial_dims=2, encoder="resnet18", fusion="concat"))
    add = build_model(ModelCfg(spatial_dims=2, encoder="resnet18", fusion="add"))
    # first decoder stage: 256 up + 256 skip channels in concat, 256 in add (skip projected)
    assert concat.decoder.stages[0].conv1[0].in_channels == 512
    assert add.decoder.stages[0].conv1[0].in_channels == 256
    assert add.decoder.stages[-1].fusion is None  # the full-resolution stage has no skip


def test_decoder_channels_must_match_encoder_stages() -> None:
    with pytest.raises(ConfigError, match=r"model.decoder_channels: encoder 'resnet34' has 5 stages"):
        build_model(ModelCfg(decoder_channels=(64, 32)))


def test_gradients_reach_the_first_encoder_layer() -> None:
    model = build_model(ModelCfg(spatial_dims=3, encoder="resnet18", decoder_channels=(16, 16, 8, 8, 8)))
    model(torch.randn(1, 1, 64, 64, 32)).square().mean().backward()
    assert model.encoder.conv1.weight.grad is not None
    assert model.encoder.conv1.weight.grad.abs().sum() > 0
