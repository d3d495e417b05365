"""``segkit data convert``: voxel- and geometry-exact nnU-Net v2 output from every layout, checked against nibabel and
SimpleITK reading the sources; dataset.json; refusals; a bad case among good ones."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from segkit.data.convert import label_map
from segkit.data.index import load_dataset
from segkit.data.synth import write_dataset
from segkit.errors import DataError
from tests.cli_run import run_cli

SIZE = (6, 18, 20)  # slices, rows, columns: small, anisotropic, not square
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _convert(source: Path, output: Path, *extra: str):
    return run_cli("data", "convert", "--input", source, "--output", output, *extra, cwd=output.parent)


def _ids(root: Path, layout: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    index = load_dataset(root, layout)
    return ([(c.case_id, c.label is not None) for c in index.training],
            [(c.case_id, c.label is not None) for c in index.test])


def _sitk_affine(image: sitk.Image) -> np.ndarray:
    """The oracle for SimpleITK sources: SimpleITK's LPS geometry as a RAS affine, built here, not by segkit."""
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ affine


def _assert_same_nifti(source: Path, converted: Path) -> None:
    """Stored values, dtype, affine, qform/sform and their codes as nibabel reads them."""
    src, out = nib.load(str(source)), nib.load(str(converted))
    assert isinstance(out, nib.Nifti1Image) and converted.name.endswith(".nii.gz")
    assert out.get_data_dtype() == src.get_data_dtype()
    np.testing.assert_array_equal(np.asanyarray(out.dataobj), np.asanyarray(src.dataobj))
    np.testing.assert_allclose(out.affine, src.affine, rtol=0, atol=1e-5)
    for form in ("qform", "sform"):
        assert int(out.header[f"{form}_code"]) == int(src.header[f"{form}_code"])
        np.testing.assert_allclose(getattr(out.header, f"get_{form}")(), getattr(src.header, f"get_{form}")(),
                                   rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def msd(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A synthetic MSD dataset (LPS, RAS and oblique cases; one held out with its label) and its conversion."""
    root = tmp_path_factory.mktemp("convert_msd")
    write_dataset(root / "src", cases=4, seed=11, size_dhw=SIZE, test_cases=1)
    result = _convert(root / "src", root / "out")
    assert result.returncode == 0, result.stderr
    assert "converted 4 of 4 case(s) (3 training, 1 test), 0 failed" in result.stdout
    return root / "src", root / "out"


def test_msd_cases_keep_voxels_dtype_and_geometry(msd: tuple[Path, Path]) -> None:
    src, out = msd
    for split in ("Tr", "Ts"):
        for image in sorted((src / f"images{split}").glob("*.nii.gz")):
            case = image.name.removesuffix(".nii.gz")
            _assert_same_nifti(image, out / f"images{split}" / f"{case}_0000.nii.gz")
            _assert_same_nifti(src / f"labels{split}" / image.name, out / f"labels{split}" / image.name)
            assert nib.load(str(out / f"labels{split}" / image.name)).get_data_dtype() == np.uint8
    assert len(list((out / "imagesTr").iterdir())) == 3 and len(list((out / "imagesTs").iterdir())) == 1


def test_msd_dataset_json_is_nnunet_v2(msd: tuple[Path, Path]) -> None:
    manifest = json.loads((msd[1] / "dataset.json").read_text())
    assert manifest["channel_names"] == {"0": "CT"}
    assert manifest["labels"] == {"background": 0, "organ": 1, "vessel": 2, "lesion": 3}
    assert manifest["numTraining"] == 3 and manifest["file_ending"] == ".nii.gz"
    assert manifest["name"] == "segkit-phantoms"
    assert "training" not in manifest and "modality" not in manifest


def test_converted_dataset_passes_check_and_lists_the_same_cases(msd: tuple[Path, Path]) -> None:
    src, out = msd
    check = run_cli("data", "check", "--format", "nnunet", out, cwd=out.parent)
    assert check.returncode == 0, check.stdout + check.stderr
    assert _ids(out, "nnunet") == _ids(src, "msd")


def _write_nifti(path: Path, array: np.ndarray, affine: np.ndarray, codes=(2, 4), scaling=None) -> None:
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=codes[0])
    image.set_sform(affine, code=codes[1])
    if scaling is not None:
        image.header.set_slope_inter(*scaling)
    nib.save(image, str(path))


def _oblique_affine() -> np.ndarray:
    angle = np.radians(17.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 0.9, 2.5])
    affine[:3, 3] = [-12.5, 30.25, -7.0]
    return affine


def test_msd_4d_image_is_split_into_channel_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    src = tmp_path / "src"
    (src / "imagesTr").mkdir(parents=True)
    (src / "labelsTr").mkdir()
    affine = _oblique_affine()
    image = rng.integers(0, 4000, size=(9, 7, 5, 2)).astype(np.uint16)  # stored uint16, scaled to signed values
    _write_nifti(src / "imagesTr" / "brain_001.nii.gz", image, affine, scaling=(0.5, -1024.0))
    label = rng.integers(0, 4, size=(9, 7, 5)).astype(np.float32)  # float labels become uint8
    _write_nifti(src / "labelsTr" / "brain_001.nii.gz", label, affine)
    (src / "dataset.json").write_text(json.dumps({
        "name": "Brain", "modality": {"0": "FLAIR", "1": "T1w"}, "labels": {"0": "bg", "1": "edema", "3": "tumour"},
        "training": [{"image": "./imagesTr/brain_001.nii.gz", "label": "./labelsTr/brain_001.nii.gz"}], "test": []}))

    result = _convert(src, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    source = nib.load(str(src / "imagesTr" / "brain_001.nii.gz"))
    for channel in range(2):
        converted = nib.load(str(out / "imagesTr" / f"brain_001_{channel:04d}.nii.gz"))
        assert converted.shape == (9, 7, 5) and converted.get_data_dtype() == np.uint16
        np.testing.assert_array_equal(converted.dataobj.get_unscaled(), image[..., channel])
        np.testing.assert_array_equal(converted.get_fdata(), source.get_fdata()[..., channel])
        np.testing.assert_allclose(converted.affine, affine, rtol=0, atol=1e-5)
        assert (int(converted.header["qform_code"]), int(converted.header["sform_code"])) == (2, 4)
    written_label = nib.load(str(out / "labelsTr" / "brain_001.nii.gz"))
    assert written_label.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(written_label.dataobj), label.astype(np.uint8))
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["channel_names"] == {"0": "FLAIR", "1": "T1w"}
    assert manifest["labels"] == {"background": 0, "edema": 1, "label_2": 2, "tumour": 3}
    assert not (out / "imagesTs").exists()
    assert run_cli("data", "check", out, cwd=tmp_path).returncode == 0


def _sitk_case(array_zyx: np.ndarray, spacing, origin, direction) -> sitk.Image:
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def test_nrrd_and_mha_folder_cases_are_exact_against_simpleitk(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    oblique = _oblique_affine()[:3, :3] / np.array([0.8, 0.9, 2.5])
    cases = {"knee.nrrd": (np.int16, (0.7, 0.6, 3.0), (10.5, -20.0, 33.3), tuple(oblique.ravel())),
             "hip.mha": (np.float32, (1.1, 1.1, 2.0), (-5.0, 7.5, 0.0), (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))}
    for name, (dtype, spacing, origin, direction) in cases.items():
        array = (rng.normal(size=(5, 8, 11)) * 300).astype(dtype)
        sitk.WriteImage(_sitk_case(array, spacing, origin, direction), str(src / "images" / name))
        label = (rng.random((5, 8, 11)) * 3).astype(np.uint8)
        sitk.WriteImage(_sitk_case(label, spacing, origin, direction), str(src / "labels" / name))

    result = _convert(src, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    for name, (dtype, *_) in cases.items():
        case = name.split(".")[0]
        for source, converted in ((src / "images" / name, out / "imagesTr" / f"{case}_0000.nii.gz"),
                                  (src / "labels" / name, out / "labelsTr" / f"{case}.nii.gz")):
            reference, written = sitk.ReadImage(str(source)), nib.load(str(converted))
            np.testing.assert_array_equal(np.asanyarray(written.dataobj), sitk.GetArrayFromImage(reference).T)
            np.testing.assert_allclose(written.affine, _sitk_affine(reference), rtol=0, atol=1e-5)
            back = sitk.ReadImage(str(converted))
            np.testing.assert_allclose(back.GetOrigin(), reference.GetOrigin(), atol=1e-5)
            np.testing.assert_allclose(back.GetDirection(), reference.GetDirection(), atol=1e-5)
        assert nib.load(str(out / "imagesTr" / f"{case}_0000.nii.gz")).get_data_dtype() == dtype
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["channel_names"] == {"0": "channel_0"}
    assert manifest["labels"] == {"background": 0, "label_1": 1, "label_2": 2}
    assert run_cli("data", "check", "--format", "nnunet", out, cwd=tmp_path).returncode == 0
    assert _ids(out, "nnunet") == _ids(src, "folder")


def test_png_cases_become_one_slice_nifti_and_rgb_is_split(tmp_path: Path) -> None:
    write_dataset(tmp_path / "grey", cases=3, seed=2, size_dhw=SIZE, test_cases=1, layout="folder", dims=2)
    result = _convert(tmp_path / "grey", tmp_path / "grey_out")
    assert result.returncode == 0, result.stderr
    png = sitk.ReadImage(str(tmp_path / "grey" / "images" / "phantom_000.png"))
    converted = nib.load(str(tmp_path / "grey_out" / "imagesTr" / "phantom_000_0000.nii.gz"))
    assert converted.shape == (*png.GetSize(), 1) and converted.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(converted.dataobj)[..., 0], sitk.GetArrayFromImage(png).T)
    assert sitk.ReadImage(str(tmp_path / "grey_out" / "imagesTr" / "phantom_000_0000.nii.gz")).GetSpacing()[2] == 999
    assert run_cli("data", "check", tmp_path / "grey_out", cwd=tmp_path).returncode == 0

    rgb_root = tmp_path / "rgb"
    (rgb_root / "images").mkdir(parents=True)
    (rgb_root / "labels").mkdir()
    rgb = np.random.default_rng(1).integers(0, 255, size=(12, 10, 3)).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(rgb_root / "images" / "photo.png"))
    mask = (rgb[..., 0] > 128).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(mask), str(rgb_root / "labels" / "photo.png"))
    assert _convert(rgb_root, tmp_path / "rgb_out").returncode == 0
    for channel in range(3):
        written = nib.load(str(tmp_path / "rgb_out" / "imagesTr" / f"photo_{channel:04d}.nii.gz"))
        np.testing.assert_array_equal(np.asanyarray(written.dataobj)[..., 0], rgb[..., channel].T)
    assert json.loads((tmp_path / "rgb_out" / "dataset.json").read_text())["channel_names"] == {
        "0": "channel_0", "1": "channel_1", "2": "channel_2"}


def test_folder_test_cases_go_to_images_ts_and_labels_ts(tmp_path: Path) -> None:
    src = tmp_path / "png"
    write_dataset(src, cases=4, seed=3, size_dhw=SIZE, test_cases=2, layout="folder", dims=2)
    (src / "labelsTs" / "phantom_003.png").unlink()  # a held-out case without its reference
    result = _convert(src, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert "converted 4 of 4 case(s) (2 training, 2 test), 0 failed" in " ".join(result.stdout.split())
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == ["phantom_002_0000.nii.gz",
                                                                     "phantom_003_0000.nii.gz"]
    assert sorted(p.name for p in (out / "labelsTs").iterdir()) == ["phantom_002.nii.gz"]
    for source, converted in ((src / "imagesTs" / "phantom_002.png", out / "imagesTs" / "phantom_002_0000.nii.gz"),
                              (src / "labelsTs" / "phantom_002.png", out / "labelsTs" / "phantom_002.nii.gz")):
        np.testing.assert_array_equal(np.asanyarray(nib.load(str(converted)).dataobj)[..., 0],
                                      sitk.GetArrayFromImage(sitk.ReadImage(str(source))).T)
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 2
    assert _ids(out, "nnunet") == _ids(src, "folder") == (
        [("phantom_000", True), ("phantom_001", True)], [("phantom_002", True), ("phantom_003", False)])
    assert run_cli("data", "check", out, cwd=tmp_path).returncode == 0


def test_nifti2_source_becomes_nifti1_with_the_same_grid(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    affine = _oblique_affine()
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    for folder, data in (("images", array), ("labels", (array % 3).astype(np.uint8))):
        image = nib.Nifti2Image(data, affine)
        image.set_qform(affine, code=1)
        nib.save(image, str(src / folder / "vol.nii"))
    assert _convert(src, tmp_path / "out").returncode == 0
    written = nib.load(str(tmp_path / "out" / "imagesTr" / "vol_0000.nii.gz"))
    assert type(written) is nib.Nifti1Image
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), array)
    np.testing.assert_allclose(written.affine, affine, rtol=0, atol=1e-5)


def test_nnunet_source_keeps_channel_names_and_test_cases_without_labels(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_dataset(src, cases=3, seed=4, size_dhw=(4, 10, 12), test_cases=1, layout="nnunet", channels=2)
    shutil.rmtree(src / "labelsTs")  # held-out cases without references: images only
    assert _convert(src, tmp_path / "out", "--format", "nnunet", "--workers", "1").returncode == 0
    out = tmp_path / "out"
    for path in sorted((src / "imagesTr").iterdir()) + sorted((src / "imagesTs").iterdir()):
        _assert_same_nifti(path, out / path.parent.name / path.name)
    source_manifest, manifest = (json.loads((root / "dataset.json").read_text()) for root in (src, out))
    assert manifest["channel_names"] == source_manifest["channel_names"] == {"0": "CT", "1": "CT_inverted_1"}
    assert manifest["labels"] == source_manifest["labels"] and manifest["numTraining"] == 2
    assert not (out / "labelsTs").exists()
    assert _ids(out, "nnunet") == _ids(src, "nnunet") and _ids(out, "nnunet")[1] == [("phantom_002", False)]


def test_an_existing_non_empty_output_is_refused_and_left_alone(msd: tuple[Path, Path], tmp_path: Path) -> None:
    output = tmp_path / "taken"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    result = _convert(msd[0], output)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "not empty" in result.stderr
    assert [p.name for p in output.iterdir()] == ["notes.txt"] and (output / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("inside", [".", "converted", "imagesTr/nn"])
def test_an_output_inside_the_input_is_refused(tmp_path: Path, inside: str) -> None:
    src = tmp_path / "src"
    write_dataset(src, cases=2, seed=1, size_dhw=(4, 8, 8), test_cases=1)
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    result = _convert(src, src / inside)
    assert result.returncode == 1 and "inside --input" in result.stderr and result.stderr.count("\n") == 1
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before


def test_bad_cases_are_reported_in_one_line_each_and_the_rest_converted(msd: tuple[Path, Path],
                                                                         tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(msd[0], src)
    broken = src / "imagesTr" / "phantom_000.nii.gz"
    broken.write_bytes(gzip.compress(gzip.decompress(broken.read_bytes())[:600]))  # truncated voxel data
    shifted = src / "labelsTr" / "phantom_001.nii.gz"
    label = nib.load(str(shifted))
    moved = label.affine.copy()
    moved[:3, 3] += 4.0
    nib.save(nib.Nifti1Image(np.asanyarray(label.dataobj), moved, label.header), str(shifted))

    result = _convert(src, tmp_path / "out")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert str(broken) in lines[0] and "phantom_000 skipped" in lines[0]
    assert str(shifted) in lines[1] and "grid differs" in lines[1] and "origin" in lines[1]
    assert "converted 2 of 4 case(s) (1 training, 1 test), 2 failed" in result.stdout.splitlines()[-1]
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == ["phantom_002_0000.nii.gz"]
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == ["phantom_002.nii.gz"]
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 1
    assert run_cli("data", "check", out, cwd=tmp_path).returncode == 0


def test_label_values_become_uint8_or_uint16_and_bad_values_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "label.nii.gz"
    assert label_map(np.array([0.0, 2.0, 255.0]), path, None).dtype == np.uint8
    wide = label_map(np.array([0, 300], dtype=np.int32), path, None)
    assert wide.dtype == np.uint16 and wide.tolist() == [0, 300]
    for values, classes, words in ((np.array([0.0, 1.5]), None, "whole"), (np.array([0.0, np.nan]), None, "whole"),
                                   (np.array([-1, 0]), None, "negative"), (np.array([0, 4]), 4, "0..3"),
                                   (np.array([0, 70000]), None, "65535")):
        with pytest.raises(DataError, match=words) as caught:
            label_map(values, path, classes)
        assert str(path) in str(caught.value)
