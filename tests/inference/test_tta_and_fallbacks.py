"""Mirroring TTA and the out-of-memory fallbacks of the sliding window."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from monai.inferers import sliding_window_inference
from torch import nn

import segkit.inference.sliding_window as sw
from segkit.inference.sliding_window import WindowSettings, logits_with_fallbacks, sliding_window_logits
from segkit.inference.tta import mirror_sets, mirrored_logits


def test_mirror_sets_are_every_combination() -> None:
    assert mirror_sets([2, 0, 1]) == [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]


def test_tta_of_a_flip_equivariant_model_equals_no_tta() -> None:
    torch.manual_seed(0)
    model = nn.Conv3d(1, 3, 1)  # pointwise: mirroring the input mirrors the output
    image = torch.randn(1, 1, 20, 18, 11)
    settings = WindowSettings((8, 8, 8), 0.5, 2, "gaussian")

    def predict(volume: torch.Tensor) -> torch.Tensor:
        return sliding_window_logits(model, volume, settings)

    torch.testing.assert_close(mirrored_logits(predict, image, [0, 1, 2]), predict(image), rtol=1e-5, atol=1e-5)


def test_tta_averages_the_unflipped_predictions_of_every_mirror() -> None:
    torch.manual_seed(1)
    model = nn.Conv3d(1, 2, 3, padding=1)
    image = torch.randn(1, 1, 6, 5, 4)
    with torch.no_grad():
        expected = (model(image) + model(image.flip(2)).flip(2) + model(image.flip(4)).flip(4)
                    + model(image.flip(2, 4)).flip(2, 4)) / 4
        got = mirrored_logits(model, image, [0, 2])
    torch.testing.assert_close(got, expected)


def test_logits_equal_monai_sliding_window_inference() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 3, 1)).eval()
    image = torch.randn(1, 2, 37, 29, 19)
    settings = WindowSettings((16, 16, 8), 0.25, 3, "gaussian")
    with torch.no_grad():
        reference = sliding_window_inference(image, (16, 16, 8), 3, model, overlap=0.25, mode="gaussian")
    assert (sliding_window_logits(model, image, settings) - reference).abs().max() <= 1e-4


def test_out_of_memory_halves_the_batch_then_stitches_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake(model, image, settings, amp_dtype=None, stitch_device=None):
        calls.append((settings.sw_batch_size, None if stitch_device is None else stitch_device.type))
        if stitch_device is None:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return torch.zeros(1)

    monkeypatch.setattr(sw, "sliding_window_logits", fake)
    gpu_image = SimpleNamespace(device=SimpleNamespace(type="cuda"))
    _, used = logits_with_fallbacks(nn.Identity(), gpu_image, WindowSettings((8, 8, 8), 0.5, 8))
    assert calls == [(8, None), (4, None), (2, None), (1, None), (1, "cpu")]
    assert used.sw_batch_size == 1
    cpu_image = SimpleNamespace(device=SimpleNamespace(type="cpu"))
    with pytest.raises(torch.OutOfMemoryError):  # nothing to fall back to on the host
        logits_with_fallbacks(nn.Identity(), cpu_image, WindowSettings((8, 8, 8), 0.5, 8))


@pytest.mark.parametrize(("dims", "expected"), [(2, [0, 1]), (3, [0, 1, 2])])
def test_tta_of_a_slice_wise_model_leaves_out_the_slice_axis(dims: int, expected: list[int],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices are predicted one by one, so mirroring their order gives the same logits at twice the cost."""
    import segkit.inference.predictor as predictor_module
    from segkit.config import Config, DataCfg, InferCfg, ModelCfg, TrainCfg
    from segkit.inference.predictor import Predictor
    from segkit.models import build_model

    window = (32,) * dims
    cfg = Config(data=DataCfg(slice_axis=2), train=TrainCfg(patch_size=window), infer=InferCfg(roi_size=window),
                 model=ModelCfg(spatial_dims=dims, encoder="resnet18", decoder_channels=(16, 8, 8, 4, 4)))
    mirrored: list[list[int]] = []

    def recording(predict, image, axes):
        mirrored.append(list(axes))
        return mirrored_logits(predict, image, axes)

    monkeypatch.setattr(predictor_module, "mirrored_logits", recording)
    predictor = Predictor(build_model(cfg.model).eval(), cfg, torch.device("cpu"), tta=True)
    assert predictor.logits(torch.randn(1, 24, 20, 4)).shape == (4, 24, 20, 4)
    assert mirrored == [expected]
