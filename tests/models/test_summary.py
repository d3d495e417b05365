"""Model summaries on the meta device agree with real models."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from segkit.cli import main
from segkit.config import ModelCfg
from segkit.models import build_model
from segkit.models.summary import summarize


def test_meta_summary_equals_a_real_model_count() -> None:
    cfg = ModelCfg(spatial_dims=3, encoder="resnet18", upsample="pixelshuffle", fusion="add", num_classes=3)
    summary = summarize(cfg, spatial_size=(64, 64, 32))
    model = build_model(cfg).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 1, 64, 64, 32))
    heads = sum(p.numel() for p in model.aux_heads.parameters())
    assert summary.parameters == sum(p.numel() for p in model.parameters()) - heads  # the heads are unused
    supervised = summarize(cfg.model_copy(update={"deep_supervision": True}), spatial_size=(64, 64, 32))
    assert supervised.parameters == summary.parameters + heads > summary.parameters
    assert summary.encoder_parameters == sum(p.numel() for p in model.encoder.parameters())
    assert summary.gflops == pytest.approx(counter.get_total_flops() / 1e9)
    assert summary.gflops > 0


def test_models_json_lists_each_encoder_in_both_dims(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json", "--encoder", "resnet18", "--encoder", "resnet50"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["encoder"], r["spatial_dims"]) for r in rows] == [("resnet18", 2), ("resnet18", 3),
                                                                 ("resnet50", 2), ("resnet50", 3)]
    assert rows[1]["input_shape"] == [1, 1, 128, 128, 128] and rows[0]["input_shape"] == [1, 1, 512, 512]
    assert rows[2]["parameters"] > rows[0]["parameters"]
