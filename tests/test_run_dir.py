"""Run folders: --overwrite replaces only a segkit run, never another folder; the output probe leaves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from segkit.pipelines.predict import _prepare_output
from segkit.pipelines.train import prepare_run_dir

from segkit.config import Config
from segkit.errors import SegkitError
from segkit.io.atomic import remove_stale_temps, temp_path_for


def _cfg(run_dir: Path) -> Config:
    return Config(run_dir=run_dir)


def test_overwrite_replaces_a_previous_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    prepare_run_dir(_cfg(run), overwrite=False)
    (run / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(SegkitError, match="already holds a run"):
        prepare_run_dir(_cfg(run), overwrite=False)
    prepare_run_dir(_cfg(run), overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]


def test_overwrite_replaces_the_run_and_keeps_the_users_own_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    prepare_run_dir(_cfg(run), overwrite=False)
    (run / "checkpoints" / "last-000000004-abc123").mkdir(parents=True)
    (run / "last").symlink_to("checkpoints/last-000000004-abc123")
    for name in ("metrics.jsonl", "splits.json", "curves.png", "notes.txt"):
        (run / name).write_text("old")
    (run / "predictions").mkdir()
    (run / "predictions" / "case.nii.gz").write_bytes(b"mine")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "kept").write_text("x")
    (run / "tensorboard").symlink_to(elsewhere)  # a link among the run's names is removed, never followed
    console = Console(record=True, width=300)
    prepare_run_dir(_cfg(run), overwrite=True, console=console)
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "notes.txt", "predictions"]
    assert (run / "notes.txt").read_text() == "old" and (run / "predictions" / "case.nii.gz").read_bytes() == b"mine"
    assert (elsewhere / "kept").is_file()
    assert "kept what is not part of a run: notes.txt, predictions" in console.export_text()


@pytest.mark.parametrize("where", ["file", "file/run"])
def test_a_run_dir_that_is_or_lies_in_a_file_is_one_line(tmp_path: Path, where: str) -> None:
    (tmp_path / "file").write_text("mine")
    with pytest.raises(SegkitError, match=r"(is a file, not a folder|cannot create the folder).*--set run_dir="):
        prepare_run_dir(_cfg(tmp_path / where), overwrite=True)
    assert (tmp_path / "file").read_text() == "mine"


def test_the_advice_for_an_existing_run_dir_fits_what_it_holds(tmp_path: Path) -> None:
    run = tmp_path / "run"
    prepare_run_dir(_cfg(run), overwrite=False)  # a run stopped before its first checkpoint
    with pytest.raises(SegkitError) as error:
        prepare_run_dir(_cfg(run), overwrite=False)
    assert "pass --overwrite to replace it, or choose" in str(error.value) and "--resume" not in str(error.value)
    (run / "checkpoints" / "last-000000002-abcdef").mkdir(parents=True)
    (run / "checkpoints" / "last-000000002-abcdef" / "weights.safetensors").write_bytes(b"")
    (run / "last").symlink_to("checkpoints/last-000000002-abcdef")
    with pytest.raises(SegkitError, match=f"--overwrite to replace it, --resume {run} to continue it"):
        prepare_run_dir(_cfg(run), overwrite=False)
    images = tmp_path / "imagesTr"
    images.mkdir()
    (images / "case.nii.gz").write_bytes(b"scan")
    with pytest.raises(SegkitError, match=r"holds no segkit run .* neither --overwrite nor --resume applies"):
        prepare_run_dir(_cfg(images), overwrite=False)  # not "already holds a run"


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    folder = tmp_path / "papers"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    with pytest.raises(SegkitError, match="holds no segkit run"):
        prepare_run_dir(_cfg(folder), overwrite=True)
    assert (folder / "thesis.tex").read_text() == "precious"


def test_overwrite_refuses_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "config.yaml").write_text("looks like a run\n")
    (project / "src" / "main.py").write_text("code")
    monkeypatch.chdir(project / "src")
    for run_dir in (project, project / "src", Path(".")):
        with pytest.raises(SegkitError, match="working directory"):
            prepare_run_dir(_cfg(run_dir), overwrite=True)
    assert (project / "config.yaml").exists()


def test_output_probe_uses_a_temp_name_that_cleanup_removes(tmp_path: Path) -> None:
    _prepare_output(tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    left_by_a_kill = temp_path_for(tmp_path / "out" / ".segkit-write-probe")
    left_by_a_kill.write_bytes(b"")
    assert remove_stale_temps(tmp_path / "out") == 1 and not left_by_a_kill.exists()
