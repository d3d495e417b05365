"""UNet assembly over every encoder × dims × upsampling mode × fusion, odd sizes, deep supervision."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from segkit.config import ModelCfg
from segkit.errors import ConfigError
from segkit.models import build_model
from segkit.models.decoder import DecoderArgs, UNetDecoder
from segkit.models.encoders.base import EncoderArgs
from segkit.models.unet import UNet
from segkit.registry import ENCODERS, FUSIONS, UPSAMPLERS
from tests.models.shared import encoder_and_features

TINY_DECODER = (16, 8, 8, 4, 4)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", ENCODERS.names())
def test_every_encoder_in_a_unet_gives_full_size_logits_and_gradients(name: str, dims: int) -> None:
    encoder, x, _ = encoder_and_features(name, dims)
    decoder = UNetDecoder(encoder.feature_info, dims, DecoderArgs(TINY_DECODER, "transposed", "concat", "batch"))
    model = UNet(encoder, decoder, dims, num_classes=3).eval()  # eval: batch norm on 1-voxel deep features
    model.zero_grad(set_to_none=True)
    out = model(x)
    assert out.shape == (x.shape[0], 3, *x.shape[2:])
    out.square().mean().backward()
    first = next(encoder.parameters())  # reached only through every encoder layer
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("fusion", FUSIONS.names())
@pytest.mark.parametrize("upsample", UPSAMPLERS.names())
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", ENCODERS.names())
def test_every_decoder_variant_on_every_encoder_uses_every_feature(name: str, dims: int, upsample: str,
                                                                   fusion: str) -> None:
    """The decoder and head on the encoder's features (the encoder's own backward is variant-independent and
    covered above): full-size logits, and a gradient into every feature map, the deepest and each skip."""
    encoder, x, computed = encoder_and_features(name, dims)
    decoder = UNetDecoder(encoder.feature_info, dims, DecoderArgs(TINY_DECODER, upsample, fusion, "batch"))
    model = UNet(encoder, decoder, dims, num_classes=3).eval()
    features = [f.clone().requires_grad_() for f in computed]
    out = model.head(model.decoder(features)[-1])
    assert out.shape == (x.shape[0], 3, *x.shape[2:])
    out.square().mean().backward()
    for index, feature in enumerate(features):
        assert feature.grad is not None and feature.grad.abs().sum() > 0, f"feature {index} unused"


@pytest.mark.parametrize("upsample", UPSAMPLERS.names())
@pytest.mark.parametrize(("dims", "size"), [(2, (37, 45)), (3, (45, 37, 35))])
def test_odd_input_sizes_are_padded_and_cropped_back(upsample: str, dims: int, size: tuple) -> None:
    model = build_model(ModelCfg(spatial_dims=dims, encoder="resnet18", upsample=upsample, num_classes=2,
                                 decoder_channels=TINY_DECODER, norm="instance")).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, *size)).shape == (1, 2, *size)


def test_anisotropic_strides_reach_encoder_and_decoder() -> None:
    cfg = ModelCfg(spatial_dims=3, encoder="resnet18", strides=((2, 2, 1), (2, 2, 1), 2, 2, 2),
                   decoder_channels=TINY_DECODER)
    model = build_model(cfg).eval()
    assert [f.reduction for f in model.encoder.feature_info] == [(2, 2, 1), (4, 4, 1), (8, 8, 2), (16, 16, 4),
                                                                (32, 32, 8)]
    assert model.size_divisor == (32, 32, 8)
    with torch.no_grad():
        features = model.encoder(torch.randn(1, 1, 64, 64, 16))
        assert features[-1].shape[2:] == (2, 2, 2)
        assert model(torch.randn(1, 1, 64, 64, 16)).shape == (1, 4, 64, 64, 16)


def test_deep_supervision_outputs_in_training_only() -> None:
    model = build_model(ModelCfg(spatial_dims=3, encoder="resnet18", decoder_channels=TINY_DECODER,
                                 deep_supervision=True))
    outputs = model(torch.randn(2, 1, 64, 64, 32))
    assert [tuple(o.shape[2:]) for o in outputs] == [(64, 64, 32), (32, 32, 16), (16, 16, 8), (8, 8, 4), (4, 4, 2)]
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 64, 32)).shape == (1, 4, 64, 64, 32)


def test_deep_supervision_outputs_of_a_padded_input_cover_only_the_input() -> None:
    """A patch that is not a multiple of 32 is padded; each auxiliary output keeps ceil(size / reduction) voxels
    per axis, so its voxels line up with the label resized to it (the padding's would take real labels' places)."""
    model = build_model(ModelCfg(spatial_dims=3, encoder="resnet18", decoder_channels=TINY_DECODER,
                                 deep_supervision=True, strides=((2, 2, 1), 2, 2, 2, 2), norm="batch"))
    torch.manual_seed(0)
    patch = torch.randn(2, 1, 64, 40, 20)  # padded to 64×64×32 (z reduces by 16 only)
    outputs = model(patch)
    assert [tuple(o.shape[2:]) for o in outputs] == [(64, 40, 20), (32, 20, 20), (16, 10, 10), (8, 5, 5), (4, 3, 3)]
    padded = model(F.pad(patch, (0, 12, 0, 24)))  # the same content, padded by hand: crops of its outputs
    for cropped, full in zip(outputs[1:], padded[1:], strict=True):
        torch.testing.assert_close(cropped, full[(..., *(slice(0, s) for s in cropped.shape[2:]))])


@pytest.mark.parametrize(("dims", "size", "strides"), [(3, (20, 20, 20), None), (2, (28, 28), None),
                                                       (3, (33, 47, 13), (3, 2, 2, 2, 2))])
def test_an_input_within_one_stride_on_every_axis_is_predicted(dims: int, size: tuple[int, ...],
                                                               strides: tuple[int, ...] | None) -> None:
    """Padded to one stride, the deepest stage would hold one voxel, which instance norm refuses even in eval."""
    model = build_model(ModelCfg(spatial_dims=dims, encoder="resnet18", decoder_channels=TINY_DECODER,
                                 strides=strides)).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 1, *size))
    assert logits.shape == (1, 4, *size) and torch.isfinite(logits).all()


def test_a_tensor_with_the_wrong_number_of_axes_is_named() -> None:
    model = build_model(ModelCfg(spatial_dims=3, encoder="resnet18", decoder_channels=TINY_DECODER))
    with pytest.raises(ValueError, match=r"a 3D UNet takes \(batch, channels, 3 spatial axes\); got a tensor of "
                                         r"shape \(1, 64, 64, 32\)"):
        model(torch.randn(1, 64, 64, 32))


def test_deep_supervision_heads_always_exist_so_checkpoints_load() -> None:
    plain = build_model(ModelCfg(spatial_dims=2, encoder="resnet18", decoder_channels=TINY_DECODER))
    supervised = build_model(ModelCfg(spatial_dims=2, encoder="resnet18", decoder_channels=TINY_DECODER,
                                      deep_supervision=True))
    supervised.load_state_dict(plain.state_dict(), strict=True)


def test_concat_and_add_fusion_differ_in_decoder_inputs() -> None:
    concat = build_model(ModelCfg(spatial_dims=2, encoder="resnet18", fusion="concat"))
    add = build_model(ModelCfg(spatial_dims=2, encoder="resnet18", fusion="add"))
    # first decoder stage: 256 up + 256 skip channels in concat, 256 in add (skip projected)
    assert concat.decoder.stages[0].conv1[0].in_channels == 512
    assert add.decoder.stages[0].conv1[0].in_channels == 256
    assert add.decoder.stages[-1].fusion is None  # the full-resolution stage has no skip


def test_norm_and_activation_choices_are_applied() -> None:
    model = build_model(ModelCfg(spatial_dims=2, encoder="resnet18", norm="group", act="leakyrelu",
                                 decoder_channels=TINY_DECODER))
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"GroupNorm", "LeakyReLU"} <= kinds and not {"BatchNorm2d", "ReLU"} & kinds


def test_decoder_channels_must_match_encoder_stages() -> None:
    with pytest.raises(ConfigError, match=r"model.decoder_channels: encoder 'resnet34' has 5 stages"):
        build_model(ModelCfg(decoder_channels=(64, 32)))


def test_wrong_number_of_strides_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"model.strides: needs 5 strides"):
        build_model(ModelCfg(strides=(2, 2)))


def test_encoder_weights_from_config_are_loaded(tmp_path) -> None:
    from safetensors.torch import save_file

    source = ENCODERS.get("resnet18")(EncoderArgs(spatial_dims=2, in_channels=3, norm="batch"))
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.normal_()
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = build_model(ModelCfg(spatial_dims=3, encoder="resnet18", in_channels=1, norm="batch",
                                 decoder_channels=TINY_DECODER, encoder_weights=path))
    inflated = model.encoder.layer1[0].conv1.weight  # (64, 64, 3, 3, 3): the 2D kernel / 3 along depth
    torch.testing.assert_close(inflated, source.layer1[0].conv1.weight.unsqueeze(-1).expand_as(inflated) / 3)
    torch.testing.assert_close(model.encoder.conv1.weight.sum(-1), source.conv1.weight.sum(1, keepdim=True))


def test_building_for_a_checkpoint_skips_initialisation_and_pretrained_files(tmp_path) -> None:
    cfg = ModelCfg(encoder="resnet18", decoder_channels=(32, 16, 16, 8, 8),
                   encoder_weights=tmp_path / "gone.safetensors")  # a file that no longer exists
    trained = build_model(cfg.model_copy(update={"encoder_weights": None}))
    skeleton = build_model(cfg, initialise=False)
    skeleton.load_state_dict(trained.state_dict(), strict=True)
    for name, value in trained.state_dict().items():
        assert torch.equal(skeleton.state_dict()[name], value), name
    torch.manual_seed(0)
    first = build_model(cfg.model_copy(update={"encoder_weights": None})).encoder.conv1.weight.clone()
    torch.manual_seed(0)
    again = build_model(cfg.model_copy(update={"encoder_weights": None})).encoder.conv1.weight
    assert torch.equal(first, again) and first.std() > 0  # initialisation is back to normal afterwards
