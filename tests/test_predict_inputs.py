"""Predict inputs: collecting files (symbolic links kept as given), channel grouping for multi-channel models,
inputs that cannot be cases (reported, not fatal) and output paths."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from segkit.pipelines.predict_inputs import collect_inputs, group_channels, output_path_for

from segkit.data.cases import Case
from segkit.errors import DataError


def _image(path: Path, shape: tuple[int, ...] = (6, 5, 4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), np.eye(4)), path)
    return path


def _messages(problems) -> dict[str, str]:
    return {p.case_id: p.message for p in problems}


def test_single_channel_inputs_are_one_case_each_without_nnunets_channel_number() -> None:
    files = [Path("/in/a.nii.gz"), Path("/in/b_0000.nii.gz"), Path("/in/c_0001.nii.gz")]
    cases, problems = group_channels(files, channels=1)
    assert [c.case_id for c in cases] == ["a", "b", "c_0001"] and problems == []


def test_channel_files_are_grouped_in_order() -> None:
    files = [Path(f"/in/{name}") for name in ("x_0001.nii.gz", "x_0000.nii.gz", "y_0000.nii.gz", "y_0001.nii.gz")]
    cases, problems = group_channels(files, channels=2)
    assert [(c.case_id, [p.name for p in c.images]) for c in cases] == [
        ("x", ["x_0000.nii.gz", "x_0001.nii.gz"]), ("y", ["y_0000.nii.gz", "y_0001.nii.gz"])]
    assert problems == []


def test_incomplete_or_unnamed_channels_fail_their_case_only(tmp_path: Path) -> None:
    files = [_image(tmp_path / name) for name in ("x_0000.nii.gz", "y_0000.nii.gz", "y_0001.nii.gz", "z.nii.gz")]
    cases, problems = group_channels(files, channels=2)
    assert [c.case_id for c in cases] == ["y"]
    messages = _messages(problems)
    assert set(messages) == {"x", "z"}
    assert f"{tmp_path / 'x'}: found channel file(s) _0000, the model needs _0000 to _0001" in messages["x"]
    assert "name inputs CASE_0000 … CASE_0001" in messages["z"] and "this one is 6×5×4" in messages["z"]


def test_a_missing_or_an_extra_channel_file_is_named_with_its_fix() -> None:
    names = ("x_0000.nii.gz", "e_0000.nii.gz", "e_0001.nii.gz", "e_0002.nii.gz", "g_0000.nii.gz", "g_0002.nii.gz")
    _, problems = group_channels([Path(f"/in/{name}") for name in names], channels=2)
    messages = _messages(problems)
    assert messages["x"].endswith("— add the missing _0001, or remove the case from the input")
    assert messages["e"] == ("/in/e: found channel file(s) _0000, _0001, _0002, the model needs _0000 to _0001 — "
                             "remove _0002 (the model takes 2 channel(s)), or remove the case from the input")
    assert messages["g"].endswith("— add the missing _0001 and remove _0002 (the model takes 2 channel(s)), or "
                                  "remove the case from the input")  # before: "add the missing channels" for all


def test_one_file_holding_every_channel_is_a_case(tmp_path: Path) -> None:
    four_d = _image(tmp_path / "msd.nii.gz", (6, 5, 4, 2))
    three = _image(tmp_path / "wrong.nii.gz", (6, 5, 4, 3))
    cases, problems = group_channels([four_d, three], channels=2)
    assert [(c.case_id, c.images) for c in cases] == [("msd", (four_d,))]
    assert "this one is 6×5×4×3" in _messages(problems)["wrong"]


def test_inputs_sharing_a_case_id_all_fail_naming_each_other(tmp_path: Path) -> None:
    a, b = _image(tmp_path / "a" / "case.nii.gz"), _image(tmp_path / "b" / "case.nii.gz")
    nrrd, mha = tmp_path / "a" / "scan.nrrd", tmp_path / "a" / "scan.mha"
    other = _image(tmp_path / "a" / "other.nii.gz")
    cases, problems = group_channels([a, b, nrrd, mha, other], channels=1)
    assert [c.case_id for c in cases] == ["other"]
    by_source = {p.source: p.message for p in problems}
    assert set(by_source) == {a, b, nrrd, mha}
    assert f"case id 'case' also comes from {b}" in by_source[a] and f"also comes from {a}" in by_source[b]
    assert f"also comes from {mha}" in by_source[nrrd] and "separate --output folders" in by_source[mha]


def test_symbolic_links_keep_their_own_names_and_a_broken_one_is_reported(tmp_path: Path) -> None:
    target = _image(tmp_path / "store" / "orig.nii.gz")
    links = tmp_path / "links"
    links.mkdir()
    for name in ("patientA", "patientB"):
        (links / f"{name}.nii.gz").symlink_to(target)
    (links / "patientC.nii.gz").symlink_to(tmp_path / "missing.nii.gz")
    files = collect_inputs([str(links)])
    assert [p.name for p in files] == ["patientA.nii.gz", "patientB.nii.gz", "patientC.nii.gz"]
    assert all(p.is_absolute() and p.parent == links for p in files)
    cases, problems = group_channels(files, channels=1)
    assert [c.case_id for c in cases] == ["patientA", "patientB"]
    assert _messages(problems) == {"patientC": f"{links / 'patientC.nii.gz'}: broken symbolic link (to "
                                               f"{tmp_path / 'missing.nii.gz'}) — fix the link or remove it"}
    assert output_path_for(cases[0], tmp_path / "out") == (tmp_path / "out" / "patientA.nii.gz").resolve()


def test_the_same_file_given_twice_is_one_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = _image(tmp_path / "in" / "x.nii.gz")
    monkeypatch.chdir(tmp_path)
    assert collect_inputs(["in/x.nii.gz", str(image), "in"]) == [image]


def test_output_path_stays_inside_and_never_overwrites_an_input(tmp_path: Path) -> None:
    case = Case("x", tmp_path / "in" / "x_0000.nii.gz", None, (tmp_path / "in" / "x_0001.nii.gz",))
    assert output_path_for(case, tmp_path / "out") == (tmp_path / "out" / "x.nii.gz").resolve()
    same = Case("x", tmp_path / "x.nii.gz")
    with pytest.raises(DataError, match="would overwrite the input"):
        output_path_for(same, tmp_path)
    (tmp_path / "link.nii.gz").symlink_to(tmp_path / "x.nii.gz")  # through a link, still the input's file
    with pytest.raises(DataError, match="would overwrite the input"):
        output_path_for(Case("x", tmp_path / "link.nii.gz"), tmp_path)


def test_no_image_files_names_every_suffix_segkit_reads(tmp_path: Path) -> None:
    from segkit.io.atomic import IMAGE_SUFFIXES

    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DataError) as raised:
        collect_inputs([str(tmp_path)])
    assert str(raised.value) == f"no image files ({', '.join(IMAGE_SUFFIXES)}) found in {tmp_path}"
    assert ".png" in str(raised.value) and ".tiff" in str(raised.value)


def test_a_colour_png_is_one_case_for_a_three_channel_2d_model(tmp_path: Path) -> None:
    import SimpleITK as sitk

    path = tmp_path / "rgb.png"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 7, 3), np.uint8), isVector=True), str(path))
    cases, problems = group_channels([path], channels=3, image_dims=2)
    assert [c.case_id for c in cases] == ["rgb"] and problems == []
    cases, problems = group_channels([path], channels=3)  # a 3D model wants 4D files
    assert cases == [] and "this one is 7×5×3" in problems[0].message
