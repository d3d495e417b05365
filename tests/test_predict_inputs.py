"""Predict inputs: channel grouping for multi-channel models and output paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from segkit.pipelines.predict import group_channels, output_path_for

from segkit.data.cases import Case
from segkit.errors import DataError


def test_single_channel_inputs_are_one_case_each() -> None:
    cases = group_channels([Path("/in/a.nii.gz"), Path("/in/b_0000.nii.gz")], channels=1)
    assert [c.case_id for c in cases] == ["a", "b_0000"]


def test_channel_files_are_grouped_in_order() -> None:
    files = [Path(f"/in/{name}") for name in ("x_0001.nii.gz", "x_0000.nii.gz", "y_0000.nii.gz", "y_0001.nii.gz")]
    cases = group_channels(files, channels=2)
    assert [(c.case_id, [p.name for p in c.images]) for c in cases] == [
        ("x", ["x_0000.nii.gz", "x_0001.nii.gz"]), ("y", ["y_0000.nii.gz", "y_0001.nii.gz"])]


def test_incomplete_channels_are_refused() -> None:
    with pytest.raises(DataError, match=r"case 'x': found channels \[0\], the model needs 0..1"):
        group_channels([Path("/in/x_0000.nii.gz")], channels=2)
    with pytest.raises(DataError, match="name inputs CASE_0000"):
        group_channels([Path("/in/x.nii.gz")], channels=2)


def test_output_path_stays_inside_and_never_overwrites_an_input(tmp_path: Path) -> None:
    case = Case("x", tmp_path / "in" / "x_0000.nii.gz", None, (tmp_path / "in" / "x_0001.nii.gz",))
    assert output_path_for(case, tmp_path / "out") == (tmp_path / "out" / "x.nii.gz").resolve()
    same = Case("x", tmp_path / "x.nii.gz")
    with pytest.raises(DataError, match="would overwrite the input"):
        output_path_for(same, tmp_path)
