"""segkit evaluate's conventions a MONAI or nnU-Net user checks first: which mean is reported, what a 2D image stored
as X×Y×1 NIfTI is, how classes are named, and which files make a case."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.metrics import compute_hausdorff_distance, compute_surface_dice
from monai.networks.utils import one_hot
from rich.console import Console
from segkit.pipelines.evaluate import evaluate_folders, run_evaluation

from tests.test_evaluate import read_rows, save

SLICE = np.diag([0.8, 1.3, 999.0, 1.0])  # a 2D image as `segkit data convert` writes a PNG: X×Y×1, a 999 mm slice


def _disk(radius: float, size: int = 48) -> np.ndarray:
    x, y = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return (((x - size / 2) * 0.8) ** 2 + ((y - size / 2) * 1.3) ** 2 <= radius**2).astype(np.uint8)


def _monai_2d(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    as_onehot = [one_hot(torch.as_tensor(a.astype(np.int64))[None, None], 2) for a in (pred, ref)]
    hd95 = compute_hausdorff_distance(*as_onehot, percentile=95, spacing=[0.8, 1.3]).item()
    return hd95, compute_surface_dice(*as_onehot, [1.0], spacing=[0.8, 1.3]).item()


def test_a_2d_image_stored_as_x_y_1_nifti_is_scored_in_2d_as_monai_scores_it(tmp_path: Path) -> None:
    ref, pred = _disk(12.0), _disk(9.0)
    save(tmp_path / "ref", "c", ref[..., None], SLICE)
    save(tmp_path / "pred", "c", pred[..., None], SLICE)
    save(tmp_path / "ref", "missed", ref[..., None], SLICE)
    save(tmp_path / "pred", "missed", np.zeros_like(ref)[..., None], SLICE)
    result = evaluate_folders(tmp_path / "pred", tmp_path / "ref", tolerance_mm=1.0)
    hd95, nsd = _monai_2d(pred, ref)
    assert nsd < 0.2  # contours 3 mm apart: before, every pixel of the one slice was "surface" (NSD 0.9)
    np.testing.assert_allclose([result.hd95[0, 0], result.nsd[0, 0]], [hd95, nsd], rtol=1e-5)
    assert result.hd95[1, 0] == pytest.approx(math.hypot(48 * 0.8, 48 * 1.3))  # not the 999 mm slice's diagonal


def test_the_mean_foreground_dice_is_nnunets_mean_of_class_means(tmp_path: Path) -> None:
    ref_a, ref_b = np.zeros((16, 12, 10), np.uint8), np.zeros((16, 12, 10), np.uint8)
    ref_a[2:8, 2:8, 2:8] = 1  # class 2 absent from both prediction and reference of case a
    ref_b[2:8, 2:8, 2:8], ref_b[10:14, 2:6, 2:6] = 1, 2
    pred_b = ref_b.copy()
    pred_b[2:8, 2:8, 5:8] = 0  # class 1 half found: Dice 2·108/(216+108)
    pred_b[pred_b == 2] = 0  # class 2 missed: Dice 0
    for name, ref, pred in (("a", ref_a, ref_a), ("b", ref_b, pred_b)):
        save(tmp_path / "ref", name, ref)
        save(tmp_path / "pred", name, pred)
    console = Console(file=io.StringIO(), width=200)
    result = run_evaluation(tmp_path / "pred", tmp_path / "ref", console=console)
    half = 2 * 108 / (216 + 108)
    expected = ((1.0 + half) / 2 + 0.0) / 2  # class means (1 + half)/2 and 0; pooled cells would give (1 + half)/3
    assert result.mean == pytest.approx(expected)
    assert f"mean foreground Dice {expected:.4f}" in console.file.getvalue()
    assert f"- Mean foreground Dice: {expected:.4f}" in (tmp_path / "pred" / "evaluation.md").read_text()


def test_class_names_come_from_an_nnunet_v2_dataset_json(tmp_path: Path) -> None:
    labels = np.zeros((16, 12, 10), np.uint8)
    labels[2:6, 2:6, 2:6], labels[8:12, 6:10, 4:8] = 1, 2
    save(tmp_path / "ds" / "labelsTr", "c", labels)
    save(tmp_path / "pred", "c", labels)
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumour": 2}}))
    result = evaluate_folders(tmp_path / "pred", tmp_path / "ds" / "labelsTr")
    assert result.class_names == ["liver", "tumour"]  # before: "class 1", "class 2" (MSD's index → name only)


def _same_labels(tmp_path: Path, names: tuple[str, ...]) -> np.ndarray:
    """One labelled cube saved under each name as both reference and prediction."""
    labels = np.zeros((16, 12, 10), np.uint8)
    labels[2:6, 2:6, 2:6] = 1
    for name in names:
        save(tmp_path / "ref", name, labels)
        save(tmp_path / "pred", name, labels)
    return labels


def test_a_case_id_several_files_share_is_a_problem_not_a_guess(tmp_path: Path) -> None:
    labels = _same_labels(tmp_path, ("dup", "other"))
    nib.save(nib.Nifti1Image(np.zeros_like(labels), np.diag([2.0, 1.0, 3.0, 1.0])), tmp_path / "pred" / "dup.nii")
    result = evaluate_folders(tmp_path / "pred", tmp_path / "ref")
    assert result.case_ids == ["other"]  # before: dup.nii.gz scored silently, dup.nii (a stale copy) ignored
    assert result.problems == [f"{tmp_path / 'pred'}: dup.nii and dup.nii.gz are all case dup; not scored — keep one "
                               "of them"]


def test_a_case_called_mean_is_refused_as_the_name_of_the_summary_rows(tmp_path: Path) -> None:
    _same_labels(tmp_path, ("mean", "other"))
    result = run_evaluation(tmp_path / "pred", tmp_path / "ref", console=Console(file=io.StringIO()))
    assert result.case_ids == ["other"]
    assert result.problems == [f"{tmp_path / 'pred' / 'mean.nii.gz'}: case id 'mean' names the CSV's per-class mean "
                               "rows; not scored — rename the prediction and reference files"]
    assert [row["case"] for row in read_rows(tmp_path / "pred" / "evaluation.csv")] == ["other", "mean"]
