"""``segkit data check`` on 2D image files (PNG/TIFF folder layout): each problem named against its file."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from rich.console import Console
from segkit.pipelines.data_check import check_dataset, run_data_check

from segkit.data.cases import Case
from segkit.data.check import check_cases
from segkit.data.synth import write_dataset
from tests.cli_run import run_cli

IMAGE, LABEL = "images/phantom_000.png", "labels/phantom_000.png"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 2D training phantoms (32×32 PNG), seed 5 (synth's fourth, held out in imagesTs/, is removed: these
    tests check the training cases)."""
    root = tmp_path_factory.mktemp("png") / "data"
    write_dataset(root, cases=4, seed=5, size_dhw=(8, 32, 32), test_cases=1, layout="folder", dims=2)
    for held_out in ("imagesTs", "labelsTs"):
        shutil.rmtree(root / held_out)
    return root


@pytest.fixture
def root(pristine: Path, tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return Path(shutil.copytree(pristine, tmp_path / "dataset"))


def _write(path: Path, array: np.ndarray, vector: bool = False) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=vector), str(path))


def _label(root: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(root / LABEL)))


def _as_tiff(root: Path, relative: str, array: np.ndarray) -> Path:
    """Replace a PNG by a TIFF of the same case (TIFF holds signed and float pixels too)."""
    (root / relative).unlink()
    path = root / relative.replace(".png", ".tif")
    _write(path, array)
    return path


CORRUPTIONS: dict[str, tuple[Callable[[Path], Path], str]] = {
    # name: (corrupt the dataset and return the file at fault, expected message)
    "label size": (lambda r: _write(r / LABEL, _label(r)[:30]) or r / LABEL,
                   "label size 32×30 differs from image size 32×32 — save the label with the image's width and "
                   "height"),
    "colour label": (lambda r: _write(r / LABEL, np.stack([_label(r)] * 3, axis=-1), vector=True) or r / LABEL,
                     "label has 3 components per pixel (a colour image) — save the label as one grey value per "
                     "pixel, the class number 0..K"),
    "negative label": (lambda r: _as_tiff(r, LABEL, np.where(_label(r) == 1, -1, _label(r).astype(np.int16))),
                       "label holds negative values -1 — labels must be 0 or more; remap them"),
    "float label": (lambda r: _as_tiff(r, LABEL, _label(r).astype(np.float32) + 0.5),
                    "label voxel type float32 holds non-integer values (0.5, 1.5, 2.5, 3.5) — round the labels and "
                    "save them as an integer type (e.g. uint8)"),
    "3D image": (lambda r: _as_tiff(r, IMAGE, np.zeros((4, 32, 32), np.uint8)),
                 "image is 3D (size 32×32×4) — data.image_dims: 2 takes one 2D image per file (PNG or TIFF); train "
                 "on volumes with data.image_dims: 3"),
    "empty image": (lambda r: (r / IMAGE).write_bytes(b"") or r / IMAGE,
                    "image file is empty (0 bytes) — copy or export the file again"),
}


def test_a_clean_2d_dataset_passes_with_a_2d_fingerprint(root: Path) -> None:
    result, fingerprint = check_dataset(root, "folder")
    assert result.ok and result.problems == [] and result.cases_checked == 3
    assert fingerprint.num_cases == 3 and fingerprint.spacing_median == [1.0, 1.0]
    assert fingerprint.shape_max == [32, 32] and fingerprint.as_dict()["axes"] == ["x", "y"]
    labels = [sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted((root / "labels").glob("*.png"))]
    counts = sum(np.bincount(label.ravel(), minlength=4) for label in labels)
    assert fingerprint.class_frequency == pytest.approx({k: counts[k] / counts.sum() for k in range(4)})


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_2d_corruption_is_an_error_naming_its_file(root: Path, name: str) -> None:
    corrupt, expected = CORRUPTIONS[name]
    path = corrupt(root)
    result, fingerprint = check_dataset(root, "folder")
    assert [(p.case_id, p.file, p.severity, p.message) for p in result.problems] == [
        ("phantom_000", path, "error", expected)]
    assert fingerprint.num_cases == 2  # the other cases still make the fingerprint


def test_2d_label_values_are_bounded_by_the_model_classes(root: Path) -> None:
    label = _label(root)
    label[0, :3] = [4, 6, 6]
    _write(root / LABEL, label)
    assert check_dataset(root, "folder")[0].ok  # the folder layout declares no label set
    result, _ = check_dataset(root, "folder", model_classes=4)
    assert [(p.file, p.message) for p in result.problems] == [
        (root / LABEL, "label holds values 4, 6 outside 0..3 (model.num_classes is 4) — remap them or set "
                       "model.num_classes")]


def test_a_missing_2d_label_file_is_an_error(root: Path) -> None:
    missing = root / "labels" / "nowhere.png"
    result = check_cases([Case("a", root / IMAGE, missing)], None, image_dims=2)
    assert [(p.file, p.message) for p in result.problems] == [
        (missing, "label file does not exist — add it or fix its path in dataset.json")]


def test_data_check_reports_a_2d_dataset_as_2d(root: Path) -> None:
    out = io.StringIO()
    result = run_data_check(root, "folder", console=Console(file=out, width=200))
    assert result.ok and "checked as 2D image files" in out.getvalue()
    report = json.loads((root / "segkit_fingerprint.json").read_text())
    assert report["image_dims"] == 2 and report["fingerprint"]["axes"] == ["x", "y"]


def test_data_check_dims_chooses_how_the_images_are_checked(root: Path) -> None:
    as_2d = run_cli("data", "check", str(root), "--format", "folder", "--dims", "2", cwd=root)
    assert as_2d.returncode == 0 and "checked as 2D image files" in as_2d.stdout
    as_3d = run_cli("data", "check", str(root), "--format", "folder", "--dims", "3", cwd=root)
    assert as_3d.returncode == 1 and "image is 2D" in as_3d.stderr and "checked as 2D" not in as_3d.stdout


def _to_rgb(root: Path, relative: str) -> Path:
    """Replace a grey image by an RGB image of the same size (three different channels)."""
    grey = sitk.GetArrayFromImage(sitk.ReadImage(str(root / relative)))
    _write(root / relative, np.stack([grey, 255 - grey, grey // 2], axis=-1).astype(np.uint8), vector=True)
    return root / relative


def test_rgb_images_are_three_channels_for_the_check_and_for_training(root: Path, tmp_path: Path) -> None:
    from segkit.pipelines.train import check_trainable

    from segkit.config import Config, DataCfg, ModelCfg, TrainCfg
    from segkit.data.index import load_dataset
    from segkit.errors import ConfigError

    for image in sorted((root / "images").glob("*.png")):
        _to_rgb(root, f"images/{image.name}")
    result, fingerprint = check_dataset(root, "folder")
    assert result.ok and len(fingerprint.as_dict()["intensity"]) == 3  # one intensity entry per colour channel

    def config(channels: int) -> Config:
        return Config(data=DataCfg(root=root, format="folder", image_dims=2, spacing=None),
                      model=ModelCfg(encoder="resnet18", spatial_dims=2, in_channels=channels),
                      train=TrainCfg(patch_size=(32, 32)), run_dir=tmp_path / "never")

    index = load_dataset(root, "folder")
    check_trainable(config(3), (16, 16), index)  # before run_dir exists
    with pytest.raises(ConfigError, match=r"model\.in_channels is 1 but the dataset at .* has 3 channel\(s\); set "
                                          r"model\.in_channels: 3"):
        check_trainable(config(1), (16, 16), index)
    assert not (tmp_path / "never").exists()


def test_a_grey_image_among_rgb_images_is_an_error(root: Path) -> None:
    for image in sorted((root / "images").glob("*.png"))[:2]:  # phantom_000 (the first) and 001 RGB, 002 grey
        _to_rgb(root, f"images/{image.name}")
    result, _ = check_dataset(root, "folder")
    assert [(p.case_id, p.message) for p in result.problems] == [
        ("phantom_002", "image has 1 component(s) per pixel but the dataset's images have 3 (as its first training "
                        "image) — save every image alike: all grey, or all colour (RGB: model.in_channels 3)")]
