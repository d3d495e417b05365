"""segkit predict and the readers against nibabel / SimpleITK on headers that readers treat differently: an sform
whose voxel size is not the header's pixdim, images with a trailing axis of length 1 in NIfTI, MHA and NRRD, and
a gzip-compressed NIfTI named .nii."""

from __future__ import annotations

import shutil
from pathlib import Path

import monai.transforms as mt
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from segkit.data.host_loading import load_channel_first
from segkit.data.transforms import readers
from segkit.io.sitk_reader import ras_affine
from tests.cli_run import run_cli

_c, _s = np.cos(0.3), np.sin(0.3)
OBLIQUE = np.eye(4)
OBLIQUE[:3, :3] = np.array([[_c, -_s, 0], [_s, _c, 0], [0, 0, 1]]) @ np.diag([0.9, 0.8, 2.5])
OBLIQUE[:3, 3] = [-10.0, 20.0, 30.0]


def _sform_with_own_pixdim(path: Path, qform_code: int) -> Path:
    """An oblique sform (code 2) whose voxel sizes are not pixdim (left at 1 mm, as a tool filling in only the
    sform leaves it); the qform, coded or not, is then the identity."""
    data = np.random.default_rng(3).random((12, 10, 6)).astype(np.float32)
    image = nib.Nifti1Image(data, None)
    image.set_sform(OBLIQUE, code=2)
    image.set_qform(np.eye(4), code=qform_code)
    nib.save(image, str(path))
    return path


@pytest.mark.parametrize("qform_code", [0, 1])
def test_an_sform_with_a_pixdim_of_its_own_is_read_as_nibabel_reads_it(tmp_path: Path, qform_code: int) -> None:
    """MONAI's NibabelReader replaces such an sform by the qform (the identity here): the network would see 1 mm
    voxels at the origin, and the saved probabilities an affine other than the label map's."""
    path = _sform_with_own_pixdim(tmp_path / "image.nii.gz", qform_code)
    expected = nib.load(str(path)).affine
    assert np.allclose(expected, OBLIQUE, atol=1e-5)
    predicted = load_channel_first(str(path), readers())  # segkit predict
    assert np.allclose(predicted.meta["original_affine"], expected, atol=1e-5)
    trained = mt.LoadImaged("image", reader=readers(), image_only=True)({"image": str(path)})["image"]  # training
    assert np.allclose(trained.affine, expected, atol=1e-5)


def _singleton(tmp_path: Path, tiny_dataset: Path) -> dict[str, Path]:
    """One phantom as (X, Y, Z, 1) NIfTI, MHA and NRRD, on an oblique grid."""
    source = nib.load(str(tiny_dataset / "imagesTr" / "phantom_000.nii.gz"))
    data = np.asarray(source.dataobj)[..., None]
    folder = tmp_path / "in"
    folder.mkdir()
    nib.save(nib.Nifti1Image(data, OBLIQUE), str(folder / "nifti.nii.gz"))
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.T), isVector=False)  # size (X, Y, Z, 1)
    image.SetSpacing((0.9, 0.8, 2.5, 1.0))
    image.SetOrigin((10.0, -20.0, 30.0, 0.0))
    direction = np.eye(4)
    direction[:3, :3] = [[_c, -_s, 0], [_s, _c, 0], [0, 0, 1]]
    image.SetDirection(direction.ravel().tolist())
    for name in ("meta.mha", "raster.nrrd"):
        sitk.WriteImage(image, str(folder / name), True)
    return {path.name: path for path in folder.iterdir()}


def test_images_with_a_trailing_axis_of_one_are_predicted_on_their_exact_grid(
        random_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    """(X, Y, Z, 1) inputs: MHA and NRRD failed (MONAI: "axcodes must match data_array spatially"); the NIfTI's
    label map lost its fourth axis. Now each label map has its input's size, spacing, origin and direction, and the
    probabilities the input's 3D RAS affine."""
    inputs = _singleton(tmp_path, tiny_dataset)
    done = run_cli("predict", "--checkpoint", random_checkpoint, "--device", "cpu", "--input", "in", "--output", "out",
                   "--save-probabilities", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name, source in inputs.items():
        reference, written = sitk.ReadImage(str(source)), sitk.ReadImage(str(tmp_path / "out" / name))
        assert written.GetSize() == reference.GetSize()  # ITK reads the NIfTI as (X, Y, Z): nibabel checks it below
        assert name.endswith(".nii.gz") or written.GetSize() == (40, 40, 16, 1)
        for field in ("GetSpacing", "GetOrigin", "GetDirection"):
            assert np.allclose(getattr(written, field)(), getattr(reference, field)(), atol=1e-5), (name, field)
        saved = np.load(tmp_path / "out" / f"{name.split('.')[0]}.probabilities.npz", allow_pickle=False)
        assert saved["probabilities"].shape == (4, 40, 40, 16)
        assert np.allclose(saved["affine"], ras_affine(reference), atol=1e-5)
    nifti = nib.load(str(tmp_path / "out" / "nifti.nii.gz"))
    assert nifti.shape == (40, 40, 16, 1) and np.allclose(nifti.affine, OBLIQUE, atol=1e-5)


def test_a_gzipped_nifti_named_nii_fails_alone_with_the_fix(random_checkpoint: Path, tiny_dataset: Path,
                                                             tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    shutil.copy(tiny_dataset / "imagesTr" / "phantom_000.nii.gz", tmp_path / "in" / "good.nii.gz")
    shutil.copy(tiny_dataset / "imagesTr" / "phantom_001.nii.gz", tmp_path / "in" / "packed.nii")
    done = run_cli("predict", "--checkpoint", random_checkpoint, "--device", "cpu", "--input", "in", "--output", "out",
                   cwd=tmp_path)
    assert done.returncode == 1 and "1 written, 0 skipped, 1 failed" in done.stdout
    assert "packed.nii: a gzip-compressed NIfTI named .nii — rename it to .nii.gz, or decompress it with gunzip" \
        in done.stderr
