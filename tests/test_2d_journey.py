"""A 2D user's path: the packaged 2D recipe on synthetic PNGs (train → predict → evaluate), and the 2D mistakes
such a user makes — palette PNG labels, black-and-white (0/255) masks, volumes given to a 2D-image model, 2D files
under a 3D config — each refused in one line naming the file and the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from segkit.config import load_config
from segkit.config_loading import packaged_config_names
from segkit.data.cases import Case
from segkit.data.check import LabelBound, check_cases
from segkit.data.synth import write_dataset
from tests.cli_run import run_cli

RECIPE = "unet_resnet34_2d"
TINY = ["model.encoder=resnet18", "model.decoder_channels=[32,16,16,8,8]", "model.norm=batch",
        "train.patch_size=[64,64]", "train.batch_size=2", "train.epochs=1", "train.steps_per_epoch=1",
        "data.num_workers=0", "infer.sw_batch_size=1"]


@pytest.fixture(scope="module")
def pngs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five 2D phantoms of 48 × 64 pixels as PNG in the folder layout (one held out), seed 11."""
    root = tmp_path_factory.mktemp("png2d") / "data"
    write_dataset(root, cases=5, seed=11, size_dhw=(8, 48, 64), test_cases=1, layout="folder", dims=2)
    return root


def _dataset(pngs: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pngs, tmp_path / "data", ignore=shutil.ignore_patterns("segkit_*")))


def _sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def test_the_2d_recipe_is_packaged_and_2d(tmp_path: Path) -> None:
    assert f"{RECIPE}.yaml" in packaged_config_names()
    cfg = load_config(RECIPE)
    assert cfg == load_config(f"{RECIPE}.yaml")
    assert (cfg.model.spatial_dims, cfg.data.image_dims, len(cfg.train.patch_size), cfg.data.spacing) == (2, 2, 2, None)
    assert cfg.train.augment.elastic == 0 and cfg.train.albumentations  # 2D elastic is albumentations' own
    from segkit.data.albu import check_on_a_patch

    check_on_a_patch(list(cfg.train.albumentations), cfg.model.in_channels, (32, 32))  # every entry runs
    shown = run_cli("config", "show", "--config", RECIPE, cwd=tmp_path)
    assert shown.returncode == 0 and "spatial_dims: 2" in shown.stdout


def test_the_2d_recipe_trains_predicts_and_evaluates_pngs(pngs: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    trained = run_cli("train", "--config", RECIPE, *_sets([f"data.root={pngs}", "run_dir=run", *TINY]), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    predicted = run_cli("predict", "--checkpoint", "run", "--input", str(pngs / "imagesTs"), "--output", "preds",
                        cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    for source in (pngs / "imagesTs").glob("*.png"):
        pred = Image.open(tmp_path / "preds" / source.name)  # a viewer's reader: 8-bit grey, the input's size
        assert (pred.mode, pred.size) == ("L", Image.open(source).size)
        assert set(np.unique(np.asarray(pred))) <= {0, 1, 2, 3}
    scored = run_cli("evaluate", "--pred", "preds", "--ref", str(pngs / "labelsTs"), "--num-classes", "4",
                     cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr


def _to_palette(path: Path) -> None:
    indices = np.asarray(Image.open(path))
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (252 * 3))
    image.save(path)


def _to_black_white(path: Path) -> None:
    Image.fromarray(((np.asarray(Image.open(path)) > 0) * 255).astype(np.uint8)).save(path)


def _only_error(root: Path, bound: LabelBound | None) -> str:
    case = Case("phantom_000", root / "images/phantom_000.png", root / "labels/phantom_000.png")
    result = check_cases([case], bound, channels=1, image_dims=2)
    return "; ".join(p.message for p in result.problems)


def test_a_palette_png_label_is_refused_with_how_to_save_its_indices(pngs: Path, tmp_path: Path) -> None:
    root = _dataset(pngs, tmp_path)
    _to_palette(root / "labels/phantom_000.png")
    message = _only_error(root, None)
    assert message.startswith("label is a palette (indexed-colour) image") and "palette indices" in message


def test_a_black_and_white_mask_is_named_as_such_in_check_and_train(pngs: Path, tmp_path: Path) -> None:
    root = _dataset(pngs, tmp_path)
    _to_black_white(root / "labels/phantom_000.png")
    assert "binary mask saved as black and white (0/255)" in _only_error(root, LabelBound.from_model(2))
    assert "label holds only 0 and 255 — a binary mask" in _only_error(root, None)  # data check: a warning


@pytest.mark.parametrize("fault", ["black_white", "palette"])
def test_evaluate_names_the_reference_at_fault(pngs: Path, tmp_path: Path, fault: str) -> None:
    ref = Path(shutil.copytree(pngs / "labelsTs", tmp_path / "ref"))
    pred = Path(shutil.copytree(pngs / "labelsTs", tmp_path / "pred"))
    bad = next(ref.glob("*.png"))
    {"black_white": _to_black_white, "palette": _to_palette}[fault](bad)
    # without --num-classes a 0/255 reference used to be scored as 255 classes, exit code 0
    done = run_cli("evaluate", "--pred", str(pred), "--ref", str(ref), cwd=tmp_path)
    assert done.returncode == 1
    assert f"first problem: {bad}: label " in done.stderr
    assert ("0/255" if fault == "black_white" else "palette (indexed-colour)") in done.stderr


def test_a_volume_given_to_a_2d_image_model_is_not_called_colour(tmp_path: Path, monkeypatch) -> None:
    from segkit.config import Config, DataCfg, ModelCfg, TrainCfg
    from segkit.engine.checkpoint import Snapshot, save_checkpoint
    from segkit.models import build_model

    cfg = Config(data=DataCfg(root=tmp_path, format="folder", image_dims=2, spacing=None),
                 model=ModelCfg(encoder="resnet18", spatial_dims=2, decoder_channels=(32, 16, 16, 8, 8), norm="batch"),
                 train=TrainCfg(patch_size=(32, 32)))
    checkpoint = save_checkpoint(tmp_path / "run", "best", cfg, Snapshot.of(build_model(cfg.model).eval(), {}))
    volume = tmp_path / "in" / "vol.nii.gz"
    volume.parent.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((24, 20, 8), np.float32), np.eye(4)), volume)
    done = run_cli("predict", "--checkpoint", str(checkpoint), "--input", str(volume.parent), "--output",
                   str(tmp_path / "out"), "--device", "cpu", cwd=tmp_path)
    assert done.returncode == 1
    assert f"{volume}: image is a 3D volume (size 24×20×8) but the model was trained on 2D image files" in done.stderr


def test_2d_files_under_a_3d_config_point_to_the_2d_keys_and_recipe(pngs: Path, tmp_path: Path) -> None:
    root = _dataset(pngs, tmp_path)
    case = Case("phantom_000", root / "images/phantom_000.png", root / "labels/phantom_000.png")
    messages = [p.message for p in check_cases([case], 4, channels=1).problems]
    assert any("model.spatial_dims: 2" in m and "unet_resnet34_2d" in m for m in messages), messages
    assert sitk.ReadImage(str(case.image)).GetDimension() == 2
