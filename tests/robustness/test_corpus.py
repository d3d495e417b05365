"""The robustness corpus (``corpus.py``) through the real CLI: every bad input gives a non-zero exit where it is
fatal, ONE line on stderr that names the file or config key and says what to do, and no traceback; batch
prediction finishes the good cases; nothing is written outside the output folder or under a final name
half-way. Most cases call ``segkit.cli.main`` in-process; a full disk needs a subprocess (RLIMIT_FSIZE)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import segkit.pipelines.predict_writer as writer_module
from monai.data import NibabelReader

import segkit.cli as cli_module
from segkit.cli import main
from tests.robustness import corpus

GOOD = "imagesTs/phantom_004.nii.gz"  # a held-out phantom of the session's tiny dataset (16×40×40)
SPACING = "data.spacing=[1.2,1.2,2.5]"
TINY_TRAIN = ["--config", "demo_unet_resnet34.yaml", "--set", "model.encoder=resnet18", "--set", SPACING,
              "--set", "model.decoder_channels=[32,16,16,8,8]", "--set", "train.epochs=1",
              "--set", "train.steps_per_epoch=1", "--set", "train.batch_size=2", "--set", "train.patch_size=[32,32,32]",
              "--set", "infer.roi_size=[32,32,32]", "--set", "train.surface_metrics=false"]


@dataclass(frozen=True)
class Run:
    """Exit code and captured output of one CLI call."""

    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        """The non-empty stderr lines."""
        return [line for line in self.err.splitlines() if line.strip()]


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> Run:
    """``segkit ARGS`` in-process."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


ADVICE = (" — ", "; ", "did you mean", "should be")  # how a message goes on to say what to do


def assert_errors(run: Run, *expected: tuple[str | Path, str], code: int = 1) -> None:
    """Exit ``code``, no traceback, and stderr exactly one ``error:`` line per (file or key, message part) pair,
    each also saying what to do."""
    assert run.code == code, (run.out, run.err)
    assert "Traceback" not in run.out + run.err
    assert len(run.lines) == len(expected), run.err
    for line, (name, part) in zip(run.lines, expected, strict=True):
        assert line.startswith("error: "), line
        assert str(name) in line and part in line, f"want {name!s} and {part!r} in: {line}"
        assert any(words in line for words in ADVICE), f"no advice in: {line}"


def image_files(folder: Path) -> list[str]:
    """Every file below ``folder`` except the manifest (outputs, temp files, anything left half-way)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "manifest.jsonl")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep data-check caches out of the user's ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


@pytest.fixture(scope="module")
def checkpoint(random_checkpoint: Path) -> Path:
    """A random-weight resnet18 checkpoint directory (1 input channel, 4 classes)."""
    return random_checkpoint.resolve()


@pytest.fixture
def dataset(tiny_dataset: Path, tmp_path: Path) -> Path:
    """A fresh copy of the tiny phantom dataset that a test may break."""
    return Path(shutil.copytree(tiny_dataset, tmp_path / "data"))


def predict(capsys, checkpoint: Path, inputs: Path, output: Path, *extra: str) -> Run:
    return cli(capsys, "predict", "--checkpoint", checkpoint, "--input", inputs, "--output", output,
               "--device", "cpu", "--workers", "1", *extra)


# ---------------------------------------------------------------------------------------------- bad images

PREDICT_MESSAGES = {
    "zero bytes": "file is empty (0 bytes)",
    "truncated gzip": "pixel data is truncated or damaged (EOFError",
    "short payload": "pixel data is truncated or damaged (OSError: Expected 51200 bytes, got 1648",
    "not an image": "not a readable image",
    "2D image": "image is 2D (size 40×40) but the model takes one 3D image per file",
    "4D image": "image is 4D (size 40×40×16×2) but the model takes one 3D image per file",
    "5D image": "image is 5D (size 40×40×16×2×2)",
    "NaN and Inf": "image holds 2 NaN and 1 infinite voxel(s)",
    "huge header": "header declares size 32767×32767×32767",
    "huge header nifti2": "header declares size 100000×100000×100000",
}
CHECK_MESSAGES = {
    "zero bytes": "image file is empty (0 bytes)",
    "truncated gzip": "image gzip data is damaged",
    "short payload": "image file holds 1648 bytes of pixel data but its header declares 51200",
    "not an image": "image file is not a readable image",
    "2D image": "image is 2D (size 40×40)",
    "4D image": "image has 2 channel(s) but dataset.json declares 1",
    "5D image": "image is 5D (size 40×40×16×2×2)",
    "NaN and Inf": "image holds 2 NaN and 1 infinite voxel(s)",
    "huge header": "image header declares size 32767×32767×32767",
    "huge header nifti2": "image header declares size 100000×100000×100000",
}
assert set(PREDICT_MESSAGES) == set(CHECK_MESSAGES) == set(corpus.IMAGES)


@pytest.fixture
def pixel_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Files whose pixels MONAI's NIfTI reader fetched."""
    reads: list[str] = []
    get_data = NibabelReader.get_data

    def recording(self, img):
        reads.extend(str(i.get_filename()) for i in (img if isinstance(img, list | tuple) else [img]))
        return get_data(self, img)

    monkeypatch.setattr(NibabelReader, "get_data", recording)
    return reads


@pytest.mark.parametrize("name", list(corpus.IMAGES))
def test_bad_image_through_predict(name: str, checkpoint: Path, tiny_dataset: Path, tmp_path: Path, capsys,
                                   pixel_reads: list[str]) -> None:
    (tmp_path / "in").mkdir()
    bad = corpus.IMAGES[name](tmp_path / "in" / "case.nii.gz", tiny_dataset / GOOD)
    run = predict(capsys, checkpoint, tmp_path / "in", tmp_path / "out")
    assert_errors(run, (bad, PREDICT_MESSAGES[name]))
    assert image_files(tmp_path / "out") == []
    if name.startswith("huge"):
        assert pixel_reads == []  # refused on the header: no buffer for 10**15 voxels was ever asked for


@pytest.mark.parametrize("name", list(corpus.IMAGES))
def test_bad_image_through_data_check(name: str, dataset: Path, tiny_dataset: Path, capsys) -> None:
    bad = corpus.IMAGES[name](dataset / corpus.IMAGE_TR, tiny_dataset / corpus.IMAGE_TR)  # on its label's grid
    run = cli(capsys, "data", "check", dataset)
    assert_errors(run, (bad.resolve(), CHECK_MESSAGES[name]))
    assert json.loads((dataset / "segkit_fingerprint.json").read_text())["ok"] is False


def test_batch_with_every_bad_image_still_predicts_the_good_ones(checkpoint: Path, tiny_dataset: Path,
                                                                 tmp_path: Path, capsys) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    bad = [corpus.IMAGES[name](inputs / f"bad_{i:02d}.nii.gz", tiny_dataset / GOOD)
           for i, name in enumerate(corpus.IMAGES)]
    shutil.copy(tiny_dataset / GOOD, inputs / "good.nii.gz")  # sorted last: after every failure
    run = predict(capsys, checkpoint, inputs, tmp_path / "out")
    assert_errors(run, *((path.resolve(), PREDICT_MESSAGES[name]) for path, name in zip(bad, corpus.IMAGES,
                                                                                        strict=True)))
    assert image_files(tmp_path / "out") == ["good.nii.gz"]
    assert nib.load(str(tmp_path / "out" / "good.nii.gz")).shape == (40, 40, 16)
    assert f"1 written, 0 skipped, {len(bad)} failed" in run.out


def test_paths_with_spaces_brackets_and_non_ascii_work(checkpoint: Path, tiny_dataset: Path, tmp_path: Path,
                                                       capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module.console, "_width", 300)  # the table in one piece, whatever the terminal
    folder = tmp_path / "scans ü 東京"
    folder.mkdir()
    name = "patient é 東京 [v2].nii.gz"
    shutil.copy(tiny_dataset / GOOD, folder / name)
    run = predict(capsys, checkpoint, folder, tmp_path / "out put ñ")
    assert run.code == 0 and run.err == "", run.err
    assert image_files(tmp_path / "out put ñ") == [name]
    assert "[v2]" in run.out  # shown as named, not eaten as console markup
    data = Path(shutil.copytree(tiny_dataset, tmp_path / "data set ü 東京 [x]"))
    checked = cli(capsys, "data", "check", data)
    assert checked.code == 0 and checked.err == "", checked.err
    assert json.loads((data / "segkit_fingerprint.json").read_text())["ok"] is True


# -------------------------------------------------------------------------------------------- bad datasets

DATASET_MESSAGES = {
    "label shape mismatch": "label size 32×40×16 differs from image size 40×40×16 — resample the label",
    "label spacing mismatch": "label spacing (0.875, 0.875, 3.4) differs from image spacing (0.875, 0.875, 2.9)",
    "label direction mismatch": "label direction (0.99995, -0.00999983, 0, ",
    "image NaN and Inf": "image holds 2 NaN and 1 infinite voxel(s)",
    "float label fractions": "label voxel type float32 holds non-integer values (0.5, 1.25)",
    "label outside declared set": "label holds values 7, 9 outside 0..3",
    "negative label": "label holds negative values -1",
    "missing label file": "training[0].label './labelsTr/phantom_000.nii.gz' does not exist",
    "duplicate case id": "case id 'phantom_000' appears twice",
    "image path ../": "training[0].image '../outside/phantom_000.nii.gz' points outside the dataset folder",
    "absolute label path": "points outside the dataset folder",
}
assert set(DATASET_MESSAGES) == set(corpus.DATASETS)


def files_outside(root: Path) -> set[Path]:
    """Every file under ``root``'s parent but not under ``root``."""
    return {p for p in root.parent.rglob("*") if p.is_file() and root not in p.parents}


def _shown(path: Path) -> Path:
    return path.resolve() if path.name != "dataset.json" else path


@pytest.mark.parametrize("name", list(corpus.DATASETS))
def test_bad_dataset_through_data_check(name: str, dataset: Path, capsys) -> None:
    bad = corpus.DATASETS[name](dataset)
    before = files_outside(dataset)
    run = cli(capsys, "data", "check", dataset)
    assert_errors(run, (_shown(bad), DATASET_MESSAGES[name]))
    assert files_outside(dataset) == before


@pytest.mark.parametrize("name", ["label shape mismatch", "label spacing mismatch", "label direction mismatch",
                                  "image path ../"])
def test_bad_dataset_stops_training_before_the_run_starts(name: str, dataset: Path, tmp_path: Path, capsys) -> None:
    bad = corpus.DATASETS[name](dataset)
    before = files_outside(dataset)
    run = cli(capsys, "train", *TINY_TRAIN, "--set", f"data.root={dataset}", "--set", f"run_dir={tmp_path / 'run'}")
    assert_errors(run, (_shown(bad), DATASET_MESSAGES[name]))
    assert not (tmp_path / "run").exists()
    assert files_outside(dataset) == before


def test_empty_label_map_is_a_warning_not_an_error(dataset: Path, capsys) -> None:
    label = corpus.label_empty(dataset)
    run = cli(capsys, "data", "check", dataset)
    assert run.code == 0 and "Traceback" not in run.out + run.err
    assert run.lines == [f"warning: {label.resolve()}: label holds only background (0) — check that it is the "
                         "right file; an empty case teaches only background"]


@pytest.mark.parametrize("case_id", ["../../escape", "ABSOLUTE/escape"])
def test_case_ids_with_folder_parts_are_refused(case_id: str, tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    case_id = case_id.replace("ABSOLUTE", str(tmp_path))
    root = tmp_path / "a" / "b" / "folder_data"
    source = corpus.folder_csv(root, tiny_dataset, [case_id, "phantom_001", "phantom_002", "phantom_003"])
    expected = (source, f"case id '{case_id}' is not a plain name")
    assert_errors(cli(capsys, "data", "check", root, "--format", "folder"), expected)
    run = cli(capsys, "train", *TINY_TRAIN, "--set", f"data.root={root}", "--set", "data.format=folder",
              "--set", f"run_dir={root / 'run'}", "--set", "data.cache=disk", "--set", f"data.cache_dir={root / 'c'}")
    assert_errors(run, expected)
    assert not list(tmp_path.rglob("escape*")) and not (root / "run").exists() and not (root / "c").exists()


# --------------------------------------------------------------------------------------------- bad configs

CONFIG_MESSAGES = {
    "unknown key": ("train.epoch", "unknown key 'train.epoch': did you mean 'train.epochs'?"),
    "wrong type": ("train.batch_size", "Input should be a valid integer, unable to parse string as an integer "
                                       "(got 'many')"),
    "negative patch size": ("train.patch_size.1", "Input should be greater than 0 (got -32)"),
    "zero patch size": ("train.patch_size.0", "Input should be greater than 0 (got 0)"),
    "unknown encoder": ("model.encoder", "unknown encoder 'resnet35': did you mean 'resnet34'?"),
}
assert set(CONFIG_MESSAGES) == set(corpus.CONFIGS)


@pytest.fixture
def base_config(tiny_dataset: Path, tmp_path: Path) -> dict:
    return {"base": "demo_unet_resnet34.yaml", "run_dir": str(tmp_path / "run"),
            "data": {"root": str(tiny_dataset), "spacing": [1.2, 1.2, 2.5]}, "model": {"encoder": "resnet18"},
            "train": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 2, "patch_size": [32, 32, 32]}}


@pytest.mark.parametrize("command", [("config", "show"), ("train",)])
@pytest.mark.parametrize("name", list(corpus.CONFIGS))
def test_bad_config_is_one_line_naming_file_and_key(name: str, command: tuple[str, ...], base_config: dict,
                                                    tmp_path: Path, capsys) -> None:
    path = corpus.CONFIGS[name](tmp_path / "config ü.yaml", base_config)
    key, part = CONFIG_MESSAGES[name]
    run = cli(capsys, *command, "--config", path)
    assert_errors(run, (path, f"{key}"))
    assert part in run.err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [("config", "show"), ("train",)])
def test_yaml_python_tag_is_refused_and_never_run(command: tuple[str, ...], base_config: dict, tmp_path: Path,
                                                  capsys) -> None:
    sentinel = tmp_path / "sentinel"
    path = corpus.python_tag(tmp_path / "evil.yaml", base_config, sentinel)
    run = cli(capsys, *command, "--config", path)
    assert_errors(run, (path, "invalid YAML (could not determine a constructor for the tag"))
    assert not sentinel.exists()


def test_debug_shows_the_traceback_of_a_corpus_case(base_config: dict, tmp_path: Path, capsys) -> None:
    path = corpus.unknown_key(tmp_path / "c.yaml", base_config)
    run = cli(capsys, "--debug", "config", "show", "--config", path)
    assert run.code == 1 and "Traceback" in run.err and run.lines[-1].startswith("error: ")


# ----------------------------------------------------------------------------------------- bad checkpoints

CHECKPOINT_MESSAGES = {
    "two-channel checkpoint": "the model takes 2 channels — name inputs CASE_0000 … CASE_0001, one file per channel",
    "other architecture": "weights do not fit the model in its config.json (96 missing, 0 unexpected",
    "unknown encoder in checkpoint": "config.json: model.encoder: unknown encoder 'resnet9000'",
    "pickled weights.safetensors": "unreadable checkpoint (Error while deserializing header",
    "pickle .pth": "a file, not a checkpoint; pass the folder holding weights.safetensors and config.json",
}
assert set(CHECKPOINT_MESSAGES) == set(corpus.CHECKPOINTS)


@pytest.mark.parametrize("name", list(corpus.CHECKPOINTS))
def test_bad_checkpoint_is_refused_without_unpickling(name: str, checkpoint: Path, tiny_dataset: Path,
                                                      tmp_path: Path, capsys) -> None:
    copy = Path(shutil.copytree(checkpoint, tmp_path / "ckpt" / "best", copy_function=os.link))  # files replaced
    sentinel = tmp_path / "sentinel"
    given = corpus.CHECKPOINTS[name](copy, sentinel)
    run = predict(capsys, given, tiny_dataset / "imagesTs", tmp_path / "out")
    named = tiny_dataset.joinpath(GOOD).resolve() if name == "two-channel checkpoint" else given
    assert_errors(run, (named, CHECKPOINT_MESSAGES[name]))
    assert not sentinel.exists()
    assert not (tmp_path / "out").exists()  # refused before --output is created


# ------------------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> tuple[int, Path]:
    """One step of resnet18 with 32×32×32 patches on 16×40×40 phantoms (about 18×34×34 after resampling)."""
    run_dir = tmp_path_factory.mktemp("train") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
        code = main(["train", *TINY_TRAIN, "--set", f"data.root={tiny_dataset}", "--set", f"run_dir={run_dir}"])
    return code, run_dir


def test_patch_larger_than_the_image_is_padded(trained: tuple[int, Path]) -> None:
    code, run_dir = trained
    assert code == 0
    assert (run_dir / "best" / "weights.safetensors").is_file() and (run_dir / "last" / "resume.pt").is_file()


def test_pickled_resume_state_is_refused_and_never_run(trained: tuple[int, Path], tmp_path: Path, capsys) -> None:
    _, run_dir = trained
    sentinel = tmp_path / "sentinel"
    crafted = corpus.pickled_resume(run_dir / "last", sentinel)
    run = cli(capsys, "train", "--resume", run_dir)
    assert_errors(run, (crafted, "resume state refused: it holds objects other than tensors"))
    assert not sentinel.exists()


def test_resume_with_another_model_is_one_line(trained: tuple[int, Path], capsys) -> None:
    _, run_dir = trained
    run = cli(capsys, "train", "--resume", run_dir, "--set", "model.encoder=resnet34")
    assert_errors(run, ("model.encoder", f"the run in {run_dir} was trained with 'resnet18', now 'resnet34' — a "
                                         "resumed run keeps its model"))


def test_resume_with_other_preprocessing_is_one_line(trained: tuple[int, Path], capsys) -> None:
    _, run_dir = trained
    run = cli(capsys, "train", "--resume", run_dir, "--set", "data.window=[-1000, 1000]")
    assert_errors(run, ("data.window", f"the run in {run_dir} was trained with [-200.0, 300.0], now [-1000.0, 1000.0] "
                                       "— a resumed run keeps its model and preprocessing"))


def test_resume_with_another_seed_names_the_seed_even_when_it_changes_the_split(trained: tuple[int, Path],
                                                                               tiny_dataset: Path, capsys) -> None:
    from segkit.config import load_config
    from segkit.data.index import load_dataset
    from segkit.data.splits import choose_split

    _, run_dir = trained
    data = load_config(str(run_dir / "config.yaml"), []).data
    cases = load_dataset(tiny_dataset, data.format).training
    other = choose_split(cases, data, 7)[2]
    assert json.loads(json.dumps(other)) != json.loads((run_dir / "splits.json").read_text())  # seed 7 splits otherwise
    run = cli(capsys, "train", "--resume", run_dir, "--set", "seed=7")  # before: "…/splits.json: the split changed"
    assert_errors(run, ("seed", f"the run in {run_dir} was trained with 0, now 7 — a resumed run keeps it (it chose "
                                "the split and seeds every training sample)"))


def test_resume_of_a_run_stopped_before_its_first_save_says_to_start_again(trained: tuple[int, Path], tmp_path: Path,
                                                                          capsys) -> None:
    _, run_dir = trained
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    for name in ("config.yaml", "splits.json"):  # what a run has written before its first checkpoint
        shutil.copy(run_dir / name, stopped)
    run = cli(capsys, "train", "--resume", stopped)
    assert_errors(run, (stopped, "no last/ checkpoint to resume from (the run stopped before its first save); start "
                                 "it again with --overwrite instead of --resume"))


def test_resume_of_a_missing_folder_says_so(tmp_path: Path, capsys) -> None:
    run = cli(capsys, "train", "--resume", tmp_path / "nowhere")
    assert_errors(run, (tmp_path / "nowhere", "no such folder; pass the run_dir of a run started with segkit train"))


def test_a_key_given_twice_in_a_config_is_refused(tmp_path: Path, capsys) -> None:
    config = tmp_path / "twice.yaml"
    config.write_text("base: demo_unet_resnet34.yaml\ntrain:\n  epochs: 3\nmodel:\n  encoder: resnet18\n"
                      "train:\n  lr: 0.1\n", encoding="utf-8")
    run = cli(capsys, "config", "show", "--config", config)
    assert_errors(run, (config, "line 6: key 'train' appears twice in the same mapping; merge the two into one"))
    config.write_text("train:\n  augment:\n    flip: 0.1\n    flip: 0.2\n", encoding="utf-8")
    run = cli(capsys, "config", "show", "--config", config)
    assert_errors(run, (config, "line 4: key 'train.augment.flip' appears twice"))


def test_evaluate_reports_to_a_folder_is_one_line(tmp_path: Path, capsys) -> None:
    labels = np.zeros((6, 5, 4), np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    for folder in ("pred", "ref"):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / folder / "a.nii.gz")
    run = cli(capsys, "evaluate", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--csv", tmp_path / "ref")
    assert_errors(run, (tmp_path / "ref", "is a folder — give --csv / --summary a file path"))


# ------------------------------------------------------------------------------------------ output folders


def test_output_folder_equal_to_the_input_folder_is_refused(checkpoint: Path, tiny_dataset: Path, tmp_path: Path,
                                                            capsys) -> None:
    inputs = Path(shutil.copytree(tiny_dataset / "imagesTr", tmp_path / "in"))
    run = predict(capsys, checkpoint, inputs, inputs)
    assert_errors(run, (f"--output {inputs}", "is an input folder; write predictions to another folder"))
    assert sorted(p.name for p in inputs.iterdir()) == [f"phantom_00{i}.nii.gz" for i in range(4)]


def _writes_blocked(folder: Path) -> bool:
    try:
        (folder / "probe").write_bytes(b"")
    except PermissionError:
        return True
    (folder / "probe").unlink()
    return False


def test_read_only_output_folder_is_one_line_before_any_work(checkpoint: Path, tiny_dataset: Path, tmp_path: Path,
                                                             capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        if not _writes_blocked(out):  # root ignores the mode bits: make every rename into place fail instead
            def refuse(src, dst, *args, **kwargs):
                raise PermissionError(13, "Permission denied", str(dst))
            monkeypatch.setattr(os, "replace", refuse)
        run = predict(capsys, checkpoint, tiny_dataset / "imagesTs", out)
        monkeypatch.undo()
        assert_errors(run, (f"--output {out}", "cannot write there (Permission denied) — choose a folder"))
        assert list(out.iterdir()) == []
    finally:
        out.chmod(0o755)


def test_a_case_that_cannot_be_written_fails_alone(checkpoint: Path, tiny_dataset: Path, tmp_path: Path, capsys,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.nii.gz", "b.nii.gz"):
        shutil.copy(tiny_dataset / GOOD, inputs / name)
    real = writer_module.write_like

    def write_like(labels, reference, path, *args):
        if path.name == "a.nii.gz":
            raise PermissionError(13, "Permission denied", str(path))
        return real(labels, reference, path, *args)

    monkeypatch.setattr(writer_module, "write_like", write_like)
    run = predict(capsys, checkpoint, inputs, tmp_path / "out")
    target = (tmp_path / "out" / "a.nii.gz").resolve()
    assert_errors(run, (target, "cannot write the prediction (Permission denied) — free disk space or fix"))
    assert image_files(tmp_path / "out") == ["b.nii.gz"]


WRAPPER = '''"""python wrapper.py LIMIT ARGS...: ``python -m segkit ARGS`` with every file capped at LIMIT bytes."""
import resource, runpy, signal, sys
import matplotlib.font_manager  # its font cache (built on a first run) is written before the disk "fills up"
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
sys.argv = ["segkit", *sys.argv[2:]]
runpy.run_module("segkit", run_name="__main__", alter_sys=True)
'''


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_full_disk_is_one_line_and_leaves_no_partial_file(checkpoint: Path, tiny_dataset: Path,
                                                          tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    nib.save(nib.load(str(tiny_dataset / GOOD)), str(inputs / "case.nii"))  # uncompressed: a 26 kB label map
    (tmp_path / "wrapper.py").write_text(WRAPPER, encoding="utf-8")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(tmp_path / "wrapper.py"), "8192", "predict", "--checkpoint",
                           str(checkpoint), "--input", str(inputs), "--output", str(out), "--device", "cpu"],
                          capture_output=True, encoding="utf-8", timeout=300,
                          env={**{k: v for k, v in os.environ.items() if k != "XDG_CACHE_HOME"}, "COLUMNS": "200",
                               "PYTHONDONTWRITEBYTECODE": "1"})
    run = Run(done.returncode, done.stdout, done.stderr)
    assert_errors(run, (out.resolve() / "case.nii", "cannot write the prediction (File too large) — free disk space"))
    assert image_files(out) == []  # neither the label map nor its temp file
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["failed"]
    assert np.isfinite(records[0]["seconds"]["compute"])
