"""Every registered encoder: declared feature_info matches real outputs; published parameter counts."""

from __future__ import annotations

import pytest
import torch

from segkit.models.encoders.base import EncoderArgs
from segkit.registry import ENCODERS
from tests.models.shared import encoder_and_features

# torchvision ImageNet models without the classifier (fc): encoder-only parameter counts
PUBLISHED = {
    "resnet18": 11_176_512, "resnet34": 21_284_672, "resnet50": 23_508_032, "resnet101": 42_500_160,
    "resnet152": 58_143_808, "resnext50_32x4d": 22_979_904, "resnext101_32x8d": 86_742_336,
    "wide_resnet50_2": 66_834_240, "wide_resnet101_2": 124_837_696,
}
RGB_2D = EncoderArgs(spatial_dims=2, in_channels=3, norm="batch")


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_2d_rgb_parameter_count_equals_torchvision(name: str) -> None:
    with torch.device("meta"):
        encoder = ENCODERS.get(name)(RGB_2D)
    assert sum(p.numel() for p in encoder.parameters()) == PUBLISHED[name]


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", ENCODERS.names())
def test_feature_info_matches_outputs(name: str, dims: int) -> None:
    encoder, x, features = encoder_and_features(name, dims)
    size = x.shape[2:]
    assert len(features) == len(encoder.feature_info)
    for feature, info in zip(features, encoder.feature_info, strict=True):
        assert feature.shape[1] == info.channels
        assert feature.shape[2:] == tuple(s // r for s, r in zip(size, info.reduction, strict=True))
    reductions = [max(f.reduction) for f in encoder.feature_info]
    assert reductions == sorted(reductions)  # highest resolution first


def test_torchvision_parameter_names() -> None:
    names = set(ENCODERS.get("resnet50")(RGB_2D).state_dict())
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.downsample.0.weight", "layer4.2.conv3.weight",
                "layer4.2.bn3.bias"):
        assert key in names


def test_resnext_uses_grouped_convolutions_and_wide_resnet_doubles_width() -> None:
    resnext = ENCODERS.get("resnext50_32x4d")(RGB_2D)
    wide = ENCODERS.get("wide_resnet50_2")(RGB_2D)
    assert resnext.layer1[0].conv2.groups == 32 and resnext.layer1[0].conv2.in_channels == 128
    assert wide.layer1[0].conv2.in_channels == 128 and wide.layer1[0].conv2.groups == 1
