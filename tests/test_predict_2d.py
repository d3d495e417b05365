"""``segkit predict`` with a 2D model on 2D image files: previews, colour images, (X, Y, 1) files and the axis
order of saved probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from tests.cli_run import run_cli

ROWS, COLS = 20, 28  # non-square, so a transposed array shows


@pytest.fixture(scope="module")
def planar_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """A random-weight 2D resnet18 UNet checkpoint (4 classes) with ``channels`` input channels; returns ``best``."""
    import torch

    from segkit.config import Config, DataCfg, InferCfg, ModelCfg, TrainCfg
    from segkit.engine.checkpoint import Snapshot, save_checkpoint
    from segkit.models import build_model

    made: dict[int, Path] = {}

    def make(channels: int) -> Path:
        if channels not in made:
            run = tmp_path_factory.mktemp(f"ckpt2d_{channels}")
            cfg = Config(data=DataCfg(root=run, format="folder", image_dims=2, spacing=None),
                         model=ModelCfg(encoder="resnet18", spatial_dims=2, in_channels=channels,
                                        decoder_channels=(32, 16, 16, 8, 8), norm="instance"),
                         train=TrainCfg(patch_size=(32, 32)), infer=InferCfg(roi_size=(32, 32), sw_batch_size=2))
            torch.manual_seed(0)
            torch_model = build_model(cfg.model).eval()
            torch_model.head.bias.data.zero_()  # so that random weights predict several classes, not one
            made[channels] = save_checkpoint(run, "best", cfg, Snapshot.of(torch_model, {"global_step": 1}))
        return made[channels]

    return make


def _pngs(folder: Path, count: int = 2, rgb: bool = False, seed: int = 3) -> list[Path]:
    """Seeded grey (or RGB) PNGs of ROWS × COLS pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 256, (ROWS, COLS, 3) if rgb else (ROWS, COLS), dtype=np.uint8)
        paths.append(folder / f"case_{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def _statuses(out: Path) -> dict[str, str]:
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    return {line["case_id"]: line["status"] for line in lines}


def test_preview_of_2d_png_inputs_is_written_for_every_case(planar_checkpoint, tmp_path: Path) -> None:
    _pngs(tmp_path / "in")
    done = run_cli("predict", "--checkpoint", planar_checkpoint(1), "--input", "in", "--output", "out", "--preview",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _statuses(tmp_path / "out") == {"case_0": "written", "case_1": "written"}
    for case in ("case_0", "case_1"):
        preview = Image.open(tmp_path / "out" / f"{case}.preview.png")
        assert preview.format == "PNG" and preview.width > 300


def test_a_preview_that_cannot_be_drawn_leaves_its_case_written_with_a_warning(planar_checkpoint, tmp_path: Path,
                                                                              monkeypatch) -> None:
    import segkit.report.preview as preview

    drawn = preview.write_preview

    def faulty(path: Path, image, labels, spacing, class_names=None, title: str = "", affine=None) -> None:
        if title == "case_0":
            raise ValueError("matplotlib says\nno")
        drawn(path, image, labels, spacing, class_names, title, affine)

    monkeypatch.setattr(preview, "write_preview", faulty)
    _pngs(tmp_path / "in")
    args = ("predict", "--checkpoint", planar_checkpoint(1), "--input", "in", "--output", "out", "--preview")
    done = run_cli(*args, cwd=tmp_path)
    out = tmp_path / "out"
    assert done.returncode == 1 and "2 written (1 without the preview asked for), 0 skipped, 0 failed" in done.stdout
    assert _statuses(out) == {"case_0": "written", "case_1": "written"}
    warning = (f"{out / 'case_0.preview.png'}: cannot draw the preview (ValueError: matplotlib says no); the label map "
               "case_0.png was written — run again to retry the preview (the case is redone)")
    assert f"warning: {warning}" in done.stderr and "error" not in done.stderr
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {r["case_id"]: r.get("preview_error") for r in records if r["status"] == "written"} == {
        "case_0": warning, "case_1": None}
    assert (out / "case_0.png").is_file() and not (out / "case_0.preview.png").exists()
    assert (out / "case_1.preview.png").is_file()
    monkeypatch.undo()
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0 and "1 written, 1 skipped, 0 failed" in again.stdout
    assert (out / "case_0.preview.png").is_file()


def test_rgb_pngs_are_predicted_by_a_three_channel_model(planar_checkpoint, tmp_path: Path) -> None:
    _pngs(tmp_path / "in", rgb=True)
    done = run_cli("predict", "--checkpoint", planar_checkpoint(3), "--input", "in", "--output", "out", "--preview",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for case in ("case_0", "case_1"):
        assert np.asarray(Image.open(tmp_path / "out" / f"{case}.png")).shape == (ROWS, COLS)
        assert (tmp_path / "out" / f"{case}.preview.png").is_file()


def test_an_rgb_png_for_a_grey_model_fails_alone_saying_how_to_convert(planar_checkpoint, tmp_path: Path) -> None:
    _pngs(tmp_path / "in", count=1)
    colour = _pngs(tmp_path / "colour", count=1, rgb=True)[0].rename(tmp_path / "in" / "colour.png")
    done = run_cli("predict", "--checkpoint", planar_checkpoint(1), "--input", "in", "--output", "out", cwd=tmp_path)
    assert done.returncode == 1 and _statuses(tmp_path / "out") == {"case_0": "written", "colour": "failed"}
    assert f"{colour}: image has 3 components per pixel (size {COLS}×{ROWS}×3; colour, e.g. RGB) but the model " \
           "takes 1 channel(s) — convert it to grey" in done.stderr


def test_a_2d_nifti_stored_x_y_1_is_predicted_on_its_exact_grid(planar_checkpoint, tmp_path: Path) -> None:
    affine = np.diag([0.8, 0.7, 2.0, 1.0])
    affine[:3, 3] = [5.0, -3.0, 1.0]
    pixels = np.random.default_rng(1).integers(0, 200, (COLS, ROWS, 1)).astype(np.int16)
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(pixels, affine), tmp_path / "in" / "flat.nii.gz")
    done = run_cli("predict", "--checkpoint", planar_checkpoint(1), "--input", "in", "--output", "out",
                   "--save-probabilities", "--preview", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    pred = nib.load(tmp_path / "out" / "flat.nii.gz")
    assert pred.shape == (COLS, ROWS, 1) and np.allclose(pred.affine, affine)
    probabilities = np.load(tmp_path / "out" / "flat.probabilities.npz", allow_pickle=False)["probabilities"]
    assert probabilities.shape == (4, COLS, ROWS, 1)  # NIfTI: voxel order (i, j, k), as nibabel reads it
    assert np.array_equal(probabilities.argmax(0), np.asarray(pred.dataobj))


def test_png_probabilities_are_classes_rows_columns_like_the_label_png(planar_checkpoint, tmp_path: Path) -> None:
    _pngs(tmp_path / "in", count=1)
    done = run_cli("predict", "--checkpoint", planar_checkpoint(1), "--input", "in", "--output", "out",
                   "--save-probabilities", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    saved = np.load(tmp_path / "out" / "case_0.probabilities.npz", allow_pickle=False)
    label = np.asarray(Image.open(tmp_path / "out" / "case_0.png"))
    assert saved["probabilities"].shape == (4, ROWS, COLS) and label.shape == (ROWS, COLS)
    assert len(np.unique(label)) > 1  # random weights still predict several classes: the order is tested
    assert np.array_equal(saved["probabilities"].argmax(0), label)
    assert np.array_equal(saved["affine"], [[0, 1, 0], [1, 0, 0], [0, 0, 1]])  # (row, column, 1) → (x, y, 1)


def test_a_2d_image_records_label_areas_in_mm2_not_volumes(planar_checkpoint, tmp_path: Path) -> None:
    """A pixel has no volume: the manifest of a 2D image records each label's area from its pixel spacing."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.random.default_rng(5).integers(0, 256, (ROWS, COLS)).astype(np.uint8))
    image.SetSpacing((0.5, 0.8))
    (tmp_path / "in").mkdir()
    sitk.WriteImage(image, str(tmp_path / "in" / "slice.nrrd"))
    done = run_cli("predict", "--checkpoint", planar_checkpoint(1), "--input", "in", "--output", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    record = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()][-1]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "slice.nrrd")))
    expected = {str(k): pytest.approx(float((labels == k).sum()) * 0.4) for k in range(1, 4) if (labels == k).any()}
    assert "volumes_ml" not in record and expected and record["areas_mm2"] == expected


def test_from_python_a_png_gives_the_label_png_transposed(planar_checkpoint, tmp_path: Path) -> None:
    from monai.transforms import LoadImage
    from segkit.pipelines.predict_api import load_predictor

    png = _pngs(tmp_path / "in", count=1)[0]
    assert run_cli("predict", "--checkpoint", planar_checkpoint(1), "--input", "in", "--output", "out",
                   cwd=tmp_path).returncode == 0
    label = np.asarray(Image.open(tmp_path / "out" / "case_0.png"))  # (rows, columns), as PIL reads it
    assert len(np.unique(label)) > 1
    predictor = load_predictor(planar_checkpoint(1), device="cpu")
    assert np.array_equal(predictor.predict_files(png).labels, label.T)  # (column, row), as documented
    image = LoadImage(image_only=True, ensure_channel_first=True)(str(png))
    assert np.array_equal(predictor.predict_image(image).labels, label.T)
