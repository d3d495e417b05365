"""oneDNN-prepacked CPU convolutions: the same outputs as the eager model, on any input size and layout."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from segkit.config import ModelCfg
from segkit.models import build_model
from segkit.models.fold_norm import fold_batch_norm
from segkit.models.layers import ConvNormAct
from segkit.models.packed_conv import PackedConv, pack_convolutions, packing_available
from tests.models.test_fold_norm import _with_running_stats

pytestmark = pytest.mark.skipif(not packing_available(), reason="this torch build has no oneDNN")

CASES = [("resnet18", 3, "transposed", "batch"), ("resnext50_32x4d", 2, "pixelshuffle", "batch"),
         ("densenet121", 2, "linear", "batch"), ("resnet18", 3, "nearest", "instance")]


def _close(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    return torch.allclose(actual, expected, atol=1e-5 * expected.abs().max().item())


@pytest.mark.parametrize(("encoder", "dims", "upsample", "norm"), CASES)
def test_packed_model_matches_the_eager_model_on_several_sizes_and_layouts(
        encoder: str, dims: int, upsample: str, norm: str) -> None:
    torch.manual_seed(0)
    cfg = ModelCfg(encoder=encoder, spatial_dims=dims, norm=norm, upsample=upsample, num_classes=3,
                   decoder_channels=(32, 16, 16, 8, 8))
    model = _with_running_stats(build_model(cfg))
    packed = pack_convolutions(fold_batch_norm(copy.deepcopy(model)))
    count = sum(isinstance(m, PackedConv) for m in packed.modules())
    assert count > 0
    pack_convolutions(packed)  # a second packing (a model given to two predictors) changes nothing
    assert sum(isinstance(m, PackedConv) for m in packed.modules()) == count
    assert not any(type(m) in (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d) for m in packed.modules()
                   if not any(m is p.conv for p in packed.modules() if isinstance(p, PackedConv)))
    layout = torch.channels_last if dims == 2 else torch.channels_last_3d
    with torch.inference_mode():
        for shape in [(1, 1, *[64] * dims), (2, 1, *[32] * (dims - 1), 96)]:  # packed at the first, reused
            for memory_format in (torch.contiguous_format, layout):
                x = torch.randn(shape).contiguous(memory_format=memory_format)
                assert _close(packed(x), model(x)), (shape, memory_format)
    unpacked = [name for name, m in packed.named_modules() if isinstance(m, PackedConv) and m._packed is None]
    assert all(name.startswith("aux_heads.") for name in unpacked)  # the fast path ran (deep supervision heads idle)


def test_relu_after_a_folded_norm_is_fused_and_still_applied() -> None:
    torch.manual_seed(1)
    block = _with_running_stats(ConvNormAct(2, 4, 8, "batch"))
    x = torch.randn(2, 4, 16, 16)
    expected = block(x)
    pack_convolutions(fold_batch_norm(block))
    assert isinstance(block[0], PackedConv) and block[0].relu
    assert isinstance(block[2], nn.Identity)
    with torch.no_grad():
        out = block(x)
    assert (out >= 0).all() and _close(out, expected)


def test_unpacked_paths_training_autocast_and_gradients() -> None:
    torch.manual_seed(2)
    conv = nn.Conv3d(2, 4, 3, padding=1).eval()
    packed = PackedConv(copy.deepcopy(conv), relu=True)
    x = torch.randn(1, 2, 8, 8, 8, requires_grad=True)
    out = packed(x)  # gradients wanted: the eager module runs, and backward works
    out.sum().backward()
    assert packed._packed is None and x.grad is not None
    assert _close(out.detach(), torch.relu(conv(x)).detach())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert packed(x).dtype == torch.bfloat16
    assert packed._packed is None
    with pytest.raises(ValueError, match="eval mode"):
        pack_convolutions(nn.Sequential(nn.Conv2d(1, 1, 3)).train())


@pytest.mark.parametrize("dims", [2, 3])
def test_transposed_convolutions_with_padding_and_groups_match(dims: int) -> None:
    torch.manual_seed(3)
    transposed = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
    model = nn.Sequential(transposed(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
                          transposed(6, 2, 2, stride=2, bias=False)).eval()
    packed = pack_convolutions(copy.deepcopy(model))
    assert all(isinstance(m, PackedConv) for m in packed)
    with torch.inference_mode():
        for size in (6, 9):
            x = torch.randn(2, 4, *[size] * dims)
            assert _close(packed(x), model(x))


def test_other_padding_modes_and_string_padding_are_left_alone() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"),
                          nn.Conv2d(2, 2, 3, padding="same")).eval()
    pack_convolutions(model)
    assert not any(isinstance(m, PackedConv) for m in model.modules())
