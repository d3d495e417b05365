"""segkit predict on awkward folders: inputs that share a case id, symbolic links, multi-channel cases as one 4D
file or as channel files (one incomplete), side files of an earlier run, an --output that is a file."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from segkit.pipelines.predict import load_models

from segkit.config import Config, DataCfg, InferCfg, ModelCfg, TrainCfg
from segkit.engine.checkpoint import Snapshot, save_checkpoint
from segkit.inference.manifest import read_manifest
from segkit.models import build_model
from tests.cli_run import run_cli


def _copy(tiny_dataset: Path, case: int, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(tiny_dataset / "imagesTr" / f"phantom_{case:03d}.nii.gz", target))


def _predict(checkpoint: Path, cwd: Path, *args: object):
    return run_cli("predict", "--checkpoint", checkpoint, "--device", "cpu", *args, cwd=cwd)


def test_inputs_sharing_a_case_id_fail_and_the_others_are_written(
        random_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    a = _copy(tiny_dataset, 0, tmp_path / "a" / "case.nii.gz")
    b = _copy(tiny_dataset, 1, tmp_path / "b" / "case.nii.gz")
    _copy(tiny_dataset, 2, tmp_path / "a" / "other.nii.gz")
    done = _predict(random_checkpoint, tmp_path, "--input", "a", "b", "--output", "out")
    assert done.returncode == 1
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz")) == ["other.nii.gz"]
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 2 and all("case id 'case' also comes from" in line for line in errors)
    assert str(a) in errors[0] and str(b) in errors[0]
    record = read_manifest(tmp_path / "out" / "manifest.jsonl")["case"]
    assert record["status"] == "failed" and "their predictions would be one file" in record["error"]


def test_symbolic_links_are_predicted_under_their_own_names(
        random_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    target = _copy(tiny_dataset, 0, tmp_path / "store" / "orig.nii.gz")
    links = tmp_path / "links"
    links.mkdir()
    for name in ("patientA", "patientB"):
        (links / f"{name}.nii.gz").symlink_to(target)
    (links / "patientC.nii.gz").symlink_to(tmp_path / "gone.nii.gz")
    done = _predict(random_checkpoint, tmp_path, "--input", "links", "--output", "out")
    assert done.returncode == 1 and "2 written, 0 skipped, 1 failed" in done.stdout
    assert "patientC.nii.gz: broken symbolic link" in done.stderr
    written = {p.name: np.asarray(nib.load(str(p)).dataobj) for p in (tmp_path / "out").glob("*.nii.gz")}
    assert sorted(written) == ["patientA.nii.gz", "patientB.nii.gz"]
    assert np.array_equal(written["patientA.nii.gz"], written["patientB.nii.gz"])


def test_a_redone_case_leaves_no_side_file_of_the_earlier_run(
        random_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    _copy(tiny_dataset, 0, tmp_path / "in" / "x.nii.gz")
    first = _predict(random_checkpoint, tmp_path, "--input", "in", "--output", "out", "--save-probabilities",
                     "--preview")
    sides = [tmp_path / "out" / name for name in ("x.probabilities.npz", "x.preview.png")]
    assert first.returncode == 0 and all(p.is_file() for p in sides)
    again = _predict(random_checkpoint, tmp_path, "--input", "in", "--output", "out", "--preview")
    assert again.returncode == 0 and "1 written" in again.stdout  # other settings: the case is redone
    assert not sides[0].exists() and sides[1].is_file()
    third = _predict(random_checkpoint, tmp_path, "--input", "in", "--output", "out", "--overwrite")
    assert third.returncode == 0 and not any(p.exists() for p in sides)
    mine = tmp_path / "mine"
    _copy(tiny_dataset, 0, mine / "x.nii.gz")  # a side-file name in a fresh output folder is the user's: kept
    (tmp_path / "out2").mkdir()
    (tmp_path / "out2" / "x.preview.png").write_bytes(b"the user's own file")
    assert _predict(random_checkpoint, tmp_path, "--input", "mine", "--output", "out2").returncode == 0
    assert (tmp_path / "out2" / "x.preview.png").read_bytes() == b"the user's own file"


def test_output_that_is_a_file_is_one_line(random_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    done = _predict(random_checkpoint, tmp_path, "--input", tiny_dataset / "imagesTs", "--output", "afile")
    assert done.returncode == 1 and done.stderr.strip() == "error: --output afile: is a file, not a folder — give " \
                                                           "a folder for the label maps"


@pytest.fixture(scope="module")
def two_channel_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> Path:
    cfg = Config(data=DataCfg(root=tiny_dataset, spacing=(1.2, 1.2, 2.5)),
                 model=ModelCfg(encoder="resnet18", in_channels=2, decoder_channels=(32, 16, 16, 8, 8), norm="batch"),
                 train=TrainCfg(patch_size=(32, 32, 16), precision="fp32"),
                 infer=InferCfg(roi_size=(32, 32, 16), sw_batch_size=2))
    torch.manual_seed(3)
    model = build_model(cfg.model).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt2"), "best", cfg, Snapshot.of(model, {"global_step": 1}))


def test_multi_channel_cases_as_one_4d_file_or_channel_files(
        two_channel_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    """One case as a 4D file (MSD), the same case as two channel files (nnU-Net), one case missing a channel."""
    inputs = tmp_path / "in"
    first = _copy(tiny_dataset, 0, inputs / "split_0000.nii.gz")
    image = nib.load(str(first))
    channels = [np.asarray(image.dataobj), np.asarray(image.dataobj) // 2 + 100]  # channels share the grid
    second = inputs / "split_0001.nii.gz"
    nib.save(nib.Nifti1Image(channels[1], image.affine, image.header), second)
    _copy(tiny_dataset, 2, inputs / "lonely_0000.nii.gz")
    nib.save(nib.Nifti1Image(np.stack(channels, axis=-1), image.affine, image.header), inputs / "msd.nii.gz")
    done = _predict(two_channel_checkpoint, tmp_path, "--input", "in", "--output", "out")
    assert done.returncode == 1 and "2 written, 0 skipped, 1 failed" in done.stdout
    assert "lonely: found channel file(s) _0000, the model needs _0000 to _0001" in done.stderr
    msd, split = (nib.load(str(tmp_path / "out" / f"{name}.nii.gz")) for name in ("msd", "split"))
    assert msd.shape == split.shape == image.shape and np.allclose(msd.affine, image.affine, atol=1e-5)
    assert np.array_equal(np.asarray(msd.dataobj), np.asarray(split.dataobj))
    records = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert records["lonely"]["status"] == "failed" and records["msd"]["status"] == "written"
    assert records["split"]["inputs"] == [str(first), str(second)]


def test_a_channel_file_on_another_grid_is_named_with_the_fix(two_channel_checkpoint: Path, tiny_dataset: Path,
                                                                tmp_path: Path) -> None:
    first = _copy(tiny_dataset, 0, tmp_path / "in" / "moved_0000.nii.gz")
    image = nib.load(str(first))
    shifted = image.affine.copy()
    shifted[0, 3] += 5.0  # 5 mm off: MONAI refuses to stack it, and said so naming the first channel file
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), shifted, image.header), tmp_path / "in" / "moved_0001.nii.gz")
    done = _predict(two_channel_checkpoint, tmp_path, "--input", "in", "--output", "out")
    assert done.returncode == 1 and "0 written, 0 skipped, 1 failed" in done.stdout
    assert "moved_0001.nii.gz: channel file with origin [" in done.stderr
    assert "but the first channel moved_0000.nii.gz has [" in done.stderr
    assert "— save every channel file of a case on the first channel's grid (resample it, e.g. with SimpleITK)" \
        in done.stderr


def test_a_5d_image_fails_alone_with_its_shape(random_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    good = _copy(tiny_dataset, 0, tmp_path / "in" / "good.nii.gz")
    image = nib.load(str(good))
    data = np.asarray(image.dataobj)[..., None, None]
    nib.save(nib.Nifti1Image(data, image.affine), tmp_path / "in" / "five.nii.gz")
    done = _predict(random_checkpoint, tmp_path, "--input", "in", "--output", "out")
    assert done.returncode == 1 and "1 written, 0 skipped, 1 failed" in done.stdout
    size = "×".join(map(str, data.shape))
    assert f"five.nii.gz: image is 5D (size {size}) but the model takes one 3D image per file" in done.stderr


def test_an_uncompressed_nifti_named_nii_gz_fails_with_the_fix(
        random_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    good = _copy(tiny_dataset, 0, tmp_path / "in" / "good.nii.gz")
    nib.save(nib.load(str(good)), tmp_path / "plain.nii")
    (tmp_path / "plain.nii").rename(tmp_path / "in" / "plain.nii.gz")
    done = _predict(random_checkpoint, tmp_path, "--input", "in", "--output", "out")
    assert done.returncode == 1 and "1 written, 0 skipped, 1 failed" in done.stdout
    assert "plain.nii.gz: an uncompressed NIfTI named .nii.gz — rename it to .nii, or compress it with gzip" \
        in done.stderr


def test_a_colour_nifti_fails_alone_with_the_fix(random_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    good = _copy(tiny_dataset, 0, tmp_path / "in" / "good.nii.gz")
    rgb = np.zeros(nib.load(str(good)).shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, nib.load(str(good)).affine), tmp_path / "in" / "colour.nii.gz")
    done = _predict(random_checkpoint, tmp_path, "--input", "in", "--output", "out")
    assert done.returncode == 1 and "1 written, 0 skipped, 1 failed" in done.stdout
    assert "colour.nii.gz: image voxels are colour values (R, G, B) — segkit reads one grey value per voxel; " \
           "convert the image to grey, or save each colour as a channel file" in done.stderr


def test_a_file_of_a_format_segkit_does_not_read_fails_alone_with_the_fix(random_checkpoint: Path, tiny_dataset: Path,
                                                                          tmp_path: Path) -> None:
    good = _copy(tiny_dataset, 0, tmp_path / "in" / "good.nii.gz")
    analyze = tmp_path / "in" / "old.hdr"  # Analyze 7.5: nibabel and ITK know it; segkit's readers do not
    sitk.WriteImage(sitk.ReadImage(str(good)), str(analyze))
    done = _predict(random_checkpoint, tmp_path, "--input", "in/good.nii.gz", str(analyze), "--output", "out")
    assert done.returncode == 1 and "1 written, 0 skipped, 1 failed" in done.stdout
    assert f"{analyze}: not an image format segkit reads (.nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd, .png, .tif, " \
           ".tiff) — convert the file to NIfTI, e.g. with SimpleITK" in done.stderr


def test_a_header_with_a_separate_data_file_is_predicted_into_one_file(random_checkpoint: Path, tiny_dataset: Path,
                                                                        tmp_path: Path) -> None:
    """A written .mhd named its pixel data by the temp name it was written under; the next run removed that file
    as a stale temp, and the prediction could no longer be read. Such inputs give .mha / .nrrd outputs."""
    image = sitk.ReadImage(str(tiny_dataset / "imagesTs" / "phantom_004.nii.gz"))
    (tmp_path / "in").mkdir()
    sitk.WriteImage(image, str(tmp_path / "in" / "meta.mhd"))
    sitk.WriteImage(image, str(tmp_path / "in" / "detached.nhdr"))
    for _ in range(2):  # the rerun skips both and, before, deleted their data files
        assert _predict(random_checkpoint, tmp_path, "--input", "in", "--output", "out").returncode == 0
    for name in ("meta.mha", "detached.nrrd"):
        written = sitk.ReadImage(str(tmp_path / "out" / name))
        assert written.GetSize() == image.GetSize() and written.GetPixelID() == sitk.sitkUInt8
        np.testing.assert_allclose(written.GetDirection(), image.GetDirection(), atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["detached.nrrd", "manifest.jsonl", "meta.mha"]


def test_a_case_that_runs_out_of_memory_fails_alone_in_one_line(
        random_checkpoint: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import segkit.inference.predictor as predictor

    for case in (0, 1, 2):
        _copy(tiny_dataset, case, tmp_path / "in" / f"case{case}.nii.gz")
    real, calls = predictor.logits_with_fallbacks, []

    def second_case_too_large(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            torch.empty(2**50)  # the CPU allocator's own failure (a RuntimeError), as a too-large volume gives
        return real(*args, **kwargs)

    monkeypatch.setattr(predictor, "logits_with_fallbacks", second_case_too_large)
    done = _predict(random_checkpoint, tmp_path, "--input", "in", "--output", "out", "--workers", "1")
    assert done.returncode == 1 and "2 written, 0 skipped, 1 failed" in done.stdout
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz")) == ["case0.nii.gz", "case2.nii.gz"]
    error = read_manifest(tmp_path / "out" / "manifest.jsonl")["case1"]["error"]
    assert error.startswith(f"{tmp_path / 'in' / 'case1.nii.gz'}: does not fit in cpu memory with windows of "
                            "32×32×16 (") and "DefaultCPUAllocator: can't allocate memory" in error
    assert error.endswith("— free memory (other programs, fewer reader threads with --workers 1) or predict it on "
                          "a larger machine") and "\n" not in error


def test_a_window_too_large_for_the_device_is_one_line_at_start(random_checkpoint: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import segkit.inference.predictor as predictor
    from segkit.errors import DataError
    from segkit.inference.case_loader import CaseLoader

    def no_room(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB")

    monkeypatch.setattr(predictor, "auto_sw_batch", no_room)
    _, cfg, model = load_models([random_checkpoint])
    cfg = cfg.model_copy(update={"infer": cfg.infer.model_copy(update={"sw_batch_size": "auto"})})
    with pytest.raises(DataError, match=r"^infer.roi_size 32×32×16: a single window does not fit in the free memory "
                                        r"of cpu — predict on a GPU with more free memory \(or --device cpu\)$"):
        predictor.Predictor(model, cfg, torch.device("cpu"), loader=CaseLoader(cfg, torch.device("cpu")))


def test_a_library_error_while_writing_fails_only_that_case(
        random_checkpoint: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import segkit.pipelines.predict_writer as predict

    for case in (0, 1):
        _copy(tiny_dataset, case, tmp_path / "in" / f"case{case}.nii.gz")
    real = predict.write_like

    def itk_refuses_case0(array, reference, path, level):
        if reference.name == "case0.nii.gz":
            raise RuntimeError("Exception thrown in SimpleITK ImageFileWriter_Execute:\nITK ERROR: cannot write")
        return real(array, reference, path, level)

    monkeypatch.setattr(predict, "write_like", itk_refuses_case0)
    done = _predict(random_checkpoint, tmp_path, "--input", "in", "--output", "out")
    assert done.returncode == 1 and "1 written, 0 skipped, 1 failed" in done.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case1.nii.gz", "manifest.jsonl"]
    error = read_manifest(tmp_path / "out" / "manifest.jsonl")["case0"]["error"]
    assert error == (f"{tmp_path / 'out' / 'case0.nii.gz'}: cannot write the prediction on the grid of case0.nii.gz "
                     "(RuntimeError: Exception thrown in SimpleITK ImageFileWriter_Execute: ITK ERROR: cannot write) "
                     "— check its header against the image's data (e.g. with nibabel)")


def test_an_unavailable_device_is_refused_before_the_output_folder_is_made(
        random_checkpoint: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _copy(tiny_dataset, 0, tmp_path / "in" / "case.nii.gz")
    done = run_cli("predict", "--checkpoint", random_checkpoint, "--input", "in", "--output", "out", "--device",
                   "cuda", cwd=tmp_path)
    assert done.returncode == 1 and "--device 'cuda' requested but no CUDA GPU is available; use --device cpu" \
        in done.stderr
    assert not (tmp_path / "out").exists()  # before: an empty out/ was left behind


def test_a_channel_file_of_another_size_shows_whole_voxel_counts(tmp_path: Path) -> None:
    from segkit.io.channel_grids import channel_grid_mismatch

    for name, shape in (("c_0000.nii.gz", (8, 6, 4)), ("c_0001.nii.gz", (8, 6, 5))):
        nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), np.eye(4)), tmp_path / name)
    message = channel_grid_mismatch([tmp_path / "c_0000.nii.gz", tmp_path / "c_0001.nii.gz"])
    assert f"{tmp_path / 'c_0001.nii.gz'}: channel file with size [8, 6, 5], but the first channel c_0000.nii.gz " \
           "has [8, 6, 4] — " in message  # before: [8.0, 6.0, 5.0]
