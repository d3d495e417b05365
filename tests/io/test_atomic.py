"""Atomic writes never leave partial files or temp files behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from segkit.io.atomic import atomic_path, atomic_write_text, full_suffix


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "result.nii.gz"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.nii.gz"]


def test_successful_write_replaces_and_keeps_suffix(tmp_path: Path) -> None:
    target = tmp_path / "case.nii.gz"
    with atomic_path(target) as tmp:
        assert full_suffix(tmp) == ".nii.gz" and tmp.parent == tmp_path
        tmp.write_text("new")
    assert target.read_text() == "new"
    atomic_write_text(tmp_path / "a.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "case.nii.gz"]
