"""DenseNet-BC encoders: published parameter counts, torchvision names, feature_info vs real outputs."""

from __future__ import annotations

import pytest
import torch

from segkit.models.encoders.base import EncoderArgs
from segkit.models.encoders.densenet import DenseNetEncoder
from segkit.registry import ENCODERS

# torchvision ImageNet models without the classifier; densenet264 from the same recipe (no torchvision model)
PUBLISHED = {"densenet121": 6_953_856, "densenet169": 12_484_480, "densenet201": 18_092_928,
             "densenet264": 30_648_704}
ANISOTROPIC = ((2, 2, 1), (2, 2, 1), 2, 2, 2)


def build(name: str, **kwargs) -> DenseNetEncoder:
    torch.manual_seed(0)
    return ENCODERS.get(name)(EncoderArgs(**kwargs))


def check_outputs(encoder: DenseNetEncoder, size: tuple[int, ...], channels: int) -> list[torch.Tensor]:
    """Run ``encoder`` on a random input; assert every output matches its feature_info entry."""
    with torch.no_grad():
        features = encoder.eval()(torch.randn(1, channels, *size))
    assert len(features) == len(encoder.feature_info) == 5
    for feature, info in zip(features, encoder.feature_info, strict=True):
        assert feature.shape == (1, info.channels, *(s // r for s, r in zip(size, info.reduction, strict=True)))
    return features


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_2d_rgb_parameter_count_equals_published(name: str) -> None:
    with torch.device("meta"):
        encoder = ENCODERS.get(name)(EncoderArgs(spatial_dims=2, in_channels=3, norm="batch"))
    assert sum(p.numel() for p in encoder.parameters()) == PUBLISHED[name]


def test_torchvision_parameter_names() -> None:
    with torch.device("meta"):
        names = set(ENCODERS.get("densenet121")(EncoderArgs(spatial_dims=2, in_channels=3)).state_dict())
    for key in ("features.conv0.weight", "features.norm0.running_var", "features.denseblock1.denselayer1.conv1.weight",
                "features.denseblock1.denselayer6.norm2.bias", "features.denseblock4.denselayer16.conv2.weight",
                "features.transition1.norm.weight", "features.transition1.conv.weight",
                "features.transition3.conv.weight", "features.norm5.weight", "features.norm5.running_mean"):
        assert key in names
    assert not any(key.startswith("classifier") for key in names)


def test_2d_features_match_feature_info() -> None:
    """Blocks 1–3 skip inside the transition after norm + act (non-negative with ReLU), before its 1×1 conv."""
    encoder = build("densenet121", spatial_dims=2, in_channels=2)
    features = check_outputs(encoder, (64, 64), 2)
    assert encoder.out_channels == [64, 256, 512, 1024, 1024]
    assert [info.reduction for info in encoder.feature_info] == [(2, 2), (4, 4), (8, 8), (16, 16), (32, 32)]
    assert all((f >= 0).all() for f in features)
    assert encoder.features.transition1.conv.in_channels == 256
    assert encoder.features.transition1.conv.out_channels == 128


def test_3d_features_match_feature_info() -> None:
    encoder = build("densenet121", spatial_dims=3, in_channels=1, norm="batch")
    check_outputs(encoder, (32, 32, 32), 1)
    assert encoder.total_reduction == (32, 32, 32)


def test_3d_anisotropic_strides() -> None:
    encoder = build("densenet121", spatial_dims=3, in_channels=1, strides=ANISOTROPIC)
    features = check_outputs(encoder, (64, 64, 32), 1)
    expected = [(2, 2, 1), (4, 4, 1), (8, 8, 2), (16, 16, 4), (32, 32, 8)]
    assert [info.reduction for info in encoder.feature_info] == expected
    assert [f.shape[2:] for f in features] == [(32, 32, 32), (16, 16, 32), (8, 8, 16), (4, 4, 8), (2, 2, 4)]


@pytest.mark.parametrize("norm", ["instance", "group"])
def test_other_norms_and_activation_run(norm: str) -> None:
    encoder = build("densenet121", spatial_dims=2, in_channels=1, norm=norm, act="leakyrelu")
    features = check_outputs(encoder, (64, 64), 1)
    assert all(torch.isfinite(f).all() for f in features)
    assert not any("running" in key for key in encoder.state_dict())
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in encoder.modules())


def test_wrong_stride_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="needs 5 strides"):
        build("densenet121", spatial_dims=2, strides=(2, 2, 2, 2))
