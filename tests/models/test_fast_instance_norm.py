"""Channels-last instance norm (Triton): equal to ``F.instance_norm`` (+ReLU), compiled on a GPU when there is one,
else in Triton's interpreter on the CPU (a child process: Triton reads TRITON_INTERPRET when first imported);
the swap keeps every model's output."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segkit.config import ModelCfg
from segkit.models import build_model
from segkit.models.fast_instance_norm import ChannelsLastInstanceNorm, use_channels_last_instance_norm
from segkit.models.layers import ConvNormAct
from segkit.runtime import channels_last_format, triton_available

pytestmark = pytest.mark.skipif(not triton_available(), reason="Triton is not installed (dev extra on Linux x86-64)")
SHAPES = [(2, 16, 5, 6, 7), (1, 3, 9, 4), (2, 200, 3, 4, 5), (3, 8, 33, 2, 3)]
REPO = Path(__file__).resolve().parents[2]


def _norm(channels: int, dims: int, affine: bool) -> nn.Module:
    norm = (nn.InstanceNorm3d if dims == 3 else nn.InstanceNorm2d)(channels, affine=affine)
    if affine:
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-1.0, 1.0)
    return norm


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=channels_last_format(x.ndim - 2))


def check_matches_instance_norm(device: str) -> None:
    """Every shape (2D/3D, odd sizes, several channel blocks, no affine), with and without the fused ReLU."""
    for shape in SHAPES:
        for relu in (False, True):
            torch.manual_seed(0)
            norm = _norm(shape[1], len(shape) - 2, affine=shape[1] != 3).to(device)
            # a mean far from 0 next to a small spread: the shifted sums must not cancel the variance away
            x = _channels_last(torch.randn(shape, device=device) * 0.5 + 40.0)
            fast = ChannelsLastInstanceNorm(norm, relu=relu, interpret=device == "cpu")
            with torch.no_grad():
                out, expected = fast(x), norm(x)
            expected = expected.relu() if relu else expected
            assert out.is_contiguous(memory_format=channels_last_format(len(shape) - 2)), shape
            assert torch.allclose(out, expected, atol=2e-4, rtol=1e-4), (shape, relu, (out - expected).abs().max())


def check_bfloat16(device: str) -> None:
    """bf16 in, bf16 out, within bf16 rounding of the float32 result."""
    torch.manual_seed(1)
    norm = _norm(32, 3, affine=True).to(device)
    x = _channels_last(torch.randn(2, 32, 6, 5, 4, device=device) * 3 + 1).bfloat16()
    with torch.no_grad():
        out = ChannelsLastInstanceNorm(norm, interpret=device == "cpu")(x)
        expected = F.instance_norm(x.float(), weight=norm.weight, bias=norm.bias, eps=norm.eps)
    assert out.dtype == torch.bfloat16
    assert (out.float() - expected).abs().max() <= 2 ** -7 * expected.abs().max()


def check_swapped_model(device: str) -> None:
    """A UNet with every instance norm swapped computes what the original does (convolutions in full fp32)."""
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(3)
    cfg = ModelCfg(encoder="resnet18", spatial_dims=3, in_channels=1, num_classes=3, norm="instance",
                   decoder_channels=(64, 32, 16, 8, 8))
    model = build_model(cfg).to(device).eval()
    swapped = use_channels_last_instance_norm(copy.deepcopy(model), interpret=device == "cpu")
    swapped = swapped.to(memory_format=torch.channels_last_3d)
    norms = [m for m in swapped.modules() if isinstance(m, ChannelsLastInstanceNorm)]
    assert len(norms) == sum(isinstance(m, nn.InstanceNorm3d) for m in model.modules())
    assert any(m.relu for m in norms)  # conv → norm → ReLU in the decoder absorbed its ReLU
    x = torch.randn(1, 1, 64, 32, 32, device=device)  # two voxels left at the bottom for instance norm
    with torch.no_grad():
        expected, out = model(x), swapped(_channels_last(x))
    assert torch.allclose(out, expected, atol=1e-4 * expected.abs().max().item())


CHECKS = (check_matches_instance_norm, check_bfloat16, check_swapped_model)


def test_kernels_match_instance_norm() -> None:
    if torch.cuda.is_available():
        for check in CHECKS:
            check("cuda")
        return
    code = ("from tests.models import test_fast_instance_norm as t\n"
            "for check in t.CHECKS:\n    check('cpu')\nprint('interpreted checks passed')")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "interpreted checks passed" in done.stdout, done.stdout + done.stderr[-4000:]


def test_other_inputs_run_the_original_module_exactly() -> None:
    torch.manual_seed(2)
    norm = _norm(8, 3, affine=True)
    fast = ChannelsLastInstanceNorm(norm, relu=True)
    x = _channels_last(torch.randn(2, 8, 4, 5, 6))
    with torch.no_grad():  # a CPU tensor without interpret, and a channels-first one
        assert torch.equal(fast(x), norm(x).relu())
        assert torch.equal(fast(x.contiguous()), norm(x.contiguous()).relu())
    x = x.cuda() if torch.cuda.is_available() else x
    fast = fast.to(x.device)
    out = fast(x.requires_grad_())  # autograd: the original module, which has a backward
    out.sum().backward()
    assert torch.equal(out, fast.source(x).relu()) and x.grad is not None


def test_relu_is_absorbed_only_where_it_follows_the_norm() -> None:
    block = ConvNormAct(3, 4, 8, "instance")
    use_channels_last_instance_norm(block)
    assert isinstance(block[1], ChannelsLastInstanceNorm) and block[1].relu
    assert isinstance(block[2], nn.Identity)
    lone = nn.Sequential(nn.InstanceNorm3d(4), nn.Conv3d(4, 4, 1), nn.ReLU())
    use_channels_last_instance_norm(lone)
    assert not lone[0].relu and isinstance(lone[2], nn.ReLU)
