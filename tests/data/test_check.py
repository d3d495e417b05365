"""``segkit data check``: every corruption is reported against its file, the fingerprint and the cache."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from rich.console import Console
from segkit.pipelines.data_check import check_dataset, run_data_check

from segkit.data.check import CheckResult, Problem, check_cases
from segkit.data.check_files import fmt
from segkit.data.fingerprint import MAX_FOREGROUND_SAMPLES, CaseStats, compute_fingerprint, sample_foreground
from segkit.data.msd import Case, load_msd
from segkit.data.synth import write_dataset

CACHE_NAME = ".check_cache.json"
NUM_CLASSES = 4
TR = "imagesTr/phantom_000.nii.gz", "labelsTr/phantom_000.nii.gz"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three training phantoms and one test phantom (with its label), seed 1."""
    root = tmp_path_factory.mktemp("check_phantoms")
    write_dataset(root, cases=4, seed=1, size_dhw=(12, 24, 24), test_cases=1)
    return root


@pytest.fixture
def root(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of the phantoms that a test may corrupt."""
    return Path(shutil.copytree(pristine, tmp_path / "dataset"))


def _cases(root: Path) -> list[Case]:
    training, test = load_msd(root)
    return training + test


def _check(root: Path, channels: int | None = 1, **kwargs) -> CheckResult:
    return check_cases(_cases(root), NUM_CLASSES, channels, **kwargs)


def _only_problem(result: CheckResult, path: Path) -> Problem:
    assert [p.file for p in result.problems] == [path.resolve()], [str(p) for p in result.problems]
    return result.problems[0]


def _rewrite(path: Path, change: Callable[[sitk.Image], sitk.Image]) -> None:
    sitk.WriteImage(change(sitk.ReadImage(str(path))), str(path), True)


def _with_array(image: sitk.Image, array: np.ndarray) -> sitk.Image:
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def _shifted(image: sitk.Image, *, spacing=(0, 0, 0), origin=(0, 0, 0)) -> sitk.Image:
    image.SetSpacing(tuple(np.add(image.GetSpacing(), spacing)))
    image.SetOrigin(tuple(np.add(image.GetOrigin(), origin)))
    return image


def _rotated(image: sitk.Image) -> sitk.Image:
    angle = 0.01  # radians: far beyond the 1e-4 direction tolerance
    rot_z = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    image.SetDirection(tuple((rot_z @ np.reshape(image.GetDirection(), (3, 3))).ravel()))
    return image


def _set_voxels(dtype, values: list[float]) -> Callable[[sitk.Image], sitk.Image]:
    def change(image: sitk.Image) -> sitk.Image:
        array = sitk.GetArrayFromImage(image).astype(dtype)
        array.ravel()[: len(values)] = values
        return _with_array(image, array)
    return change


def _nifti_with_dims(path: Path, dims: tuple[int, int, int]) -> None:
    """A valid small NIfTI whose header ``dim`` field is then patched to claim ``dims``."""
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), dtype=np.int16), np.eye(4)), str(path))
    raw = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into("<8h", raw, 40, 3, *dims, 1, 1, 1, 1)  # dim[0..7] sits at byte 40 of the header
    path.write_bytes(gzip.compress(bytes(raw)))


CORRUPTIONS: dict[str, tuple[int, Callable[[Path], None], str]] = {
    # name: (0 = image, 1 = label of case 0, how to corrupt the file, expected message part)
    "shape": (1, lambda p: _rewrite(p, lambda im: im[:20, :, :]),
              "label size 20×24×12 differs from image size 24×24×12"),
    "spacing": (1, lambda p: _rewrite(p, lambda im: _shifted(im, spacing=(0, 0, 0.5))), "label spacing ("),
    "origin": (1, lambda p: _rewrite(p, lambda im: _shifted(im, origin=(0.5, 0, 0))), "label origin ("),
    "direction": (1, lambda p: _rewrite(p, _rotated), "label direction ("),
    "nan": (0, lambda p: _rewrite(p, _set_voxels(np.float32, [np.nan, np.nan, np.inf])),
            "image holds 2 NaN and 1 infinite voxel(s)"),
    "float label": (1, lambda p: _rewrite(p, _set_voxels(np.float32, [0.5, 1.25])),
                    "label voxel type float32 holds non-integer values (0.5, 1.25)"),
    "out of set": (1, lambda p: _rewrite(p, _set_voxels(np.uint8, [7, 9])), "label holds values 7, 9 outside 0..3"),
    "negative": (1, lambda p: _rewrite(p, _set_voxels(np.int16, [-1])), "label holds negative values -1"),
    "4D image": (0, lambda p: _rewrite(p, lambda im: sitk.JoinSeries([im, im])),
                 "image has 2 channel(s) but dataset.json declares 1"),
    "2D image": (0, lambda p: _rewrite(p, lambda im: im[:, :, 0]), "image is 2D (size 24×24)"),
    "zero bytes": (0, lambda p: p.write_bytes(b""), "image file is empty (0 bytes)"),
    "truncated gzip": (1, lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
                       "label gzip data is damaged"),
    "short payload": (0, lambda p: p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:2000])),
                      "image file holds 1648 bytes of pixel data but its header declares 13824"),  # 2000 - 352
    "not an image": (0, lambda p: p.write_text("patient notes, not an image\n"), "image file is not a readable image"),
    "huge axes": (0, lambda p: _nifti_with_dims(p, (30000, 30000, 30000)),
                  "image header declares size 30000×30000×30000"),
    "huge volume": (1, lambda p: _nifti_with_dims(p, (2000, 2000, 1000)), "label header declares size 2000×2000×1000"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_an_error_naming_its_file(root: Path, name: str, monkeypatch) -> None:
    which, corrupt, expected = CORRUPTIONS[name]
    path = root / TR[which]
    corrupt(path)
    pixel_reads: list[str] = []
    read_image = sitk.ReadImage
    monkeypatch.setattr(sitk, "ReadImage", lambda p, *a: pixel_reads.append(p) or read_image(p, *a))
    tracemalloc.start()
    try:
        result = _check(root)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    problem = _only_problem(result, path)
    assert problem.severity == "error" and problem.case_id == "phantom_000" and not result.ok
    assert expected in problem.message and " — " in problem.message, problem.message
    assert result.cases_checked == 4 and [s.case_id for s in result.stats] == ["phantom_001", "phantom_002",
                                                                                 "phantom_003"]
    assert peak < 50 * 2**20  # the huge headers never reach a pixel buffer
    if name.startswith("huge"):
        assert str(path) not in pixel_reads and str(path.resolve()) not in pixel_reads


def test_spacing_message_names_both_spacings(root: Path) -> None:
    label = root / TR[1]
    _rewrite(label, lambda im: _shifted(im, spacing=(0, 0, 0.5)))
    image = sitk.ReadImage(str(root / TR[0]))
    spacing = ", ".join(f"{v:.6g}" for v in image.GetSpacing())
    wrong = ", ".join(f"{v:.6g}" for v in np.add(image.GetSpacing(), (0, 0, 0.5)))
    message = _only_problem(_check(root), label).message
    assert message == (f"label spacing ({wrong}) differs from image spacing ({spacing}) — resample the label onto "
                       "the image grid")


def test_spacing_and_origin_within_tolerance_pass(root: Path) -> None:
    _rewrite(root / TR[1], lambda im: _shifted(im, spacing=(0, 0, 1e-5), origin=(4e-4, 0, 0)))
    assert _check(root).problems == []


def test_4d_image_needs_declared_channels(root: Path) -> None:
    image = root / TR[0]
    _rewrite(image, lambda im: sitk.JoinSeries([im, im]))
    case = _cases(root)[0]
    message = _only_problem(check_cases([case], NUM_CLASSES, None), image).message
    assert message.startswith("image is 4D (size 24×24×12×2) and dataset.json declares no channels — ")
    two = check_cases([case], NUM_CLASSES, 2)
    assert two.problems == [] and len(two.stats[0].foreground_sample) == 2


def test_5d_image_is_not_3d(root: Path) -> None:
    image = root / TR[0]
    nib.save(nib.Nifti1Image(np.zeros((24, 24, 12, 2, 2), dtype=np.int16), np.eye(4)), str(image))
    result = check_cases(_cases(root)[:1], NUM_CLASSES, channels=2)
    assert _only_problem(result, image).message.startswith("image is 5D (size 24×24×12×2×2) — ")


def test_image_with_one_channel_too_few(root: Path) -> None:
    result = check_cases(_cases(root)[:1], NUM_CLASSES, channels=2)
    assert "image has 1 channel(s) but dataset.json declares 2" in _only_problem(result, root / TR[0]).message


def test_missing_label_file_is_an_error_unless_optional(root: Path) -> None:
    image = (root / TR[0]).resolve()
    missing = root / "labelsTr" / "nowhere.nii.gz"
    result = check_cases([Case("a", image, None), Case("b", image, missing)], NUM_CLASSES)
    assert [(p.case_id, p.file) for p in result.problems] == [("a", image), ("b", missing)]
    assert "no label file is listed" in result.problems[0].message
    assert "label file does not exist" in result.problems[1].message
    optional = check_cases([Case("a", image, None)], NUM_CLASSES, optional_labels={"a"})
    assert optional.ok and optional.problems == [] and optional.stats[0].class_counts == {}


def test_empty_label_is_a_warning_and_the_case_still_counts(root: Path) -> None:
    label = root / TR[1]
    _rewrite(label, lambda im: im * 0)
    result = _check(root)
    problem = _only_problem(result, label)
    assert problem.severity == "warning" and "only background" in problem.message
    assert result.ok and len(result.stats) == 4


def test_two_bad_cases_report_every_problem_and_good_cases_make_the_fingerprint(root: Path) -> None:
    label_0, image_1, label_1 = root / TR[1], root / "imagesTr/phantom_001.nii.gz", root / "labelsTr/phantom_001.nii.gz"
    _rewrite(label_0, lambda im: _shifted(_set_voxels(np.uint8, [7])(im), spacing=(0.3, 0, 0), origin=(0, 2, 0)))
    _rewrite(image_1, _set_voxels(np.float32, [np.nan]))
    _rewrite(label_1, _set_voxels(np.int16, [-2, 5]))
    result = _check(root)
    found = [(p.case_id, p.file.name, p.file.parent.name, p.message.split(" (")[0].split(" — ")[0])
             for p in result.problems]
    assert found == [
        ("phantom_000", "phantom_000.nii.gz", "labelsTr", "label holds values 7 outside 0..3"),
        ("phantom_000", "phantom_000.nii.gz", "labelsTr", "label spacing"),
        ("phantom_000", "phantom_000.nii.gz", "labelsTr", "label origin"),
        ("phantom_001", "phantom_001.nii.gz", "imagesTr", "image holds 1 NaN and 0 infinite voxel(s)"),
        ("phantom_001", "phantom_001.nii.gz", "labelsTr", "label holds negative values -2"),
        ("phantom_001", "phantom_001.nii.gz", "labelsTr", "label holds values 5 outside 0..3"),
    ]
    fingerprint = compute_fingerprint(result.stats, NUM_CLASSES)
    good = [sitk.ReadImage(str(root / f"images{s}/phantom_00{i}.nii.gz")) for s, i in (("Tr", 2), ("Ts", 3))]
    assert fingerprint.num_cases == 2
    assert fingerprint.spacing_median == pytest.approx(np.median([im.GetSpacing() for im in good], axis=0).tolist())


def _arrays(root: Path) -> tuple[list[sitk.Image], list[np.ndarray], list[np.ndarray]]:
    images = [sitk.ReadImage(str(case.image)) for case in _cases(root)]
    arrays = [sitk.GetArrayFromImage(image) for image in images]
    labels = [sitk.GetArrayFromImage(sitk.ReadImage(str(case.label))) for case in _cases(root)]
    return images, arrays, labels


def test_fingerprint_matches_direct_computation(root: Path) -> None:
    result = _check(root)
    assert result.ok and result.problems == []
    fingerprint = compute_fingerprint(result.stats, NUM_CLASSES).as_dict()
    assert json.loads(json.dumps(fingerprint)) == fingerprint
    images, arrays, labels = _arrays(root)
    spacing = np.array([image.GetSpacing() for image in images])
    assert fingerprint["num_cases"] == 4
    assert fingerprint["spacing"]["median"] == pytest.approx(np.median(spacing, axis=0).tolist())
    assert fingerprint["spacing"]["p10"] == pytest.approx(np.percentile(spacing, 10, axis=0).tolist())
    assert fingerprint["spacing"]["p90"] == pytest.approx(np.percentile(spacing, 90, axis=0).tolist())
    assert fingerprint["shape"] == {"min": [24, 24, 12], "median": [24.0, 24.0, 12.0], "max": [24, 24, 12]}
    counts = sum(np.bincount(label.ravel(), minlength=NUM_CLASSES) for label in labels)
    assert fingerprint["class_frequency"] == pytest.approx({str(k): counts[k] / counts.sum() for k in range(4)})
    # every case has fewer foreground voxels than the sample cap, so the sample is all of them
    assert all(np.count_nonzero(label) < MAX_FOREGROUND_SAMPLES for label in labels)
    foreground = np.concatenate([a[lab > 0] for a, lab in zip(arrays, labels, strict=True)]).astype(np.float64)
    intensity = fingerprint["intensity"][0]
    assert intensity["samples"] == foreground.size
    assert [intensity[k] for k in ("p0_5", "median", "p99_5")] == pytest.approx(
        np.percentile(foreground, [0.5, 50, 99.5]).tolist())
    assert (intensity["mean"], intensity["std"]) == pytest.approx((foreground.mean(), foreground.std()))


def test_foreground_sample_is_capped_and_seeded() -> None:
    image = np.arange(40 * 40 * 40, dtype=np.float32).reshape(1, 40, 40, 40)
    label = np.ones((40, 40, 40), dtype=np.uint8)
    first = sample_foreground(image, label, "case_a")
    assert len(first[0]) == MAX_FOREGROUND_SAMPLES and len(set(first[0])) == MAX_FOREGROUND_SAMPLES
    assert sample_foreground(image, label, "case_a") == first
    assert sample_foreground(image, label, "case_b") != first


def test_fingerprint_lists_absent_classes_and_survives_json() -> None:
    stats = [CaseStats("a", (1.0, 1.0, 2.0), (10, 10, 5), [[1.0, 3.0]], {0: 3, 1: 1}),
             CaseStats("b", (1.0, 1.0, 4.0), (12, 10, 7), [[]], {})]
    fingerprint = compute_fingerprint(stats, 3)
    assert fingerprint.class_frequency == {0: 0.75, 1: 0.25, 2: 0.0}
    assert fingerprint.shape_median == [11.0, 10.0, 6.0] and fingerprint.spacing_median == [1.0, 1.0, 3.0]
    assert fingerprint.intensity[0].samples == 2 and fingerprint.intensity[0].median == 2.0
    assert CaseStats.from_dict(json.loads(json.dumps(stats[0].as_dict()))) == stats[0]


def test_cache_skips_unchanged_files_and_rechecks_changed_ones(root: Path, monkeypatch) -> None:
    cache = root / CACHE_NAME
    first = _check(root, cache_path=cache)
    reads: list[str] = []
    read_image, header_reader = sitk.ReadImage, sitk.ImageFileReader
    monkeypatch.setattr(sitk, "ReadImage", lambda p, *a: reads.append(Path(p).name) or read_image(p, *a))
    monkeypatch.setattr(sitk, "ImageFileReader", lambda: reads.append("header") or header_reader())
    assert _check(root, cache_path=cache) == first and reads == []

    label = root / TR[1]
    stat = label.stat()
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5 * 10**9))
    assert _check(root, cache_path=cache) == first
    assert sorted(reads) == ["header", "header", "phantom_000.nii.gz", "phantom_000.nii.gz"]

    _rewrite(label, _set_voxels(np.uint8, [7]))
    reads.clear()
    changed = _check(root, cache_path=cache)
    assert "label holds values 7 outside 0..3" in _only_problem(changed, label).message and len(reads) == 4
    reads.clear()
    assert _check(root, cache_path=cache) == changed and reads == []
    assert check_cases(_cases(root), 8, 1, cache_path=cache).ok and len(reads) == 16  # other settings: re-read


def test_run_data_check_prints_and_writes_the_report(root: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (root / "labelsTs" / "phantom_003.nii.gz").unlink()  # a test case without label: checked for the image only
    before = {p.name for p in root.iterdir()}
    out = io.StringIO()
    result = run_data_check(root, console=Console(file=out, width=200))
    assert result.ok and result.cases_checked == 4
    assert len(list((tmp_path / "xdg" / "segkit" / "checks").glob("*.json"))) == 1  # the cache lives outside
    assert {p.name for p in root.iterdir()} - before == {"segkit_fingerprint.json"}  # only the asked-for report
    text = out.getvalue()
    assert "all 4 case(s) passed" in text and "Fingerprint of 3 training case(s)" in text and "class 1 (organ)" in text
    assert "Held-out test cases (1) — for information only" in text
    report = json.loads((root / "segkit_fingerprint.json").read_text())
    assert report["ok"] and report["problems"] == [] and report["image_dims"] == 3
    assert report["fingerprint"]["num_cases"] == 3 and report["test_fingerprint"]["num_cases"] == 1
    assert report["fingerprint"]["intensity"][0]["samples"] > 0
    assert report["test_fingerprint"]["intensity"][0]["samples"] == 0  # its label is gone: no foreground known


def test_run_data_check_reports_problems_to_a_chosen_json(root: Path, tmp_path: Path) -> None:
    _rewrite(root / TR[1], _set_voxels(np.uint8, [9]))
    (root / TR[0]).write_bytes(b"")
    out = io.StringIO()
    result = run_data_check(root, json_out=tmp_path / "report.json", console=Console(file=out, width=250))
    assert not result.ok and len(result.errors) == 2
    text = out.getvalue()
    assert "imagesTr/phantom_000.nii.gz" in text and "label holds values 9 outside 0..3" in text
    assert "2 error(s), 0 warning(s)" in text and "Fingerprint of 2 training case(s)" in text
    report = json.loads((tmp_path / "report.json").read_text())
    assert not report["ok"] and [p["severity"] for p in report["problems"]] == ["error", "error"]
    assert report["fingerprint"]["num_cases"] == 2 and report["test_fingerprint"]["num_cases"] == 1
    assert not (root / "segkit_fingerprint.json").exists()


def test_non_finite_and_truncation_in_other_layouts(root: Path, tmp_path: Path) -> None:
    image = sitk.ReadImage(str(root / TR[0]))
    mha, plain, float_label = tmp_path / "nan.mha", tmp_path / "short.nii", tmp_path / "label.nii.gz"
    sitk.WriteImage(_set_voxels(np.float32, [np.inf])(image), str(mha))  # MHA: SimpleITK keeps Inf
    sitk.WriteImage(image, str(plain))
    plain.write_bytes(plain.read_bytes()[:-10])
    sitk.WriteImage(_set_voxels(np.float32, [np.nan, 1.0])(sitk.ReadImage(str(root / TR[1]))), str(float_label))
    result = check_cases([Case("mha", mha, float_label), Case("plain", plain, root / TR[1])], NUM_CLASSES)
    found = [(p.case_id, p.file.name, p.message.split(" — ")[0]) for p in result.problems]
    assert found == [("mha", "nan.mha", "image holds 0 NaN and 1 infinite voxel(s)"),
                     ("mha", "label.nii.gz", "label holds 1 NaN and 0 infinite voxel(s)"),
                     ("plain", "short.nii", "image file holds 13814 bytes of pixel data but its header declares "
                                            "13824")]


def test_4d_image_with_one_entry_on_the_4th_axis_is_fine(root: Path) -> None:
    image = root / TR[0]
    original = nib.load(str(image))
    data = np.asarray(original.dataobj)[..., None]
    header = original.header.copy()
    header.set_data_shape(data.shape)
    nib.save(nib.Nifti1Image(data, original.affine, header), str(image))
    assert nib.load(str(image)).shape == (24, 24, 12, 1)
    assert check_cases(_cases(root)[:1], NUM_CLASSES, channels=1).problems == []


def _to_nifti2(path: Path) -> None:
    """Rewrite a NIfTI-1 file as NIfTI-2 (same voxels, affine and codes)."""
    image = nib.load(str(path))
    nib.save(nib.Nifti2Image(np.asanyarray(image.dataobj), None, nib.Nifti2Header.from_header(image.header)),
             str(path))


def test_nifti2_files_are_checked_like_nifti1(root: Path) -> None:
    before = _check(root)
    for name in TR:
        _to_nifti2(root / name)
    assert nib.load(str(root / TR[0])).header.sizeof_hdr == 540
    after = _check(root)
    assert after.ok and after.problems == [], [str(p) for p in after.problems]
    fingerprints = [compute_fingerprint(r.stats, NUM_CLASSES).as_dict() for r in (before, after)]
    for key in ("shape", "class_frequency", "intensity", "num_cases"):
        assert fingerprints[1][key] == fingerprints[0][key], key
    assert fingerprints[1]["spacing"]["median"] == pytest.approx(fingerprints[0]["spacing"]["median"])


def test_a_truncated_nifti2_file_is_an_error_naming_it(root: Path) -> None:
    path = root / TR[0]
    _to_nifti2(path)
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) - 500]))
    problem = _only_problem(_check(root), path)
    assert problem.severity == "error" and "pixels cannot be read" in problem.message


@pytest.mark.parametrize("moved", ["sform", "qform"])
def test_qform_and_sform_describing_different_grids_are_refused(root: Path, moved: str) -> None:
    """Either way round, one reader would misalign the image with its label (SimpleITK took the qform here,
    nibabel the sform); a header whose two transforms agree, both codes set, passes."""
    path = root / TR[0]
    image = nib.load(str(path))
    data, affine = np.asarray(image.dataobj), image.affine.copy()
    shifted = affine.copy()
    shifted[0, :] *= -1  # the x axis flipped
    qform, sform = (affine, shifted) if moved == "sform" else (shifted, affine)
    out = nib.Nifti1Image(data, None, image.header)
    out.set_qform(qform, code=1)
    out.set_sform(sform, code=2)
    nib.save(out, path)
    message = _only_problem(_check(root), path).message
    assert message.startswith("image header: qform and sform describe different grids (qform origin (")
    assert message.endswith("save the image with both equal, e.g. in nibabel img.set_qform(img.get_sform()) before "
                            "saving")
    out.set_qform(affine, code=1)
    out.set_sform(affine, code=2)
    nib.save(out, path)
    assert _check(root).problems == []


def test_nnunet_channel_files_are_counted_as_cases(tmp_path: Path) -> None:
    """Each channel file is checked against the first channel, but the summary counts cases."""
    root = tmp_path / "nn"
    write_dataset(root, cases=3, seed=2, size_dhw=(8, 16, 16), test_cases=1, layout="nnunet", channels=2)
    result, fingerprint = check_dataset(root, "nnunet")
    assert result.ok and result.cases_checked == 3 and fingerprint is not None


def test_an_uncompressed_nifti_named_nii_gz_is_refused_with_the_fix(root: Path) -> None:
    path = root / TR[0]
    nib.save(nib.load(str(path)), root / "plain.nii")
    (root / "plain.nii").replace(path)
    message = _only_problem(_check(root), path).message
    assert message == "image file is an uncompressed NIfTI named .nii.gz — rename it to .nii, or compress it with gzip"


def test_a_gzipped_nifti_named_nii_is_refused_with_the_fix(root: Path) -> None:
    manifest = root / "dataset.json"
    manifest.write_text(manifest.read_text(encoding="utf-8").replace(TR[0], TR[0].removesuffix(".gz")),
                        encoding="utf-8")
    path = (root / TR[0]).rename(root / TR[0].removesuffix(".gz"))
    message = _only_problem(_check(root), path).message
    assert message == ("image file is a gzip-compressed NIfTI named .nii — rename it to .nii.gz, or decompress it "
                       "with gunzip")


def test_an_sform_whose_voxel_size_is_not_pixdim_is_refused(root: Path) -> None:
    """SimpleITK took its spacing from pixdim (1 mm) and nibabel from the sform: the fingerprint's spacing was the
    one training does not see. Image and label share the header, so only the header check can tell."""
    for path in (root / TR[0], root / TR[1]):
        image = nib.load(str(path))
        out = nib.Nifti1Image(np.asarray(image.dataobj), None)
        out.set_sform(image.affine, code=2)
        out.set_qform(np.eye(4), code=0)  # the sform alone is coded; pixdim is 1 mm, not the sform's voxel size
        nib.save(out, path)
    spacing = fmt(nib.load(str(root / TR[0])).header.get_zooms())
    assert spacing == "(1, 1, 1)" and sitk.ReadImage(str(root / TR[0])).GetSpacing() == (1.0, 1.0, 1.0)
    problems = _check(root).problems
    assert [p.file for p in problems] == [(root / TR[0]).resolve(), (root / TR[1]).resolve()]
    assert problems[0].message.startswith("image header: the sform's voxel size (0.")
    assert problems[0].message.endswith("e.g. in nibabel img.set_qform(img.get_sform()) before saving")


def test_a_sheared_affine_is_named_with_the_fix(root: Path) -> None:
    """ITK cannot read it ("only supports orthonormal direction cosines"): the error says why and what to do."""
    path = root / TR[0]
    image = nib.load(str(path))
    sheared = image.affine.copy()
    sheared[0, 1] = 0.3  # the x axis leans into y: the voxel axes 0 and 1 are no longer perpendicular
    out = nib.Nifti1Image(np.asarray(image.dataobj), None)
    out.set_sform(sheared, code=2)
    out.header["qform_code"] = 0
    nib.save(out, path)
    message = _only_problem(_check(root), path).message
    assert message.startswith("image header: the affine is sheared (voxel axes 0 and 1 meet at ")
    assert message.endswith("resample the image onto a grid with perpendicular axes, e.g. with nibabel's "
                            "nibabel.processing.resample_from_to")


def test_the_fingerprint_comes_from_the_training_cases_only(root: Path, tmp_path: Path, monkeypatch) -> None:
    """As in nnU-Net: the held-out test case in imagesTs is checked but does not shape the fingerprint."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    training = [sitk.ReadImage(str(p)).GetSpacing() for p in sorted((root / "imagesTr").glob("*.nii.gz"))]
    test = [sitk.ReadImage(str(p)).GetSpacing() for p in sorted((root / "imagesTs").glob("*.nii.gz"))]
    assert np.abs(np.median(training, axis=0) - np.median(training + test, axis=0)).max() > 0.01
    result, fingerprint = check_dataset(root, "msd")
    assert result.ok and result.cases_checked == 4 and fingerprint.num_cases == 3
    assert fingerprint.spacing_median == pytest.approx(np.median(training, axis=0).tolist())


@pytest.fixture(scope="module")
def two_channels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nnU-Net layout, two channel files per case: phantom_000 and _001 for training, phantom_002 held out."""
    root = tmp_path_factory.mktemp("channels") / "nn"
    write_dataset(root, cases=3, seed=2, size_dhw=(8, 16, 16), test_cases=1, layout="nnunet", channels=2)
    return root


def test_a_bad_channel_file_is_named_not_the_label(two_channels: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = Path(shutil.copytree(two_channels, tmp_path / "nn"))
    cropped, garbage = root / "imagesTr/phantom_000_0001.nii.gz", root / "imagesTr/phantom_001_0001.nii.gz"
    moved = root / "imagesTs/phantom_002_0001.nii.gz"
    _rewrite(cropped, lambda im: im[:12, :, :])
    garbage.write_text("not an image\n")
    _rewrite(moved, lambda im: _shifted(im, spacing=(0.5, 0, 0)))
    first = sitk.ReadImage(str(root / "imagesTs/phantom_002_0000.nii.gz")).GetSpacing()
    result, _ = check_dataset(root, "nnunet")
    found = [(p.case_id, p.file, p.message.split(" (")[0] if p.file == garbage else p.message)
             for p in result.problems]
    fix = "resample this channel onto the first channel's grid"
    assert found == [
        ("phantom_000", cropped, f"channel size 12×16×8 differs from first channel size 16×16×8 — {fix}"),
        ("phantom_001", garbage, "image file is not a readable image"),
        ("phantom_002", moved, f"channel spacing {fmt(np.add(first, (0.5, 0, 0)))} differs from first channel "
                               f"spacing {fmt(first)} — {fix}"),
    ]


def test_a_multi_channel_case_reports_its_label_once_and_samples_every_channel(two_channels: Path, tmp_path: Path,
                                                                               monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = Path(shutil.copytree(two_channels, tmp_path / "nn"))
    label = root / "labelsTr/phantom_000.nii.gz"
    _rewrite(label, _set_voxels(np.uint8, [9]))
    result, fingerprint = check_dataset(root, "nnunet")
    assert [(p.file, p.message.split(" (")[0]) for p in result.problems] == [
        (label, "label holds values 9 outside 0..3")]
    channels = [sitk.GetArrayFromImage(sitk.ReadImage(str(root / f"imagesTr/phantom_001_000{c}.nii.gz")))
                for c in (0, 1)]
    foreground = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "labelsTr/phantom_001.nii.gz"))) > 0
    assert fingerprint.num_cases == 1 and [s.samples for s in fingerprint.intensity] == [foreground.sum()] * 2
    for stats, channel in zip(fingerprint.intensity, channels, strict=True):
        assert stats.median == pytest.approx(np.median(channel[foreground]))


def test_spacing_and_shape_statistics_are_in_the_reoriented_axis_order(root: Path) -> None:
    """A case stored z-first (its affine saying so) is the same volume to training, which reorients it: the
    fingerprint behind ``spacing: auto`` must see x, y, z spacings, not the file's array order."""
    before = compute_fingerprint(_check(root).stats, NUM_CLASSES).as_dict()
    for relative in TR:
        path = root / relative
        stored = nib.load(str(path))
        swapped = stored.as_reoriented(np.array([[2, 1], [1, 1], [0, 1]]))  # array axes z, y, x
        assert swapped.shape == stored.shape[::-1]
        nib.save(swapped, str(path))
    after = compute_fingerprint(_check(root).stats, NUM_CLASSES).as_dict()
    assert all(after["spacing"][k] == pytest.approx(before["spacing"][k]) for k in ("median", "p10", "p90"))
    assert after["shape"] == before["shape"]
    assert before["spacing"]["median"][2] > 2 * before["spacing"]["median"][0]  # anisotropic, so order matters


def test_the_fingerprint_table_shows_whole_voxel_counts_without_decimals() -> None:
    import io

    from rich.console import Console
    from segkit.pipelines.data_check import fingerprint_table

    from segkit.data.fingerprint import Fingerprint

    fingerprint = Fingerprint(2, [1.0, 1.0, 2.5], [1.0, 1.0, 2.5], [1.0, 1.0, 2.5], [64, 64, 24], [64.0, 64.5, 24.0],
                              [64, 65, 24], [], {})
    console = Console(file=io.StringIO(), width=200)
    console.print(fingerprint_table(fingerprint, {}, {}))
    shown = console.file.getvalue()
    assert "64 × 64.5 × 24" in shown and "64.0" not in shown  # before: "64.0 × 64.5 × 24.0" beside "64 × 64 × 24"
