"""Upsampling modes: output sizes (odd inputs, anisotropic scales) and ICNR initialisation."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from segkit.registry import UPSAMPLERS

CASES = [  # (spatial_dims, input spatial size, scale)
    (2, (7, 9), 2),
    (3, (5, 7, 3), 2),
    (3, (5, 7, 3), (2, 2, 1)),
]


@pytest.mark.parametrize("mode", UPSAMPLERS.names())
@pytest.mark.parametrize(("dims", "size", "scale"), CASES)
def test_output_size_is_input_times_scale(mode: str, dims: int, size: tuple, scale) -> None:
    up = UPSAMPLERS.get(mode)(dims, 6, 4, scale)
    factors = scale if isinstance(scale, tuple) else (scale,) * dims
    out = up(torch.randn(2, 6, *size))
    assert out.shape == (2, 4, *(s * f for s, f in zip(size, factors, strict=True)))


@pytest.mark.parametrize(("dims", "scale"), [(2, 2), (3, 2), (3, (2, 2, 1))])
def test_pixelshuffle_with_icnr_is_nearest_upsampling_at_init(dims: int, scale) -> None:
    torch.manual_seed(0)
    up = UPSAMPLERS.get("pixelshuffle")(dims, 5, 3, scale)
    out = up(torch.randn(1, 5, *(6,) * dims))
    factors = scale if isinstance(scale, tuple) else (scale,) * dims
    subsampled = out[(..., *(slice(0, None, f) for f in factors))]
    expected = F.interpolate(subsampled, scale_factor=factors, mode="nearest")
    torch.testing.assert_close(out, expected)
    assert out.std() > 0  # not trivially zero


def test_pixelshuffle_differs_from_nearest_after_perturbation() -> None:
    up = UPSAMPLERS.get("pixelshuffle")(2, 2, 2, 2)
    with torch.no_grad():
        up.conv.weight.add_(torch.randn_like(up.conv.weight))
    out = up(torch.randn(1, 2, 4, 4))
    assert not torch.allclose(out, F.interpolate(out[..., ::2, ::2], scale_factor=2, mode="nearest"))


@pytest.mark.parametrize("dims", [2, 3])
def test_own_pixel_shuffle_matches_monai_for_one_factor(dims: int) -> None:
    from monai.networks.utils import pixelshuffle

    from segkit.models.upsample import pixel_shuffle

    x = torch.randn(2, 3 * 2**dims, *(4,) * dims)
    torch.testing.assert_close(pixel_shuffle(x, (2,) * dims), pixelshuffle(x, dims, 2))
