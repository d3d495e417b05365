"""CUDA-graph replay of window batches: the eager model's outputs, for every input; the CPU runs eagerly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segkit.inference.cuda_graph import GraphedForward
from segkit.runtime import autocast


def _model(device: str) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.InstanceNorm3d(4, affine=True), nn.ReLU(),
                         nn.Conv3d(4, 2, 1)).to(device).eval()


def test_cpu_runs_the_model_eagerly() -> None:
    model = _model("cpu")
    graphed = GraphedForward(model)
    x = torch.randn(2, 1, 8, 8, 8)
    with torch.no_grad():
        assert torch.equal(graphed(x), model(x))
    assert not graphed._graphs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="capture needs a GPU (benchmarks/gpu_session.sh runs it)")
def test_gpu_replays_match_eager_for_new_inputs_shapes_and_autocast() -> None:
    model = _model("cuda")
    graphed = GraphedForward(model)
    with torch.no_grad():
        for shape in [(2, 1, 8, 8, 8), (2, 1, 8, 8, 8), (1, 1, 8, 8, 8), (2, 1, 8, 8, 8)]:
            x = torch.randn(shape, device="cuda")
            out = graphed(x)
            assert torch.allclose(out, model(x), atol=1e-6)
        first = graphed(torch.ones(2, 1, 8, 8, 8, device="cuda"))
        graphed(torch.zeros(2, 1, 8, 8, 8, device="cuda"))
        assert torch.allclose(first, model(torch.ones(2, 1, 8, 8, 8, device="cuda")))  # outputs are copies
        with autocast(torch.device("cuda"), torch.bfloat16):
            x = torch.randn(2, 1, 8, 8, 8, device="cuda")
            out, expected = graphed(x), model(x)
        assert out.dtype == expected.dtype and torch.allclose(out.float(), expected.float(), atol=1e-2)
    assert len(graphed._graphs) == 3


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a second GPU")
def test_a_model_on_another_gpu_than_the_current_one_is_captured_and_replayed_there() -> None:
    """``--device cuda:1`` in one process: Triton kernels and CUDA graphs use the *current* device's streams, so
    both must run with cuda:1 current, whatever the caller's current device is."""
    import copy

    from segkit.models.fast_instance_norm import use_channels_last_instance_norm
    from segkit.runtime import ChannelsLastInput, triton_kernels_usable

    device = torch.device("cuda", 1)
    allow_tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # both sides in full fp32
    try:
        torch.cuda.set_device(0)
        model = _model(str(device))
        reference = copy.deepcopy(model)  # eager, PyTorch's instance norm
        if triton_kernels_usable(device):
            use_channels_last_instance_norm(model)
        graphed = GraphedForward(ChannelsLastInput(model, 3))
        with torch.no_grad():
            for _ in range(3):  # capture, then replays
                x = torch.randn(2, 1, 8, 8, 8, device=device)
                out = graphed(x)
                assert out.device == device
                assert torch.allclose(out, reference(x), atol=1e-4)
        assert torch.cuda.current_device() == 0 and len(graphed._graphs) == 1
    finally:
        torch.backends.cudnn.allow_tf32 = allow_tf32
