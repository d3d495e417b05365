"""Stride-2 stems computed over input phases: the same convolution (values and gradients), only on CUDA tensors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from segkit.config import ModelCfg
from segkit.models import build_model
from segkit.models.packed_conv import PackedConv, pack_convolutions
from segkit.models.space_to_depth import (
    PhaseConvolution,
    SpaceToDepthConv3d,
    space_to_depth_convolution,
    use_phase_convolutions,
    use_space_to_depth_stems,
)

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
CASES = [  # dims, in channels, kernel, padding, input size
    (3, 1, 7, 3, (20, 20, 20)), (3, 1, 7, 3, (21, 18, 17)), (3, 1, 3, 1, (9, 10, 11)), (2, 2, 7, 3, (33, 30)),
    (3, 2, 5, 2, (16, 15, 14)), (3, 1, 4, 1, (16, 16, 16)), (3, 1, 7, 0, (20, 19, 18)),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("dims", "channels", "kernel", "padding", "size"), CASES)
def test_equals_the_strided_convolution(device: str, dims: int, channels: int, kernel: int, padding: int,
                                        size: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    conv = (nn.Conv3d if dims == 3 else nn.Conv2d)(channels, 6, kernel, stride=2, padding=padding, bias=True)
    conv = conv.double().to(device)
    x = torch.randn(2, channels, *size, dtype=torch.float64, device=device, requires_grad=True)
    expected = conv(x)
    out = space_to_depth_convolution(conv, x)
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-12)
    grads = torch.autograd.grad(out.square().sum(), (x, conv.weight, conv.bias))
    expected_grads = torch.autograd.grad(expected.square().sum(), (x, conv.weight, conv.bias))
    assert all(torch.allclose(g, e, atol=1e-10) for g, e in zip(grads, expected_grads, strict=True))


def test_channels_last_input_gives_channels_last_output() -> None:
    conv = nn.Conv3d(1, 8, 7, stride=2, padding=3)
    x = torch.randn(1, 1, 16, 16, 16).contiguous(memory_format=torch.channels_last_3d)
    assert space_to_depth_convolution(conv, x).is_contiguous(memory_format=torch.channels_last_3d)


@pytest.mark.parametrize("device", DEVICES)
def test_swap_keeps_parameters_names_and_outputs(device: str) -> None:
    torch.manual_seed(1)
    cfg = ModelCfg(encoder="resnet18", spatial_dims=3, in_channels=1, num_classes=2, norm="batch",
                   decoder_channels=(64, 32, 16, 8, 8))
    model = build_model(cfg).to(device).eval()
    swapped = copy.deepcopy(model)
    names = list(swapped.state_dict())
    use_space_to_depth_stems(swapped)
    twins = [m for m in swapped.modules() if isinstance(m, SpaceToDepthConv3d)]
    assert len(twins) == 1  # the stem: the only stride-2 convolution on one channel
    assert list(swapped.state_dict()) == names
    x = torch.randn(1, 1, 32, 32, 32, device=device)
    with torch.no_grad():
        assert torch.allclose(swapped(x), model(x), atol=1e-5)


def test_other_convolutions_are_left_alone() -> None:
    model = nn.Sequential(nn.Conv3d(1, 8, 3, stride=1, padding=1), nn.Conv3d(8, 8, 3, stride=2, padding=1),
                          nn.Conv2d(1, 8, 7, stride=2, padding=3), nn.Conv3d(1, 8, 3, stride=2, groups=1,
                                                                                  padding_mode="reflect", padding=1))
    use_space_to_depth_stems(model)
    assert [type(m) for m in model] == [nn.Conv3d, nn.Conv3d, nn.Conv2d, nn.Conv3d]


@pytest.mark.parametrize(("dims", "channels", "kernel", "padding", "size"), CASES)
def test_phase_convolution_equals_the_strided_convolution(dims: int, channels: int, kernel: int, padding: int,
                                                          size: tuple[int, ...]) -> None:
    torch.manual_seed(2)
    conv = (nn.Conv3d if dims == 3 else nn.Conv2d)(channels, 6, kernel, stride=2, padding=padding, bias=True)
    conv = conv.double().eval()
    x = torch.randn(2, channels, *size, dtype=torch.float64)
    phase = PhaseConvolution(conv)
    assert phase.inner.stride == (1,) * dims and phase.inner.in_channels == channels * 2**dims
    with torch.no_grad():
        out, expected = phase(x), conv(x)
    assert out.shape == expected.shape and torch.allclose(out, expected, atol=1e-12)


def test_bf16_model_with_a_packed_phase_stem_matches_the_bf16_products() -> None:
    torch.manual_seed(3)
    cfg = ModelCfg(encoder="resnet18", spatial_dims=3, in_channels=1, num_classes=2, norm="batch",
                   decoder_channels=(64, 32, 16, 8, 8))
    model = build_model(cfg).eval()
    prepared = pack_convolutions(use_phase_convolutions(copy.deepcopy(model)), torch.bfloat16)
    phases = [m for m in prepared.modules() if isinstance(m, PhaseConvolution)]
    assert len(phases) == 1 and isinstance(phases[0].inner, PackedConv)  # the stem, then packed like the rest
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out, expected = prepared(x).float(), model(x).float()  # eager autocast: the same bf16 products
    assert (out - expected).abs().max() <= 0.03 * expected.abs().max()
