"""oneDNN-prepacked CPU convolutions: the same outputs as the eager model, on any input size and layout."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from segkit.config import ModelCfg
from segkit.models import build_model, packed_conv
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


def _bf16_reference(conv: nn.Module, x: torch.Tensor, relu: bool) -> torch.Tensor:
    """``conv`` on bf16-rounded input and weights, in float64."""
    bias = None if conv.bias is None else conv.bias.double()
    out = torch.convolution(x.bfloat16().double(), conv.weight.bfloat16().double(), bias, conv.stride, conv.padding,
                            conv.dilation, conv.transposed, conv.output_padding, conv.groups)
    return torch.relu(out) if relu else out


@pytest.mark.parametrize(("dims", "shape"), [(3, (6, 6, 2)), (3, (12, 12, 2)), (3, (9, 8, 7)), (2, (12, 2)),
                                             (2, (10, 9))])
def test_bf16_packed_convolutions_compute_the_bf16_products_on_every_shape(dims: int, shape: tuple) -> None:
    """Among these shapes are ones whose stride-2 output is one voxel wide along the last axis, where torch 2.13's
    oneDNN AMX kernels return garbage: the packed convolution must still be right there."""
    torch.manual_seed(4)
    conv_type, transposed = (nn.Conv2d, nn.ConvTranspose2d) if dims == 2 else (nn.Conv3d, nn.ConvTranspose3d)
    model = nn.Sequential(conv_type(32, 48, 3, stride=2, padding=1), nn.Identity(), nn.ReLU(),
                          transposed(48, 16, 2, stride=2)).eval()
    reference = copy.deepcopy(model)
    pack_convolutions(model, torch.bfloat16)
    assert model[0].relu and model[0].conv.weight.dtype == torch.bfloat16
    x = torch.randn(2, 32, *shape)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16 and model[0]._packed is not None
    middle = _bf16_reference(reference[0], x, relu=True).bfloat16()
    expected = _bf16_reference(reference[3], middle, relu=False)
    assert torch.isfinite(out).all()
    assert (out.double() - expected).abs().max() <= 0.02 * expected.abs().max()
    one_voxel_wide = shape[-1] <= 2
    verdict = packed_conv._KERNEL_VERDICTS[(model[0]._signature, (2, 32, *shape))]
    assert verdict is not one_voxel_wide  # never trusted there: the fault is intermittent


def test_a_faulty_bf16_kernel_is_detected_and_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(5)
    conv = nn.Conv3d(8, 8, 3, padding=1).eval()
    packed = pack_convolutions(nn.Sequential(copy.deepcopy(conv)).eval(), torch.bfloat16)[0]
    good, bad = torch.randn(1, 8, 6, 6, 6), torch.randn(1, 8, 5, 5, 5)
    real_kernel = PackedConv._packed_forward

    def kernel_wrong_for_odd_sizes(self: PackedConv, x: torch.Tensor) -> torch.Tensor:
        out = real_kernel(self, x)
        return out.fill_(float("nan")) if x.shape[-1] % 2 else out

    monkeypatch.setattr(PackedConv, "_packed_forward", kernel_wrong_for_odd_sizes)
    monkeypatch.setattr(packed_conv, "_KERNEL_VERDICTS", {})  # no verdict from an earlier test
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for x in (good, bad, bad):
            out = packed(x)
            assert (out.double() - _bf16_reference(conv, x, relu=False)).abs().max() <= 0.02 * out.abs().max()
    signature = packed._signature
    verdicts = packed_conv._KERNEL_VERDICTS
    assert verdicts == {(signature, (1, 8, 6, 6, 6)): True, (signature, (1, 8, 5, 5, 5)): False}
    twin = pack_convolutions(nn.Sequential(copy.deepcopy(conv)).eval(), torch.bfloat16)[0]
    checks = []
    monkeypatch.setattr(PackedConv, "_agrees_in_float32", lambda self, x: checks.append(x.shape) or True)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = twin(bad)
    assert checks == [] and torch.isfinite(out).all()  # the verdict is the process's: not checked again
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        pack_convolutions(nn.Sequential(nn.Conv2d(1, 1, 3)).eval(), torch.float16)
