"""Folding batch norm into convolutions for inference: same outputs, no batch norm left where one can fold."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segkit.config import ModelCfg
from segkit.models import build_model
from segkit.models.fold_norm import fold_batch_norm

CASES = [("resnet18", 3, "transposed"), ("resnext50_32x4d", 2, "pixelshuffle"),
         ("densenet121", 2, "linear")]


def _with_running_stats(model: nn.Module) -> nn.Module:
    """Random running statistics and affine parameters, so that a wrong fold changes the output."""
    generator = torch.Generator().manual_seed(5)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


@pytest.mark.parametrize(("encoder", "dims", "upsample"), CASES)
def test_folded_model_gives_the_same_output(encoder: str, dims: int, upsample: str) -> None:
    torch.manual_seed(0)
    cfg = ModelCfg(encoder=encoder, spatial_dims=dims, norm="batch", upsample=upsample, num_classes=3,
                   decoder_channels=(32, 16, 16, 8, 8))
    model = _with_running_stats(build_model(cfg))
    x = torch.randn(1, 1, *([32] * dims))
    with torch.no_grad():
        expected = model(x)
        norms_before = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        folded = fold_batch_norm(model)(x)
    norms_after = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert torch.allclose(folded, expected, atol=1e-4 * expected.abs().max().item())
    assert norms_after < norms_before
    if encoder.startswith("res"):  # every ResNet/ResNeXt norm follows a conv: none is left
        assert norms_after == 0


def test_instance_norm_and_training_mode_are_left_alone() -> None:
    cfg = ModelCfg(encoder="resnet18", spatial_dims=2, norm="instance", num_classes=2)
    model = build_model(cfg).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fold_batch_norm(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norm(build_model(cfg.model_copy(update={"norm": "batch"})).train())


def test_a_sequential_that_reorders_its_children_is_not_folded() -> None:
    class Reordered(nn.Sequential):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self[0](self[1](x))  # norm first, then conv

    model = _with_running_stats(Reordered(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)))
    x = torch.randn(1, 4, 8, 8)
    expected = model(x)
    assert torch.allclose(fold_batch_norm(model)(x), expected, atol=1e-6)
    assert isinstance(model[1], nn.BatchNorm2d)
