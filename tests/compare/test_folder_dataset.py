"""``segkit compare`` on a dataset in the folder layout (2D PNG, as ``segkit data synth --dims 2`` writes it): its
held-out cases are ``imagesTs/`` with ``labelsTs/``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segkit.cli import main
from segkit.compare.plan import plan_runs
from segkit.compare.spec import CompareRequest, resolve_comparison
from tests.conftest import write_yaml


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """Four 24×32 PNG phantoms (one held out) and a 2D config that trains two steps."""
    data = tmp_path / "png"
    assert main(["data", "synth", "--out", str(data), "--cases", "4", "--dims", "2", "--size", "8", "24", "32",
                 "--test", "1", "--seed", "3"]) == 0
    return write_yaml(tmp_path / "base.yaml", {
        "base": "demo_unet_resnet34.yaml",
        "data": {"root": str(data), "format": "folder", "image_dims": 2, "spacing": None, "val_fraction": 0.3},
        "model": {"spatial_dims": 2, "encoder": "resnet18", "decoder_channels": [16, 16, 8, 8, 8]},
        "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "patch_size": [32, 32], "val_every": 1,
                  "surface_metrics": False},
        "infer": {"roi_size": [32, 32], "sw_batch_size": 16, "overlap": 0.0},
    })


def test_the_held_out_cases_of_a_folder_dataset_are_its_images_ts(base: Path, tmp_path: Path) -> None:
    from segkit.pipelines.compare import held_out_cases

    comparison = resolve_comparison(CompareRequest(str(base), ("model.upsample=transposed,nearest",), (), 1,
                                                   tmp_path / "out"))
    _, runs = plan_runs(comparison)
    assert [(c.case_id, c.label.name) for c in held_out_cases(runs[0])] == [("phantom_003", "phantom_003.png")]


@pytest.mark.slow
def test_compare_runs_on_a_folder_dataset(base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["compare", "--config", str(base), "--vary", "model.upsample=nearest", "--seeds", "1",
                 "--out", str(out)]) == 0, capsys.readouterr().err
    (result,) = out.glob("runs/*/seed0/result.json")
    assert json.loads(result.read_text(encoding="utf-8"))["cases"] == ["phantom_003"]
    assert "- Held-out cases: 1 (phantom_003)\n" in (out / "report.md").read_text(encoding="utf-8")
