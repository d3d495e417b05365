"""Synthetic phantoms: structure, geometry variety, labels and byte-exact determinism."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from segkit.data.synth import make_case, write_dataset
from segkit.errors import SegkitError
from tests.conftest import TINY_SIZE


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path: Path, tiny_dataset: Path) -> None:
    again = tmp_path / "again"
    write_dataset(again, cases=5, seed=7, size_dhw=TINY_SIZE, test_cases=1)
    assert _digest(again) == _digest(tiny_dataset)


def test_other_seed_gives_other_images(tmp_path: Path, tiny_dataset: Path) -> None:
    other = tmp_path / "other"
    write_dataset(other, cases=5, seed=8, size_dhw=TINY_SIZE, test_cases=1)
    assert _digest(other)["imagesTr/phantom_000.nii.gz"] != _digest(tiny_dataset)["imagesTr/phantom_000.nii.gz"]


def test_msd_layout_and_manifest(tiny_dataset: Path) -> None:
    manifest = json.loads((tiny_dataset / "dataset.json").read_text())
    assert manifest["numTraining"] == 4 and manifest["numTest"] == 1
    assert set(manifest["labels"]) == {"0", "1", "2", "3"}
    for item in manifest["training"]:
        assert (tiny_dataset / item["image"]).is_file() and (tiny_dataset / item["label"]).is_file()
    held_out = Path(manifest["test"][0]).name
    assert (tiny_dataset / "labelsTs" / held_out).is_file()


def test_images_have_real_anisotropic_varied_geometry(tiny_dataset: Path) -> None:
    directions = []
    for index in range(3):
        image = sitk.ReadImage(str(tiny_dataset / "imagesTr" / f"phantom_{index:03d}.nii.gz"))
        label = sitk.ReadImage(str(tiny_dataset / "labelsTr" / f"phantom_{index:03d}.nii.gz"))
        assert image.GetSize() == TINY_SIZE[::-1]
        assert image.GetPixelID() == sitk.sitkInt16 and label.GetPixelID() == sitk.sitkUInt8
        spacing = image.GetSpacing()
        assert spacing[2] > 1.5 * spacing[0]  # anisotropic slices
        np.testing.assert_allclose(label.GetSpacing(), spacing)
        np.testing.assert_allclose(label.GetDirection(), image.GetDirection())
        np.testing.assert_allclose(label.GetOrigin(), image.GetOrigin())
        directions.append(np.asarray(image.GetDirection()).reshape(3, 3))
    np.testing.assert_allclose(directions[0], np.eye(3), atol=1e-9)  # LPS
    np.testing.assert_allclose(directions[1], np.diag([-1.0, -1.0, 1.0]), atol=1e-9)  # RAS
    assert np.abs(directions[2] - np.round(directions[2])).max() > 0.05  # oblique
    np.testing.assert_allclose(directions[2] @ directions[2].T, np.eye(3), atol=1e-6)


def test_every_tiny_case_has_three_foreground_classes(tiny_dataset: Path) -> None:
    for path in sorted((tiny_dataset / "labelsTr").glob("*.nii.gz")):
        counts = np.bincount(sitk.GetArrayFromImage(sitk.ReadImage(str(path))).ravel())
        assert len(counts) == 4 and (counts[1:] > 0).all(), path


@pytest.mark.parametrize("index", [0, 1, 2])
def test_default_size_structures_differ_in_size_and_shape(index: int) -> None:
    _, label_image = make_case(seed=0, index=index, size_dhw=(32, 96, 96))
    label = sitk.GetArrayFromImage(label_image)
    counts = np.bincount(label.ravel(), minlength=4)
    assert counts[1] > 4 * counts[2] and counts[1] > 4 * counts[3]  # a large organ, small vessel and lesions
    vessel_slices = np.count_nonzero((label == 2).any(axis=(1, 2)))
    assert vessel_slices >= 30  # the tube runs through the volume
    _, lesions = ndimage.label(label == 3)
    assert 2 <= lesions <= 6  # a few separate lesions (the vessel may split one)


def test_intensities_differ_between_structures(tiny_dataset: Path) -> None:
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(tiny_dataset / "imagesTr" / "phantom_000.nii.gz")))
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(tiny_dataset / "labelsTr" / "phantom_000.nii.gz")))
    organ, vessel, lesion = (np.median(image[label == k]) for k in (1, 2, 3))
    tissue = np.median(image[(label == 0) & (image > 0) & (image < 80)])
    assert vessel > organ + 50 and lesion < organ - 80 and lesion < tissue - 30


def test_non_empty_output_folder_is_refused(tiny_dataset: Path) -> None:
    with pytest.raises(SegkitError, match="not empty"):
        write_dataset(tiny_dataset, cases=5, seed=7, size_dhw=TINY_SIZE)


def test_classes_knob_limits_the_labelled_structures(tmp_path: Path) -> None:
    from segkit.data.synth import Style

    manifest = write_dataset(tmp_path / "two", cases=2, seed=0, size_dhw=TINY_SIZE, style=Style(classes=2))
    assert manifest["labels"] == {"0": "background", "1": "organ", "2": "vessel"}
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "two" / "labelsTr" / "phantom_000.nii.gz")))
    assert set(np.unique(label)) == {0, 1, 2}


def test_difficulty_adds_noise_and_lowers_contrast() -> None:
    from segkit.data.synth import Style

    def contrast_and_noise(style: Style) -> tuple[float, float]:
        image, label = (sitk.GetArrayFromImage(i) for i in make_case(0, 0, (32, 96, 96), style))
        organ = image[label == 1].astype(float)
        tissue = image[(label == 0) & (image > -60) & (image < 150)].astype(float)
        return np.median(organ) - np.median(tissue), organ.std()

    easy, hard = contrast_and_noise(Style()), contrast_and_noise(Style(difficulty=1.0))
    assert hard[0] < easy[0] - 30 and hard[1] > easy[1] + 10


SMALL = (4, 16, 16)
LAYOUTS = {"msd": {}, "nnunet": {"layout": "nnunet", "channels": 2}, "folder": {"layout": "folder", "dims": 2}}


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_the_record_lists_exactly_the_files_synth_wrote(tmp_path: Path, layout: str) -> None:
    from segkit.data.synth_files import RECORD

    write_dataset(tmp_path / "d", cases=3, seed=0, size_dhw=SMALL, **LAYOUTS[layout])
    record = json.loads((tmp_path / "d" / RECORD).read_text())
    assert record["written_by"] == "segkit data synth" and len(record["files"]) >= 6
    assert set(record["files"]) | {RECORD} == _files(tmp_path / "d")


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_overwrite_removes_the_earlier_cases_and_keeps_user_files(tmp_path: Path, layout: str) -> None:
    from segkit.data.index import load_dataset

    root = tmp_path / "d"
    write_dataset(root, cases=8, seed=0, size_dhw=SMALL, **LAYOUTS[layout])
    images = root / ("images" if layout == "folder" else "imagesTr")
    (root / "notes.txt").write_text("mine")
    (images / "mine.txt").write_text("mine too")
    write_dataset(root, cases=3, seed=1, size_dhw=SMALL, overwrite=True, **LAYOUTS[layout])
    fresh = tmp_path / "fresh"
    write_dataset(fresh, cases=3, seed=1, size_dhw=SMALL, **LAYOUTS[layout])
    assert _files(root) == _files(fresh) | {"notes.txt", f"{images.name}/mine.txt"}
    assert _digest(root) == {**_digest(fresh), "notes.txt": _digest(root)["notes.txt"],
                             f"{images.name}/mine.txt": _digest(root)[f"{images.name}/mine.txt"]}
    index = load_dataset(root, "folder" if layout == "folder" else layout)
    assert [case.case_id for case in index.training] == ["phantom_000", "phantom_001"]


def test_overwrite_after_switching_layout_leaves_no_old_cases(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write_dataset(root, cases=4, seed=0, size_dhw=SMALL, **LAYOUTS["nnunet"])
    write_dataset(root, cases=2, seed=0, size_dhw=SMALL, overwrite=True)
    assert sorted(p.name for p in (root / "imagesTr").iterdir()) == ["phantom_000.nii.gz"]


def test_overwrite_refuses_a_folder_synth_did_not_write(tmp_path: Path) -> None:
    from segkit.data.synth_files import RECORD

    root = tmp_path / "own"
    (root / "imagesTr").mkdir(parents=True)
    (root / "imagesTr" / "phantom_000.nii.gz").write_text("a user's file with a phantom's name")
    with pytest.raises(SegkitError, match=rf"^{root}: holds files but no {RECORD}, so not a dataset synth wrote"):
        write_dataset(root, cases=2, seed=0, size_dhw=SMALL, overwrite=True)
    (tmp_path / "outside.txt").write_text("keep")
    (root / RECORD).write_text(json.dumps({"written_by": "segkit data synth", "files": ["../outside.txt"]}))
    with pytest.raises(SegkitError, match="not a record 'segkit data synth' wrote"):
        write_dataset(root, cases=2, seed=0, size_dhw=SMALL, overwrite=True)
    assert (tmp_path / "outside.txt").is_file() and _files(root) == {"imagesTr/phantom_000.nii.gz", RECORD}


@pytest.mark.parametrize("layout", ["msd", "folder"])
def test_overwrite_never_writes_through_a_linked_case_folder(tmp_path: Path, layout: str) -> None:
    root, elsewhere = tmp_path / "d", tmp_path / "elsewhere"
    write_dataset(root, cases=3, seed=0, size_dhw=SMALL, **LAYOUTS[layout])
    images = "images" if layout == "folder" else "imagesTr"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("a user's file")
    for path in sorted((root / images).iterdir()):
        path.unlink()
    (root / images).rmdir()
    (root / images).symlink_to(elsewhere, target_is_directory=True)
    write_dataset(root, cases=3, seed=1, size_dhw=SMALL, overwrite=True, **LAYOUTS[layout])
    assert _files(elsewhere) == {"keep.txt"}
    assert not (root / images).is_symlink() and len(list((root / images).iterdir())) >= 2


def test_overwrite_removes_data_checks_report_of_the_replaced_cases_only(tmp_path: Path) -> None:
    from tests.cli_run import run_cli

    root = tmp_path / "d"
    write_dataset(root, cases=4, seed=0, size_dhw=SMALL)
    assert run_cli("data", "check", str(root), cwd=tmp_path).returncode == 0
    report = root / "segkit_fingerprint.json"
    assert json.loads(report.read_text())["cases_checked"] == 4
    write_dataset(root, cases=3, seed=5, size_dhw=SMALL, overwrite=True)
    assert not report.exists()  # before: it stayed, describing the 4 cases just replaced
    report.write_text('{"mine": true}')  # a file of the user's under that name stays
    write_dataset(root, cases=3, seed=6, size_dhw=SMALL, overwrite=True)
    assert report.read_text() == '{"mine": true}'
