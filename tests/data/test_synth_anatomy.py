"""Synthetic phantoms show the same anatomy in patient space whatever their stored voxel order.

Each case is stored as LPS, RAS or oblique; read back in world (RAS) coordinates with nibabel, the spine
is posterior of the body's centre, the organ and its lesions right and anterior, and the vessel left, in
every case. (Drawing the anatomy in voxel space and attaching the direction afterwards mirrored the
RAS-stored and oblique cases: spine in front, organ on the other side.)
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from segkit.data import synth
from segkit.data.synth import Geometry, make_case, write_dataset

SIZE = (20, 48, 48)
# sign of (centroid - body centroid) along RAS x (+: towards the patient's right) and RAS y (+: anterior)
SIDES = {1: (1, 1), 2: (-1, -1), 3: (1, 1)}  # organ and its lesions right anterior; vessel left, by the spine


def _centroid(affine: np.ndarray, mask: np.ndarray) -> np.ndarray:
    index = np.argwhere(mask)
    assert len(index), "empty mask"
    return nib.affines.apply_affine(affine, index).mean(axis=0)


def _world_anatomy(image_path: Path, label_path: Path) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Bone centroid and each label's centroid, in RAS mm relative to the body's centroid."""
    image, label = nib.load(image_path), nib.load(label_path)
    np.testing.assert_allclose(image.affine, label.affine)
    array, labels = np.asarray(image.dataobj), np.asarray(label.dataobj)
    body = _centroid(image.affine, array > -500)
    bone = _centroid(image.affine, array > 400) - body
    return bone, {k: _centroid(label.affine, labels == k) - body for k in (1, 2, 3) if (labels == k).any()}


def _kind(affine: np.ndarray) -> str:
    axes = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    if np.abs(axes - np.round(axes)).max() > 0.05:
        return "oblique"
    return "".join("RAS"[i] if axes[i, i] > 0 else "LPI"[i] for i in range(3))  # nibabel's axis codes


@pytest.fixture(scope="module", params=[0, 5])
def phantoms(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Path]]:
    root = tmp_path_factory.mktemp(f"anatomy{request.param}")
    write_dataset(root, cases=9, seed=request.param, size_dhw=SIZE, test_cases=3)  # three of each direction
    images = sorted(root.glob("imagesT*/*.nii.gz"))
    return [(path, root / path.parent.name.replace("images", "labels") / path.name) for path in images]


def test_the_phantoms_cover_every_stored_orientation(phantoms: list[tuple[Path, Path]]) -> None:
    kinds = [_kind(nib.load(image).affine) for image, _ in phantoms]
    assert {"LPS", "RAS", "oblique"} <= set(kinds), kinds  # LPS-stored reads as L,P,S; RAS-stored as R,A,S


def test_spine_is_posterior_in_world_space_in_every_case(phantoms: list[tuple[Path, Path]]) -> None:
    for image, label in phantoms:
        bone, _ = _world_anatomy(image, label)
        assert bone[1] < -5.0, (image.name, _kind(nib.load(image).affine), bone)  # RAS y: posterior is smaller


def test_each_structure_is_on_the_same_patient_side_in_every_case(phantoms: list[tuple[Path, Path]]) -> None:
    sides: dict[int, set[tuple[int, int]]] = {}
    for image, label in phantoms:
        _, centroids = _world_anatomy(image, label)
        assert set(centroids) == {1, 2, 3}, image.name
        for k, offset in centroids.items():
            sides.setdefault(k, set()).add((int(np.sign(offset[0])), int(np.sign(offset[1]))))
    assert sides == {k: {side} for k, side in SIDES.items()}, sides


def test_two_dimensional_slices_show_the_anatomy_the_same_way_up(tmp_path: Path) -> None:
    """PNG slices have no patient frame: every case is shown in the radiological view (anterior at the top,
    the patient's right on the image's left), whatever the stored direction of the volume it was cut from."""
    write_dataset(tmp_path / "d", cases=6, seed=0, size_dhw=SIZE, layout="folder", dims=2)
    pngs = sorted((tmp_path / "d").glob("images*/*.png"))
    assert len(pngs) == 6
    for png in pngs:
        grey = sitk.GetArrayFromImage(sitk.ReadImage(str(png)))
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(png.parent.parent / png.parent.name.replace(
            "images", "labels") / png.name)))
        body = np.argwhere(grey > 0).mean(axis=0)  # row, column
        spine = np.argwhere(grey == 255).mean(axis=0) - body  # bone (> 300 HU) saturates the window
        organ = np.argwhere(labels == 1).mean(axis=0) - body
        assert spine[0] > 3 and abs(spine[1]) < 2, (png.name, spine)  # posterior: at the bottom, centred
        assert organ[0] < 0 and organ[1] < 0, (png.name, organ)  # anterior (top), patient's right (image left)


@pytest.mark.parametrize("direction", [
    (0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0),  # voxel x runs superior, y left, z posterior
    (0.0, 0.0, -1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 0.0),  # voxel x anterior, y superior, z right
])
def test_a_permuted_voxel_order_stores_the_same_anatomy(monkeypatch: pytest.MonkeyPatch, direction: tuple) -> None:
    """A z-first or otherwise permuted direction stores the canonical (LPS-ordered) arrays permuted and
    flipped to match: reoriented to LPS they are the very arrays an LPS-stored case of the same draws holds."""
    matrix = np.reshape(direction, (3, 3))
    spacing = tuple(2.5 if np.argmax(np.abs(matrix[:, j])) == 2 else 0.8 for j in range(3))
    size_dhw = tuple(SIZE[0] if s == 2.5 else SIZE[1] for s in spacing)[::-1]
    monkeypatch.setattr(synth, "_geometry", lambda rng, index, size: Geometry(spacing, (0.0, 0.0, 0.0), direction))
    image, label = make_case(0, 1, size_dhw)
    assert sitk.GetArrayFromImage(image).shape == size_dhw
    monkeypatch.setattr(synth, "_geometry", lambda rng, index, size: Geometry(
        (0.8, 0.8, 2.5), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel())))
    lps_image, lps_label = make_case(0, 1, SIZE)
    for stored, lps in ((image, lps_image), (label, lps_label)):
        reoriented = sitk.DICOMOrient(stored, "LPS")
        np.testing.assert_allclose(reoriented.GetSpacing(), lps.GetSpacing())
        np.testing.assert_array_equal(sitk.GetArrayFromImage(reoriented), sitk.GetArrayFromImage(lps))
