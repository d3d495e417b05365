"""The prediction manifest as a rerun reads it: what counts as done, and manifest paths that are not segkit's."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file
from segkit.pipelines.predict import PredictOptions, run_prediction

from segkit.errors import DataError
from segkit.inference.manifest import read_manifest


@pytest.fixture
def scan(tiny_dataset: Path, tmp_path: Path) -> Path:
    """One input case."""
    folder = tmp_path / "scans"
    folder.mkdir()
    return Path(shutil.copy(tiny_dataset / "imagesTs" / "phantom_004.nii.gz", folder))


def _status(checkpoint: Path, scan: Path, out: Path, **options) -> str:
    (result,) = run_prediction(checkpoint, [str(scan)], out, PredictOptions(device="cpu", **options))
    return result.status


def test_a_rerun_redoes_a_case_missing_what_it_asks_for_or_changed_since(random_checkpoint: Path, scan: Path,
                                                                        tmp_path: Path) -> None:
    out, label_map = tmp_path / "preds", tmp_path / "preds" / "phantom_004.nii.gz"
    assert _status(random_checkpoint, scan, out) == "written"
    assert _status(random_checkpoint, scan, out) == "skipped"
    assert _status(random_checkpoint, scan, out, preview=True) == "written"  # no preview yet
    assert (out / "phantom_004.preview.png").is_file()
    assert _status(random_checkpoint, scan, out, preview=True) == "skipped"
    (out / "phantom_004.preview.png").unlink()
    assert _status(random_checkpoint, scan, out, preview=True) == "written"
    label_map.write_bytes(b"corrupt")  # replaced after the run wrote it
    assert _status(random_checkpoint, scan, out) == "written"
    assert read_manifest(out / "manifest.jsonl")["phantom_004"]["output_signature"][0] == label_map.stat().st_size
    os.utime(label_map, ns=(1, 1))  # the same bytes, touched: not the file the run wrote
    assert _status(random_checkpoint, scan, out) == "written"


def test_the_order_of_keep_largest_labels_does_not_redo_cases(random_checkpoint: Path, scan: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "preds"
    assert _status(random_checkpoint, scan, out, keep_largest=(1, 2, 3)) == "written"
    assert _status(random_checkpoint, scan, out, keep_largest=(3, 1, 2)) == "skipped"


def test_precision_counts_by_the_arithmetic_it_picks(random_checkpoint: Path, scan: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds"
    assert _status(random_checkpoint, scan, out, precision="auto") == "written"
    assert _status(random_checkpoint, scan, out, precision="fp32") == "skipped"  # auto is fp32 on a CPU
    assert _status(random_checkpoint, scan, out, precision="bf16") == "written"
    assert read_manifest(out / "manifest.jsonl")["phantom_004"]["settings"]["precision"] == "bf16"


def test_a_checkpoint_folder_changed_in_place_redoes_the_cases(random_checkpoint: Path, scan: Path,
                                                               tmp_path: Path) -> None:
    """Same path and step, other weights (copied over the old ones) or another ``infer`` setting in config.json:
    the label maps on disk are no longer what this checkpoint predicts."""
    model, out = Path(shutil.copytree(random_checkpoint.resolve(), tmp_path / "liver_model")), tmp_path / "preds"
    assert _status(model, scan, out) == "written"
    assert _status(model, scan, out) == "skipped"
    weights = load_file(str(model / "weights.safetensors"))
    bias = next(key for key in weights if key.startswith("head.") and key.endswith("bias"))
    weights[bias] = weights[bias] + 1.0
    save_file(weights, str(model / "weights.safetensors"))
    assert _status(model, scan, out) == "written"
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    config["infer"]["roi_size"] = [32, 32, 32]
    (model / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert _status(model, scan, out) == "written"
    assert _status(model, scan, out) == "skipped"


@pytest.mark.parametrize("kind", ["user's file", "symbolic link", "folder", "rank part"])
def test_a_manifest_path_that_is_not_segkits_is_refused_and_left_alone(random_checkpoint: Path, scan: Path,
                                                                       tmp_path: Path, kind: str) -> None:
    out = tmp_path / "preds"
    out.mkdir()
    mine = tmp_path / "mine.jsonl"
    mine.write_text('{"path": "scan1.nii.gz", "label": "liver"}\n', encoding="utf-8")
    manifest = out / ("manifest.rank1.jsonl" if kind == "rank part" else "manifest.jsonl")
    if kind == "symbolic link":
        manifest.symlink_to(mine)
    elif kind == "folder":
        manifest.mkdir()
    else:
        shutil.copy(mine, manifest)
    foreign = "not a segkit prediction manifest (line 1 is not one of its records)"
    expected = {"symbolic link": "a symbolic link where segkit keeps its prediction manifest",
                "folder": "not a file"}.get(kind, foreign)
    with pytest.raises(DataError, match=re.escape(f"{manifest}: {expected}")):
        run_prediction(random_checkpoint, [str(scan)], out, PredictOptions(device="cpu"))
    assert mine.read_text(encoding="utf-8") == '{"path": "scan1.nii.gz", "label": "liver"}\n'
    assert not (out / "phantom_004.nii.gz").exists()
    if kind == "user's file":
        assert manifest.read_text(encoding="utf-8") == mine.read_text(encoding="utf-8")


def test_a_manifest_cut_by_a_kill_is_still_segkits(random_checkpoint: Path, scan: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds"
    assert _status(random_checkpoint, scan, out) == "written"
    with (out / "manifest.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"case_id": "phantom_004", "out')  # a line a killed run left unfinished
    assert _status(random_checkpoint, scan, out) == "skipped"
    (out / "manifest.jsonl").write_text('{"ca', encoding="utf-8")  # killed within its very first line
    (out / "phantom_004.nii.gz").unlink()
    assert _status(random_checkpoint, scan, out) == "written"


def test_a_side_file_segkit_did_not_write_is_left_alone(random_checkpoint: Path, scan: Path, tmp_path: Path) -> None:
    """The label map was checked against the manifest, but the user's own CASE.preview.png or
    CASE.probabilities.npz of that name was replaced."""
    out = tmp_path / "preds"
    out.mkdir()
    notes = out / "phantom_004.preview.png"
    notes.write_text("the user's notes")
    (result,) = run_prediction(random_checkpoint, [str(scan)], out, PredictOptions(device="cpu", preview=True))
    assert result.status == "skipped" and "phantom_004.preview.png exists, not written by segkit here" in \
        result.message
    assert notes.read_text() == "the user's notes" and not (out / "phantom_004.nii.gz").exists()
    assert _status(random_checkpoint, scan, out, preview=True, overwrite=True) == "written"


def test_each_finished_case_prints_one_progress_line(random_checkpoint: Path, tiny_dataset: Path,
                                                     tmp_path: Path) -> None:
    """A batch is never silent until its closing table: one line per case as it finishes, with its stage times, a
    failed case with its reason, numbered over the cases this run predicts (a skipped case is not counted)."""
    from io import StringIO

    from rich.console import Console

    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(tiny_dataset / "imagesTs" / "phantom_004.nii.gz", folder)
    shutil.copy(tiny_dataset / "imagesTr" / "phantom_000.nii.gz", folder)
    (folder / "broken.nii.gz").write_bytes(b"not a nifti file")
    out, text = tmp_path / "preds", StringIO()
    run_prediction(random_checkpoint, [str(folder)], out, PredictOptions(device="cpu"), Console(file=text, width=300))
    lines = [line for line in text.getvalue().splitlines() if line.startswith("[")]
    assert len(lines) == 3 and {line.split()[0] for line in lines} == {"[1/3]", "[2/3]", "[3/3]"}
    written = [line for line in lines if " written in " in line]
    assert len(written) == 2 and all(re.search(r": read [\d.]+, compute [\d.]+, write [\d.]+$", w) for w in written)
    (failed,) = [line for line in lines if "broken failed in" in line]
    assert "broken.nii.gz" in failed
    (out / "phantom_000.nii.gz").unlink()
    text = StringIO()
    run_prediction(random_checkpoint, [str(folder)], out, PredictOptions(device="cpu"), Console(file=text, width=300))
    again = [line.split() for line in text.getvalue().splitlines() if line.startswith("[")]
    assert sorted((words[0], words[1]) for words in again) in (
        [("[1/2]", "broken"), ("[2/2]", "phantom_000")], [("[1/2]", "phantom_000"), ("[2/2]", "broken")])
