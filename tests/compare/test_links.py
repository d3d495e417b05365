"""Folders compare owns inside --out: a symbolic link planted in their place is removed, never written through."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from segkit.pipelines.compare import _link_references

from segkit.data.cases import Case
from segkit.io.atomic import own_folder


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "dataset.json").write_text("the user's file")
    return victim


def test_own_folder_replaces_a_link_and_leaves_its_target(tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    (tmp_path / "figures").symlink_to(victim, target_is_directory=True)
    folder = own_folder(tmp_path / "figures")
    assert folder.is_dir() and not folder.is_symlink() and list(folder.iterdir()) == []
    assert (victim / "dataset.json").read_text() == "the user's file"


def test_references_are_linked_in_a_real_folder_even_where_a_link_was_planted(tmp_path: Path) -> None:
    """Before: rmtree refused the link, mkdir went through it, and dataset.json was copied over the victim's."""
    victim, data = _victim(tmp_path), tmp_path / "data"
    (data / "labelsTs").mkdir(parents=True)
    (data / "dataset.json").write_text('{"labels": {"0": "background", "1": "organ"}}')
    label = data / "labelsTs" / "case.nii.gz"
    label.write_bytes(b"label")
    run_folder = tmp_path / "out" / "runs" / "v" / "seed0"
    run_folder.mkdir(parents=True)
    (run_folder / "reference").symlink_to(victim, target_is_directory=True)
    run = SimpleNamespace(folder=run_folder, config=SimpleNamespace(data=SimpleNamespace(root=data)))
    labels = _link_references(run, [Case("case", data / "imagesTs" / "case.nii.gz", label)])
    assert not (run_folder / "reference").is_symlink() and (labels / "case.nii.gz").resolve() == label.resolve()
    assert (victim / "dataset.json").read_text() == "the user's file" and not (victim / "labels").exists()
