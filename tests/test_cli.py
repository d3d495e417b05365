"""The CLI surface: subcommands, registry listing, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from segkit.cli import build_parser, main


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for command in ("train", "predict", "evaluate", "data", "config", "models"):
        assert command in text


def test_models_lists_registered_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--encoder", "densenet121", "--dims", "3"]) == 0
    text = capsys.readouterr().out
    assert "densenet121" in text and "3D" in text and "pixelshuffle" in text and "concat" in text


def test_train_with_missing_dataset_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--config", "demo_unet_resnet34.yaml", "--set", f"data.root={tmp_path / 'none'}",
                 "--set", f"run_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 1
    assert "data.root" in err and "segkit data synth" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing created for a run that could not start


def test_predict_with_missing_checkpoint_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "case.nii.gz").write_bytes(b"")
    code = main(["predict", "--checkpoint", str(tmp_path / "nope"), "--input", str(tmp_path),
                 "--output", str(tmp_path / "out")])
    assert code == 1
    assert "no such checkpoint" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "case.nii.gz").write_bytes(b"")
    main(["--debug", "predict", "--checkpoint", str(tmp_path / "nope"), "--input", str(tmp_path),
          "--output", str(tmp_path / "out")])
    assert "Traceback" in capsys.readouterr().err


def test_patch_too_small_for_instance_norm_is_refused(tiny_dataset: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--config", "demo_unet_resnet34.yaml", "--set", f"data.root={tiny_dataset}",
                 "--set", f"run_dir={tmp_path / 'run'}", "--set", "model.norm=instance",
                 "--set", "train.patch_size=[32,32,32]", "--set", "infer.roi_size=[32,32,32]"])
    assert code == 1
    assert "too few for instance norm" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["predict", "--checkpoint", "c", "--input", "i", "--output", "o", "--workers", "0"],
                                  ["bogus"], ["train", "--overlap", "0.5"]])
def test_a_usage_error_is_one_line_pointing_at_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "usage:" not in err
    assert " error: " in err and err.rstrip().endswith("--help")


def test_a_file_given_as_a_folder_says_it_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert main(["data", "check", str(notes)]) == 1
    assert capsys.readouterr().err.startswith(f"error: {notes}: a file, not a dataset folder")  # named as given
    assert main(["train", "--resume", str(notes)]) == 1
    assert f"{notes}: a file, not a run folder" in capsys.readouterr().err


def test_version_names_segkit_torch_and_monai(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    import segkit

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0  # before: "the following arguments are required: COMMAND", exit 2
    assert capsys.readouterr().out.strip() == (f"segkit {segkit.__version__} (torch {version('torch')}, monai "
                                               f"{version('monai')})")
