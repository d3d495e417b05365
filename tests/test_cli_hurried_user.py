"""Inputs a hurried user types: empty paths, odd keys and sizes, one path given for two roles, files that are not
the command's own. Each gets one line naming the path or key (or a usage error), and no user file is replaced."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segkit.cli import main
from segkit.compare.spec import CompareRequest, resolve_comparison
from segkit.data import synth
from segkit.errors import ConfigError, SegkitError
from tests.cli_run import run_cli


def _labels(folder: Path, name: str, array: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(array.astype(np.uint8), np.eye(4)), str(path))
    return path


def _cube(label: int = 1) -> np.ndarray:
    array = np.zeros((8, 8, 8), np.uint8)
    array[2:6, 2:6, 2:6] = label
    return array


@pytest.mark.parametrize("argv", [
    ["predict", "--checkpoint", "c", "--input", "i", "--output", ""],
    ["predict", "--checkpoint", "c", "--input", "", "--output", "o"],
    ["evaluate", "--pred", "", "--ref", "r"],
    ["evaluate", "--pred", "p", "--ref", "r", "--csv", " "],
    ["data", "synth", "--out", ""],
    ["data", "check", "d", "--json", ""],
    ["data", "convert", "--input", "d", "--output", ""],
    ["config", "show", "--config", ""],
    ["export", "--checkpoint", "c", "--format", "onnx", "--out", ""],
    ["compare", "--config", "c.yaml", "--vary", "model.upsample=a,b", "--out", ""],
])
def test_an_empty_path_is_a_usage_error(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # Path("") is this folder: before, predictions and reports landed here
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "empty path" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_an_empty_base_in_a_config_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text('base: ""\n', encoding="utf-8")
    done = run_cli("config", "show", "--config", "c.yaml", cwd=tmp_path)
    assert done.returncode == 1 and "c.yaml: base: config name is empty" in done.stderr
    assert "unexpected" not in done.stderr


@pytest.mark.parametrize("item", [".epochs=3", "train..epochs=3", "train.=3"])
def test_a_set_key_with_an_empty_part_is_refused(item: str, tmp_path: Path) -> None:
    done = run_cli("config", "show", "--config", "demo_unet_resnet34.yaml", "--set", item, cwd=tmp_path)
    assert done.returncode == 1 and "has an empty part between its dots" in done.stderr
    assert "unexpected" not in done.stderr


def test_spaces_around_the_dots_of_a_set_key_are_ignored(tmp_path: Path) -> None:
    done = run_cli("config", "show", "--config", "demo_unet_resnet34.yaml", "--set", "train. epochs=7", cwd=tmp_path)
    assert done.returncode == 0 and "epochs: 7" in done.stdout


def test_an_unknown_nested_key_from_set_is_blamed_on_set(tmp_path: Path) -> None:
    done = run_cli("config", "show", "--config", "demo_unet_resnet34.yaml", "--set", "train.foo.bar=1", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.startswith("error: --set: unknown key 'train.foo'")


def test_a_count_no_run_can_use_is_refused_by_the_config(tmp_path: Path) -> None:
    done = run_cli("config", "show", "--config", "demo_unet_resnet34.yaml", "--set",
                   "train.batch_size=99999999999999999999", cwd=tmp_path)
    assert done.returncode == 1
    assert "--set: train.batch_size: Input should be less than 2147483648" in done.stderr


def test_synth_refuses_sizes_and_counts_it_cannot_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    done = run_cli("data", "synth", "--out", "big", "--size", "100000", "100000", "100000", cwd=tmp_path)
    assert done.returncode == 1 and "over synth's limit of 2**27" in done.stderr and not (tmp_path / "big").exists()
    monkeypatch.setattr(synth, "make_case", lambda *a, **k: pytest.fail("a phantom was generated"))
    with pytest.raises(SegkitError, match=f"--cases {synth.MAX_CASES + 1}: at most {synth.MAX_CASES} phantoms"):
        synth.write_dataset(tmp_path / "many", synth.MAX_CASES + 1, 0, (1, 1, 1))
    assert not (tmp_path / "many").exists()


def test_synth_writes_phantoms_with_an_axis_of_two_voxels(tmp_path: Path) -> None:
    done = run_cli("data", "synth", "--out", "thin", "--cases", "2", "--size", "2", "2", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "thin" / "imagesTr").iterdir())) == 1


def test_synth_out_that_is_a_file_or_lies_below_one(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    done = run_cli("data", "synth", "--out", "notes.txt", "--cases", "2", "--size", "4", "8", "8", cwd=tmp_path)
    assert done.returncode == 1 and "--out notes.txt: a file, not a folder" in done.stderr
    done = run_cli("data", "synth", "--out", "notes.txt/sub", "--cases", "2", "--size", "4", "8", "8", cwd=tmp_path)
    assert done.returncode == 1 and "--out notes.txt/sub: cannot create the folder (Not a directory)" in done.stderr
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_synth_negative_seed_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # before, synth created x/ and then failed on the seed
    with pytest.raises(SystemExit) as info:
        main(["data", "synth", "--out", "x", "--seed", "-1"])
    assert info.value.code == 2 and "argument --seed: must be 0 or more, got -1" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "expected"), [
    (["predict", "--checkpoint", "c", "--input", "i", "--output", "o", "--workers", "two"],
     "argument --workers: must be a positive integer, got two"),
    (["predict", "--checkpoint", "c", "--input", "i", "--output", "o", "--sw-batch-size", "many"],
     "argument --sw-batch-size: must be a positive integer, got many"),
    (["data", "synth", "--out", "x", "--seed", "x1"], "argument --seed: must be 0 or more, got x1"),
    (["evaluate", "--pred", "p", "--ref", "r", "--tolerance", "1mm"],
     "argument --tolerance: must be a positive number, got 1mm"),
])
def test_a_value_that_is_not_a_number_says_what_the_flag_takes(argv: list[str], expected: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # before: "invalid _positive value: 'two'", naming a function of segkit's
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and expected in err and "invalid" not in err


def test_compare_refuses_more_runs_than_it_can_plan(tmp_path: Path) -> None:
    request = CompareRequest("demo_unet_resnet34.yaml", ("model.upsample=nearest,linear",), seeds=99999999999,
                             out=tmp_path / "cmp")
    with pytest.raises(ConfigError, match=r"--seeds 99999999999: 2 variant\(s\) × 99999999999 seed\(s\)"):
        resolve_comparison(request)


def test_data_check_never_replaces_a_file_it_did_not_write(tiny_dataset: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "ds"
    shutil.copytree(tiny_dataset, dataset)
    manifest = (dataset / "dataset.json").read_text(encoding="utf-8")
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    for target in (dataset / "dataset.json", tmp_path / "notes.txt"):
        done = run_cli("data", "check", "ds", "--json", target, cwd=tmp_path)
        assert done.returncode == 1
        assert "is not a report segkit data check wrote, which it never replaces" in done.stderr
    assert (dataset / "dataset.json").read_text(encoding="utf-8") == manifest
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"
    done = run_cli("data", "check", "ds", "--json", tmp_path, cwd=tmp_path)
    assert done.returncode == 1 and "is a folder — give a file path for the report" in done.stderr
    for _ in range(2):  # its own report is replaced
        assert run_cli("data", "check", "ds", "--json", "report.json", cwd=tmp_path).returncode == 0


def test_evaluate_refuses_one_folder_as_predictions_and_references(tmp_path: Path) -> None:
    _labels(tmp_path / "labels", "a", _cube())
    done = run_cli("evaluate", "--pred", "labels", "--ref", "./labels/", cwd=tmp_path)
    assert done.returncode == 1 and "--pred labels and --ref labels are the same folder" in done.stderr
    assert [p.name for p in (tmp_path / "labels").iterdir()] == ["a.nii.gz"]


def test_evaluate_refuses_one_file_as_csv_and_summary(tmp_path: Path) -> None:
    _labels(tmp_path / "ref", "a", _cube())
    _labels(tmp_path / "pred", "a", _cube())
    done = run_cli("evaluate", "--pred", "pred", "--ref", "ref", "--csv", "e.csv", "--summary", "./e.csv",
                   cwd=tmp_path)
    assert done.returncode == 1 and "--csv and --summary are both e.csv" in done.stderr
    assert not (tmp_path / "e.csv").exists()


def test_evaluate_a_class_count_that_does_not_fit_in_memory(tmp_path: Path) -> None:
    _labels(tmp_path / "ref", "a", _cube())
    _labels(tmp_path / "pred", "a", _cube())
    done = run_cli("evaluate", "--pred", "pred", "--ref", "ref", "--num-classes", "99999999999", cwd=tmp_path)
    assert done.returncode == 1 and "unexpected" not in done.stderr
    assert "pred/a.nii.gz: scoring one array per class for --num-classes 99999999999 does not fit in memory" \
        in done.stderr


def test_evaluate_problems_are_error_lines_on_stderr(tmp_path: Path) -> None:
    _labels(tmp_path / "ref", "a", _cube())
    _labels(tmp_path / "pred", "a", _cube())
    _labels(tmp_path / "pred", "stray", _cube())
    done = run_cli("evaluate", "--pred", "pred", "--ref", "ref", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: pred/stray.nii.gz: no reference for this case in ref; not scored"


def test_a_number_as_a_config_key_is_blamed_on_its_file(tmp_path: Path) -> None:
    (tmp_path / "k.yaml").write_text("{1: 2}\n", encoding="utf-8")
    done = run_cli("config", "show", "--config", "k.yaml", cwd=tmp_path)
    assert done.returncode == 1 and done.stderr == "error: k.yaml: 1: Keys should be strings (got 1)\n"


def test_a_vary_list_ending_in_a_comma_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--vary 'model.upsample=nearest,': ends with a comma, an empty value; "
                                          r"list every value, e.g. model.upsample=transposed,nearest$"):
        resolve_comparison(CompareRequest("demo_unet_resnet34.yaml", ("model.upsample=nearest,",)))


def test_a_dataset_folder_given_on_the_command_line_is_named_as_given(tmp_path: Path) -> None:
    check = run_cli("data", "check", "nonexist", cwd=tmp_path)
    convert = run_cli("data", "convert", "--input", "nonexist", "--output", "out", cwd=tmp_path)
    assert check.stderr == "error: nonexist: no such folder (create demo data with 'segkit data synth --out DIR')\n"
    assert convert.stderr == ("error: --input nonexist: no such folder (create demo data with 'segkit data synth "
                              "--out DIR')\n")


def test_an_encoder_given_twice_is_listed_once(tmp_path: Path) -> None:
    from segkit.pipelines.models import summaries

    rows = summaries(["resnet18", "resnet18"], [2, 2])
    assert [(row.encoder, row.spatial_dims) for row in rows] == [("resnet18", 2)]


def test_a_compare_spec_given_to_train_says_to_run_compare(tmp_path: Path) -> None:
    import segkit.configs

    done = run_cli("train", "--config", "compare/upsampling_demo.yaml", cwd=tmp_path)
    packaged = Path(segkit.configs.__path__[0]) / "compare" / "upsampling_demo.yaml"
    assert done.returncode == 1  # before: "unknown key 'compare': valid keys: run_dir, seed, …"
    assert done.stderr.strip() == (f"error: {packaged}: a compare spec (it has a top-level 'compare' section), not a "
                                   f"training config — run segkit compare --config {packaged}")
