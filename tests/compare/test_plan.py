"""Compare specs, the factorial plan, run folder names, finished-run detection and one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from segkit.cli import main
from segkit.compare.plan import (
    RESULT,
    comparable_config,
    config_digest,
    find_variant,
    is_finished,
    make_variants,
    plan_record,
    plan_runs,
    run_folder,
)
from segkit.compare.spec import CompareRequest, resolve_comparison
from segkit.config_loading import resolve_config_path
from segkit.errors import ConfigError
from tests.conftest import write_yaml


def test_unknown_vary_key_is_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compare", "--config", "demo_unet_resnet34.yaml", "--vary", "model.upsampel=nearest,linear",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--vary model.upsampel: unknown config key; did you mean 'model.upsample'?" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("vary", "expected"), [
    ("model.upsample=transposed,bogus", "--vary model.upsample=bogus: model.upsample: unknown"),
    ("seed=1,2", "use --seeds"),
    ("model.upsample=nearest,nearest", "listed twice"),
    ("model.upsample", "expected KEY=VALUE1,VALUE2"),
    ("model.decoder_channels=[64,32,16,8,4],[32,16]", "--vary model.decoder_channels=[32,16]: "
                                                      "model.decoder_channels: encoder 'resnet34' has 5 stages, so "
                                                      "give 5 values (got 2)"),
    ("train.class_weights=[1,2,2,2]", "--vary train.class_weights=[1,2,2,2]: train.class_weights"),
    ("data.cache_dir=null,'null'", "--vary data.cache_dir: values null and \"null\" are both shown as 'null', and "
                                   "the report groups runs by that label; list values that read differently"),
])
def test_bad_vary_values_are_one_line(vary: str, expected: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--config", "demo_unet_resnet34.yaml", "--vary", vary, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


@pytest.mark.parametrize(("vary", "expected"), [
    ("train.lr=0.01,1e-2", '--vary train.lr: 0.01 and "1e-2" are the same value once validated (0.01), so two '
                           "variants would be the same run; list each value once"),
    ("train.patch_size=[64,64,32],[64,64,32.0]", "--vary train.patch_size: [64, 64, 32] and [64, 64, 32.0] are the "
                                                 "same value once validated ([64, 64, 32])"),
])
def test_values_equal_once_validated_are_refused_before_anything_runs(
        vary: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["compare", "--config", "demo_unet_resnet34.yaml", "--vary", "model.fusion=concat,add",
                 "--vary", vary, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_values_equal_once_validated_in_a_spec_name_the_spec(tmp_path: Path) -> None:
    spec = write_yaml(tmp_path / "spec.yaml", {"compare": {"config": "demo_unet_resnet34.yaml",
                                                            "vary": {"train.lr": [0.001, "1e-3"]}}})
    comparison = resolve_comparison(CompareRequest(str(spec), out=tmp_path / "out", seeds=1))
    with pytest.raises(ConfigError, match=r"spec.yaml: compare.vary: train.lr: 0.001 and \"1e-3\" are the same value"):
        plan_runs(comparison)
    distinct = resolve_comparison(CompareRequest(str(spec), ("train.lr=0.001,0.01",), out=tmp_path / "out", seeds=1))
    assert [r.config.train.lr for r in plan_runs(distinct)[1]] == [0.001, 0.01]


def test_a_key_in_two_vary_flags_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--config", "demo_unet_resnet34.yaml", "--vary", "model.upsample=nearest,linear",
                 "--vary", "model.fusion=concat,add", "--vary", "model.upsample=transposed",
                 "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert ("--vary model.upsample is given twice ('nearest,linear' and 'transposed'); give all its values in one "
            "flag, e.g. --vary model.upsample=nearest,linear,transposed") in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fixed", ["model.upsample=linear", "model={upsample: linear}"])
def test_a_key_both_set_and_varied_is_refused_naming_it(fixed: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["compare", "--config", "demo_unet_resnet34.yaml", "--vary", "model.upsample=transposed,nearest",
                 "--set", fixed, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"--set {fixed} and --vary model.upsample: the key is both fixed and varied" in err
    assert not out.exists()


def test_a_spec_key_both_set_and_varied_is_refused_naming_the_spec(tmp_path: Path) -> None:
    spec = write_yaml(tmp_path / "spec.yaml", {"compare": {"config": "demo_unet_resnet34.yaml",
                                                            "set": {"train.lr": 0.01}}})
    with pytest.raises(ConfigError, match=r"spec.yaml: compare.set: train.lr=0.01 and --vary train.lr: the key is "
                                          r"both fixed and varied.*drop train.lr from .*spec.yaml: compare.set"):
        resolve_comparison(CompareRequest(str(spec), ("train.lr=0.001,0.1",), out=tmp_path / "out"))


def test_labels_of_keys_with_the_same_last_part_stay_distinguishable() -> None:
    variants = make_variants({"train.memory_format": ["channels_last", "contiguous"],
                              "infer.memory_format": ["channels_last"], "model.upsample": ["nearest"]})
    assert [v.label for v in variants] == [
        "train.memory_format=channels_last, infer.memory_format=channels_last, upsample=nearest",
        "train.memory_format=contiguous, infer.memory_format=channels_last, upsample=nearest"]
    nested = make_variants({"a.b.c": [1], "d.b.c": [2], "b.x": [3]})
    assert nested[0].label == "a.b.c=1, d.b.c=2, x=3"


def test_full_factorial_with_sanitised_folders(tmp_path: Path) -> None:
    variants = make_variants({"model.upsample": ["transposed", "../../up"], "train.patch_size": [[64, 64], [96, 96]],
                              "data.window": ["a/b", "a-b"]})
    assert len(variants) == 8
    slugs = [v.slug for v in variants]
    assert len(set(slugs)) == 8 and all(set(s) <= set("abcdefghijklmnopqrstuvwxyz0123456789_.-") for s in slugs)
    assert slugs[0].startswith("upsample-transposed_patch_size-64-64_window-a-b-")  # a/b vs a-b: made unique
    for variant in variants:
        folder = run_folder(tmp_path, variant, 3)
        assert folder.resolve().is_relative_to(tmp_path.resolve()) and folder.name == "seed3"
        assert ".." not in folder.parts
    assert find_variant(variants, variants[2].label) is variants[2]
    with pytest.raises(ConfigError, match="--baseline nope: not one of the variants"):
        find_variant(variants, "nope")


def test_packaged_demo_spec_plans_every_variant_and_seed(tmp_path: Path) -> None:
    assert resolve_config_path("compare/upsampling_demo.yaml").is_file()
    comparison = resolve_comparison(CompareRequest("compare/upsampling_demo.yaml", out=tmp_path, seeds=2))
    variants, runs = plan_runs(comparison)
    assert [v.label for v in variants] == ["transposed", "nearest", "linear", "pixelshuffle"]
    assert len(runs) == 8 and [r.seed for r in runs] == [0] * 4 + [1] * 4
    for run in runs:
        assert run.config.model.upsample == run.variant.label and run.config.seed == run.seed
        assert run.config.run_dir == run.folder / "train"
        assert run.folder == tmp_path / "runs" / f"upsample-{run.variant.label}" / f"seed{run.seed}"


def test_flags_override_the_spec(tmp_path: Path) -> None:
    spec = write_yaml(tmp_path / "spec.yaml", {"compare": {
        "config": "demo_unet_resnet34.yaml", "vary": {"model.upsample": ["transposed", "nearest"],
                                                      "model.fusion": ["concat", "add"]},
        "set": {"train.epochs": 3}, "seeds": 4, "baseline": "upsample=nearest, fusion=add", "out": "x"}})
    comparison = resolve_comparison(CompareRequest(str(spec), ("model.fusion=add",), ("train.epochs=5",), 2,
                                                   tmp_path / "o", None))
    assert comparison.vary == {"model.upsample": ["transposed", "nearest"], "model.fusion": ["add"]}
    assert comparison.notes == ("--vary model.fusion replaces the spec's values ['concat', 'add'] with ['add']",
                                "--set train.epochs replaces the spec's 3 with 5")
    assert comparison.overrides == ("train.epochs=5",)  # one value per key: the command line's
    assert comparison.seeds == 2 and comparison.out == tmp_path / "o"
    assert comparison.baseline == "upsample=nearest, fusion=add"
    _, runs = plan_runs(comparison)
    assert {r.config.train.epochs for r in runs} == {5}  # --set comes after the spec's set
    assert {r.config.model.fusion for r in runs} == {"add"}


def test_spec_with_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    spec = write_yaml(tmp_path / "spec.yaml", {"compare": {"config": "demo_unet_resnet34.yaml",
                                                            "vray": {"model.upsample": ["nearest"]}}})
    with pytest.raises(ConfigError, match=r"spec.yaml: unknown key 'compare.vray': did you mean 'compare.vary'\?"):
        resolve_comparison(CompareRequest(str(spec), out=tmp_path))


def test_a_result_from_another_config_is_an_error(tmp_path: Path) -> None:
    comparison = resolve_comparison(CompareRequest("demo_unet_resnet34.yaml", ("model.upsample=nearest",),
                                                   out=tmp_path, seeds=1))
    run = plan_runs(comparison)[1][0]
    assert not is_finished(run, ["a", "b"])
    run.folder.mkdir(parents=True)
    stored = comparable_config(run.config)
    stored["train"]["epochs"] = 99
    (run.folder / RESULT).write_text(json.dumps({"config_digest": "0", "config": stored}))
    with pytest.raises(ConfigError, match=r"seed0: finished with a different config \(train.epochs: 99 then, 8 now"):
        is_finished(run, ["a", "b"])


def test_a_result_on_other_held_out_cases_is_an_error(tmp_path: Path) -> None:
    comparison = resolve_comparison(CompareRequest("demo_unet_resnet34.yaml", ("model.upsample=nearest",),
                                                   out=tmp_path, seeds=1))
    run = plan_runs(comparison)[1][0]
    run.folder.mkdir(parents=True)
    (run.folder / RESULT).write_text(json.dumps({"config_digest": config_digest(run.config), "cases": ["b", "a"]}))
    assert is_finished(run, ["a", "b"])
    with pytest.raises(ConfigError, match=r"seed0: finished on other held-out cases \(2 then, 3 now"):
        is_finished(run, ["a", "b", "c"])


@pytest.mark.parametrize("key", ["data.root", "data.format", "data"])
def test_varying_the_dataset_is_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError, match=f"--vary {key}: it chooses the dataset"):
        resolve_comparison(CompareRequest("demo_unet_resnet34.yaml", (f"{key}=a,b",), out=tmp_path, seeds=1))


def test_a_prepared_run_reads_back_for_a_worker_process(tmp_path: Path) -> None:
    from segkit.pipelines.compare import load_prepared, prepare_run

    comparison = resolve_comparison(CompareRequest("demo_unet_resnet34.yaml", ("model.upsample=pixelshuffle",
                                                                                "train.lr=0.001,0.003"),
                                                   out=tmp_path, seeds=2))
    run = plan_runs(comparison)[1][-1]
    prepare_run(run)
    again = load_prepared(run.folder)
    assert again == run and again.config.train.lr == 0.003 and again.seed == 1


def test_a_dataset_without_labelled_test_cases_is_refused_before_anything_trains(
        tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    shutil.rmtree(root / "labelsTs")
    out = tmp_path / "out"
    assert main(["compare", "--config", "demo_unet_resnet34.yaml", "--vary", "model.upsample=nearest,linear",
                 "--set", f"data.root={root}", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no held-out (test) cases with reference labels" in err and err.count("\n") == 1
    assert not out.exists()


def test_an_out_folder_holding_other_files_is_refused(tiny_dataset: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "project"
    out.mkdir()
    (out / "report.md").write_text("my notes")
    assert main(["compare", "--config", "demo_unet_resnet34.yaml", "--vary", "model.upsample=nearest,linear",
                 "--set", f"data.root={tiny_dataset}", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not a segkit comparison; choose a new or empty folder" in err and err.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["report.md"] and (out / "report.md").read_text() == "my notes"
    (tmp_path / "file").write_text("")
    assert main(["compare", "--config", "demo_unet_resnet34.yaml", "--vary", "model.upsample=nearest,linear",
                 "--set", f"data.root={tiny_dataset}", "--out", str(tmp_path / "file" / "sub")]) == 1
    assert "cannot create the folder" in capsys.readouterr().err


def _finished(run, held_out: list[str], **changes) -> None:
    """A fake ``result.json`` for ``run`` (its config with ``changes`` applied to ``train``)."""
    config = comparable_config(run.config)
    config["train"].update(changes)
    digest = "other" if changes else config_digest(run.config)
    run.folder.mkdir(parents=True, exist_ok=True)
    (run.folder / RESULT).write_text(json.dumps({"config_digest": digest, "config": config, "cases": held_out}))


def test_a_refused_rerun_leaves_the_plan_as_it_was(tiny_dataset: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A finished run with another config refuses the command before compare.json is rewritten, so --report-only
    still describes the runs that exist."""
    out = tmp_path / "out"
    args = ["compare", "--config", "demo_unet_resnet34.yaml", "--vary", "model.upsample=nearest,linear",
            "--seeds", "1", "--out", str(out), "--set", f"data.root={tiny_dataset}"]
    comparison = resolve_comparison(CompareRequest("demo_unet_resnet34.yaml", ("model.upsample=nearest,linear",),
                                                   (f"data.root={tiny_dataset}",), 1, out))
    variants, runs = plan_runs(comparison)
    plan = out / "compare.json"
    out.mkdir()
    plan.write_text(json.dumps(plan_record(comparison, variants, runs, variants[0])))
    before = plan.read_bytes()
    _finished(runs[0], ["phantom_004"])
    assert main([*args, "train.lr=0.005"]) == 1
    err = capsys.readouterr().err
    assert "finished with a different config (train.lr: 0.002 then, 0.005 now)" in err and err.count("\n") == 1
    assert plan.read_bytes() == before


def test_report_only_refuses_a_result_whose_config_is_not_the_plans(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    comparison = resolve_comparison(CompareRequest("demo_unet_resnet34.yaml", ("model.upsample=nearest,linear",),
                                                   ("train.lr=0.005",), 1, out))
    variants, runs = plan_runs(comparison)
    out.mkdir()
    (out / "compare.json").write_text(json.dumps(plan_record(comparison, variants, runs, variants[0])))
    _finished(runs[0], ["a"], lr=0.002)
    assert main(["compare", "--report-only", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert (f"{runs[0].folder / RESULT}: made with another config than compare.json plans for it (train.lr: 0.002 in "
            "the result, 0.005 in the plan); rerun segkit compare with the settings it was made with, or delete that "
            "folder") in err
    assert not (out / "report.md").exists()


def test_a_yaml_alias_in_vary_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--config", "demo_unet_resnet34.yaml", "--vary", "train.lr=&x 0.1,*x",
                 "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "--vary train.lr: line 1: YAML alias *x; segkit configs take no anchors" in err and err.count("\n") == 1
