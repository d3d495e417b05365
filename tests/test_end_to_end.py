"""synth → train a few steps → predict → evaluate, through the CLI's ``main`` in a temp dir (in this process:
see ``tests/cli_run.py``)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.cli_run import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("e2e")
    done = run_cli("data", "synth", "--out", "data", "--cases", "5", "--seed", "3", "--size", "16", "40", "40",
                  "--test", "2", cwd=work)
    assert done.returncode == 0, done.stderr
    done = run_cli("train", "--config", "demo_unet_resnet34.yaml", "--set", "run_dir=run", "--set", "data.root=data",
                  "--set", "train.epochs=1", "--set", "train.steps_per_epoch=2", "--set", "train.batch_size=2",
                  "--set", "train.patch_size=[32,32,32]", "--set", "infer.roi_size=[32,32,32]",
                  "--set", "model.encoder=resnet18", "--set", "data.spacing=auto", "--set", "data.normalize=ct",
                  "--set", "model.deep_supervision=true", "--set", "train.ema=0.9", cwd=work)
    assert done.returncode == 0, done.stderr
    return work


def test_training_writes_complete_checkpoints(trained_run: Path) -> None:
    for name in ("best", "last"):
        directory = trained_run / "run" / name
        assert {"weights.safetensors", "config.json", "state.json"} <= {p.name for p in directory.iterdir()}
    data = json.loads((trained_run / "run" / "best" / "config.json").read_text())["data"]
    assert len(data["spacing"]) == 3 and all(0.7 < s < 3.1 for s in data["spacing"])  # 'auto' resolved
    low, high, mean, std = data["ct_stats"]  # filled from the fingerprint's foreground
    assert low < mean < high and std > 0
    splits = json.loads((trained_run / "run" / "splits.json").read_text())
    assert len(splits) == 1 and len(splits[0]["val"]) == 1
    assert (trained_run / "run" / "last" / "resume.pt").is_file()
    assert not (trained_run / "run" / "best" / "resume.pt").exists()  # only last/ carries the resume state


def test_training_logs_metrics_and_curves(trained_run: Path) -> None:
    lines = (trained_run / "run" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}")) for line in lines]
    assert [r["step"] for r in records if r["kind"] == "step"] == [1, 2]
    (val,) = [r for r in records if r["kind"] == "val"]
    assert set(val) >= {"mean_dice", "dice_per_class", "hd95_per_class", "nsd_per_class", "train_loss"}
    assert len(val["dice_per_class"]) == 3 == len(val["hd95_per_class"])
    assert val["mean_hd95"] is None or val["mean_hd95"] >= 0  # None when no class was found in either
    png = (trained_run / "run" / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_of_a_finished_run_has_nothing_left_to_do(trained_run: Path) -> None:
    saved = (trained_run / "run" / "config.yaml").read_text()
    assert f"root: {trained_run / 'data'}\n" in saved  # trained with data.root=data: kept as an absolute path
    done = run_cli("train", "--resume", str(trained_run / "run"), cwd=trained_run.parent)  # from another folder
    assert done.returncode == 0, done.stderr
    assert "resuming" not in done.stdout  # before: "resuming … at step 2 (epoch 3)", then "is complete"
    assert "is complete (step 2 of 2); nothing to train — raise train.epochs with --set to continue it" in done.stdout
    assert "epoch 3" not in done.stdout.split("is complete")[1]  # no progress bar of a step past the end
    both = run_cli("train", "--resume", "run", "--overwrite", cwd=trained_run)
    assert both.returncode == 1 and "--overwrite replaces a run and --resume continues one" in both.stderr
    refused = run_cli("train", "--resume", "run", "--config", "demo_unet_resnet34.yaml", cwd=trained_run)
    assert refused.returncode == 1 and "leave out --config" in refused.stderr


def test_predictions_lie_on_each_input_grid(trained_run: Path) -> None:
    done = run_cli("predict", "--checkpoint", "run", "--input", "data/imagesTs", "--output", "preds",
                  cwd=trained_run)
    assert done.returncode == 0, done.stderr
    inputs = sorted((trained_run / "data" / "imagesTs").glob("*.nii.gz"))
    assert len(inputs) == 2
    for source in inputs:
        image, pred = nib.load(source), nib.load(trained_run / "preds" / source.name)
        assert pred.shape == image.shape
        np.testing.assert_allclose(pred.affine, image.affine, atol=1e-5)
        data = np.asarray(pred.dataobj)
        assert data.dtype == np.uint8 and data.max() < 4
        assert source.name in done.stdout  # the per-case table names each output


def test_evaluate_writes_table_and_csv(trained_run: Path) -> None:
    if not (trained_run / "preds").exists():
        run_cli("predict", "--checkpoint", "run", "--input", "data/imagesTs", "--output", "preds", cwd=trained_run)
    done = run_cli("evaluate", "--pred", "preds", "--ref", "data/labelsTs", cwd=trained_run)
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader((trained_run / "preds" / "evaluation.csv").open()))
    assert rows[0] == ["case", "class", "dice", "hd95_mm", "nsd"]
    classes = ["organ", "vessel", "lesion"]
    assert [r[:2] for r in rows[1:]] == [[c, k] for c in ("phantom_003", "phantom_004", "mean") for k in classes]
    assert all(0.0 <= float(v) <= 1.0 for r in rows[1:] for v in (r[2], r[4]) if v)  # Dice and NSD; '' = absent
    assert all(float(r[3]) >= 0.0 for r in rows[1:] if r[3])  # HD95 in mm
    summary = (trained_run / "preds" / "evaluation.md").read_text(encoding="utf-8")
    assert "## Per class" in summary and "| organ |" in summary and "NSD tolerance: 1 mm" in summary


def test_evaluate_scores_a_perfect_prediction_as_one(trained_run: Path) -> None:
    shutil.copytree(trained_run / "data" / "labelsTs", trained_run / "perfect", dirs_exist_ok=True)
    done = run_cli("evaluate", "--pred", "perfect", "--ref", "data/labelsTs", "--csv", "self.csv",
                  cwd=trained_run)
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader((trained_run / "self.csv").open()))
    means = [r for r in rows if r[0] == "mean"]
    assert len(means) == 3 and any(r[2] for r in means)
    assert all(r[2:] == ["1.000000", "0.000000", "1.000000"] for r in means if r[2])  # Dice, HD95 mm, NSD


def test_output_equal_to_input_folder_is_refused(trained_run: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in (trained_run / "data" / "imagesTs").iterdir()}
    done = run_cli("predict", "--checkpoint", "run", "--input", "data/imagesTs", "--output", "data/imagesTs",
                  cwd=trained_run)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "input folder" in done.stderr
    assert {p.name: p.stat().st_mtime_ns for p in (trained_run / "data" / "imagesTs").iterdir()} == before


def test_bad_case_is_reported_and_the_others_finish(trained_run: Path) -> None:
    inputs = trained_run / "mixed"
    inputs.mkdir(exist_ok=True)
    (inputs / "broken.nii.gz").write_bytes(b"not an image")
    good = sorted((trained_run / "data" / "imagesTs").glob("*.nii.gz"))[0]
    (inputs / good.name).write_bytes(good.read_bytes())
    done = run_cli("predict", "--checkpoint", "run", "--input", "mixed", "--output", "mixed_preds", cwd=trained_run)
    assert done.returncode == 1
    assert "broken" in done.stdout and "failed" in done.stdout
    assert (trained_run / "mixed_preds" / good.name).is_file()
    assert not (trained_run / "mixed_preds" / "broken.nii.gz").exists()
    assert "Traceback" not in done.stderr


def test_the_dataset_class_names_reach_the_checkpoint_and_the_preview_legend(trained_run: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import segkit.report.preview as preview

    labels = json.loads((trained_run / "data" / "dataset.json").read_text())["labels"]
    names = [labels[str(k)] for k in range(len(labels))]
    assert len(names) == 4 and names[1] != "class 1"
    assert json.loads((trained_run / "run" / "best" / "state.json").read_text())["class_names"] == names
    drawn, seen = preview.write_preview, []

    def recording(path, image, labels, spacing, class_names=None, title="", affine=None) -> None:
        seen.append(class_names)
        drawn(path, image, labels, spacing, class_names, title, affine)

    monkeypatch.setattr(preview, "write_preview", recording)
    image = sorted((trained_run / "data" / "imagesTs").iterdir())[0]
    done = run_cli("predict", "--checkpoint", "run", "--input", str(image), "--output", "named", "--preview",
                   cwd=trained_run)
    assert done.returncode == 0, done.stderr
    assert seen == [names]  # before: None, so the legend said "class 1: 14.9 ml"
