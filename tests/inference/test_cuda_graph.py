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
