"""Keeping the largest connected component: against MONAI's KeepLargestConnectedComponent, in predict
(--keep-largest / infer.keep_largest) and in evaluate's suggestion (--postprocessing)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import KeepLargestConnectedComponent
from pydantic import ValidationError
from scipy import ndimage
from segkit.pipelines.evaluate import evaluate_folders
from segkit.pipelines.postprocessing_choice import suggested_labels

from segkit.config import Config, InferCfg
from segkit.inference.manifest import read_manifest
from segkit.inference.postprocess import keep_largest_components
from segkit.inference.predictor import Prediction, Predictor
from tests.cli_run import run_cli


def organs_with_islands(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """One large box per label 1..3 (label 3 inside label 1) and single-voxel islands of every label."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint8)
    labels[tuple(slice(n // 6, 5 * n // 6) for n in shape)] = 1
    labels[tuple(slice(n // 3, n // 2) for n in shape)] = 3
    labels[tuple(slice(0, n // 5) for n in shape)] = 2
    islands = rng.random(shape) < 0.02
    labels[islands] = rng.integers(1, 4, int(islands.sum()), dtype=np.uint8)
    return labels


def monai_reference(labels: np.ndarray, keep: list[int]) -> np.ndarray:
    transform = KeepLargestConnectedComponent(applied_labels=keep, independent=True)
    return transform(torch.from_numpy(np.array(labels, order="C"))[None])[0].numpy()  # MONAI works in place


@pytest.mark.parametrize(("shape", "order", "keep"), [
    ((30, 26, 20), "C", [1, 2, 3]), ((30, 26, 20), "F", [1, 3]), ((64, 48), "C", [2, 3]), ((64, 48), "F", [1, 2, 3]),
])
def test_matches_monai_keep_largest_connected_component(shape, order, keep) -> None:
    labels = np.asarray(organs_with_islands(shape, seed=len(shape) + len(keep)), order=order)
    expected = monai_reference(labels, keep)
    removed = keep_largest_components(labels, keep)
    assert np.array_equal(labels, expected)
    assert labels.flags.f_contiguous == (order == "F")  # changed in place, layout kept
    original = organs_with_islands(shape, seed=len(shape) + len(keep))
    assert removed == {k: int(((original == k) & (labels == 0)).sum()) for k in keep}
    assert all(count > 0 for count in removed.values())
    structure = ndimage.generate_binary_structure(len(shape), len(shape))
    assert all(ndimage.label(labels == k, structure)[1] == 1 for k in keep)


def test_single_component_and_absent_labels_are_left_alone() -> None:
    labels = np.zeros((12, 10, 8), np.uint8)
    labels[2:6, 2:6, 2:6] = 1
    labels[7, 7, 7] = 2  # diagonal neighbour of nothing else: one component
    before = labels.copy()
    assert keep_largest_components(labels, [1, 2, 3]) == {}
    assert np.array_equal(labels, before)


def test_config_refuses_labels_the_model_does_not_predict() -> None:
    with pytest.raises(ValidationError, match=r"infer.keep_largest names label 4, but model.num_classes is 4"):
        Config(infer=InferCfg(keep_largest=(1, 4)))


def test_predict_keeps_the_largest_component_and_counts_volumes_after_it(
        random_checkpoint: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The random checkpoint predicts one class everywhere, so its label maps are replaced by organs with islands
    (F-ordered, with the device's voxel counts) as they leave the device stage."""
    real_infer = Predictor.infer

    def islands_infer(self: Predictor, image: torch.Tensor) -> Prediction:
        shape = real_infer(self, image).labels.shape
        labels = np.asfortranarray(organs_with_islands(shape, seed=sum(shape)))
        return Prediction(labels, np.bincount(labels.ravel(), minlength=4))

    monkeypatch.setattr(Predictor, "infer", islands_infer)
    inputs = tmp_path / "scans"
    shutil.copytree(tiny_dataset / "imagesTr", inputs)
    plain = run_cli("predict", "--checkpoint", random_checkpoint, "--input", inputs, "--output", "plain",
                    "--device", "cpu", cwd=tmp_path)
    kept = run_cli("predict", "--checkpoint", random_checkpoint, "--input", inputs, "--output", "kept",
                   "--device", "cpu", "--keep-largest", "1", "2", "3", cwd=tmp_path)
    assert plain.returncode == 0 and kept.returncode == 0, kept.stderr
    records = read_manifest(tmp_path / "kept" / "manifest.jsonl")
    removed_any = False
    for path in sorted((tmp_path / "plain").glob("*.nii.gz")):
        before = np.asarray(nib.load(str(path)).dataobj)
        image = nib.load(str(tmp_path / "kept" / path.name))
        after = np.asarray(image.dataobj)
        expected = monai_reference(before, [1, 2, 3])
        assert np.array_equal(after, expected)
        removed_any |= not np.array_equal(before, after)
        record = records[path.name.removesuffix(".nii.gz")]
        assert record["settings"]["keep_largest"] == [1, 2, 3]
        voxel_ml = abs(np.linalg.det(image.affine[:3, :3])) / 1000
        volumes = {str(k): round(float((after == k).sum()) * voxel_ml, 4) for k in range(1, 4) if (after == k).any()}
        assert record["volumes_ml"] == pytest.approx(volumes)
    assert removed_any

    wrong = run_cli("predict", "--checkpoint", random_checkpoint, "--input", inputs, "--output", "wrong",
                    "--device", "cpu", "--keep-largest", "4", cwd=tmp_path)
    assert wrong.returncode != 0 and not (tmp_path / "wrong").exists()
    assert wrong.stderr.strip().count("\n") == 0 and "--keep-largest 4" in wrong.stderr


def _save(folder: Path, name: str, labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(labels, np.diag([1.5, 1.0, 2.0, 1.0])), folder / f"{name}.nii.gz")


def test_evaluate_suggests_only_labels_whose_mean_dice_rises(tmp_path: Path) -> None:
    """Label 1 is one organ that the prediction decorates with islands; label 2 truly has two parts, which the
    prediction gets right — keeping only its largest part would lose one."""
    for case in range(3):
        ref = np.zeros((24, 20, 16), np.uint8)
        ref[4:14, 4:14, 4:12] = 1
        ref[16:20, 2:5, 2:5] = 2
        ref[16:20, 14:18, 10:14] = 2
        pred = ref.copy()
        pred[20 + case % 2, 18, 1] = 1  # islands of label 1
        pred[1, 18 - case, 14] = 1
        _save(tmp_path / "ref", f"c{case}", ref)
        _save(tmp_path / "pred", f"c{case}", pred)
    result = evaluate_folders(tmp_path / "pred", tmp_path / "ref", num_classes=3, postprocessing=True)
    assert result.dice_largest is not None
    assert np.allclose(result.dice_largest[:, 0], 1.0) and (result.dice[:, 0] < 1.0).all()
    assert np.allclose(result.dice[:, 1], 1.0) and (result.dice_largest[:, 1] < 1.0).all()
    assert suggested_labels(result.dice, result.dice_largest) == [1]

    done = run_cli("evaluate", "--pred", "pred", "--ref", "ref", "--postprocessing", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "set infer.keep_largest: [1] (or predict with --keep-largest 1)" in done.stdout
    summary = (tmp_path / "pred" / "evaluation.md").read_text(encoding="utf-8")
    assert "## Postprocessing: largest connected component" in summary and "infer.keep_largest: [1]" in summary
