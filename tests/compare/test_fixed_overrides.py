"""Fixed overrides: one value per key (the command line's over the spec's), said in one line, and a rerun of the
same command (or of one from before the merge) still finds its finished runs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from segkit.cli import main
from segkit.compare.plan import config_digest, find_variant, plan_record, plan_runs
from segkit.compare.report import fixed_overrides
from segkit.compare.spec import CompareRequest, merge_fixed, resolve_comparison
from tests.compare.conftest import compare_base
from tests.conftest import write_yaml

DEMO_SET = ['model.spatial_dims=2', 'model.encoder="resnet18"', 'model.decoder_channels=[128, 64, 32, 16, 16]',
            'train.epochs=6', 'train.steps_per_epoch=30', 'train.batch_size=6', 'train.patch_size=[96, 96]',
            'train.val_every=1', 'infer.roi_size=[128, 128]', 'infer.sw_batch_size=8']  # compare/upsampling_demo


def _demo(out: Path, *overrides: str):
    return resolve_comparison(CompareRequest("compare/upsampling_demo.yaml",
                                             ("model.upsample=transposed,nearest,pixelshuffle",),
                                             (f"data.root={out / 'data'}", *overrides), None, out))


def _same_runs(comparison, overrides: list[str]) -> None:
    """The runs' configs equal those the same comparison with ``overrides`` gives: finished runs stay finished."""
    _, runs = plan_runs(comparison)
    _, before = plan_runs(dataclasses.replace(comparison, overrides=tuple(overrides)))
    assert [config_digest(r.config) for r in runs] == [config_digest(r.config) for r in before]


def test_the_command_line_value_replaces_the_specs_once(tmp_path: Path) -> None:
    comparison = _demo(tmp_path, "train.epochs=2", "train.steps_per_epoch=4", "train.batch_size=2")
    expected = [*DEMO_SET, f"data.root={tmp_path / 'data'}"]
    expected[3:6] = ["train.epochs=2", "train.steps_per_epoch=4", "train.batch_size=2"]
    assert list(comparison.overrides) == expected
    assert comparison.notes[0].startswith("--vary model.upsample replaces")  # the spec's 4 modes
    assert comparison.notes[1:] == ("--set train.epochs replaces the spec's 6 with 2",
                                    "--set train.steps_per_epoch replaces the spec's 30 with 4",
                                    "--set train.batch_size replaces the spec's 6 with 2")
    variants, runs = plan_runs(comparison)
    assert {(r.config.train.epochs, r.config.train.steps_per_epoch, r.config.train.batch_size) for r in runs} == {
        (2, 4, 2)}
    record = plan_record(comparison, variants, runs, find_variant(variants, None))
    assert record["overrides"] == expected
    # the list before the merge (the spec's set, then --set) loads the same run configs
    _same_runs(comparison, [*DEMO_SET, f"data.root={tmp_path / 'data'}", "train.epochs=2", "train.steps_per_epoch=4",
                            "train.batch_size=2"])


def test_a_section_given_whole_and_repeated_flags_keep_one_value_per_key(tmp_path: Path) -> None:
    given = ("train={epochs: 2, lr: 0.01}", "infer.sw_batch_size=8", "train.val_every=2", "train.val_every=3")
    comparison = _demo(tmp_path, *given)
    fixed = list(comparison.overrides)
    assert [item.partition("=")[0] for item in fixed] == [
        "model.spatial_dims", "model.encoder", "model.decoder_channels", "train.epochs", "train.steps_per_epoch",
        "train.batch_size", "train.patch_size", "train.val_every", "infer.roi_size", "infer.sw_batch_size",
        "data.root", "train.lr"]
    assert "train.epochs=2" in fixed and "train.val_every=3" in fixed and "train.lr=0.01" in fixed
    assert comparison.notes[1:] == ("--set train.epochs replaces the spec's 6 with 2",
                                    "--set train.val_every replaces the spec's 1 with 3")  # the same value: no note
    _same_runs(comparison, [*DEMO_SET, f"data.root={tmp_path / 'data'}", *given])


def test_a_value_replacing_a_section_drops_the_keys_inside_it() -> None:
    fixed, notes = merge_fixed([("spec.yaml: compare.set:", "train.augment.flip=0.1"),
                                ("spec.yaml: compare.set:", "train.lr=0.1"), ("--set", "train.augment=null")])
    assert fixed == ["train.augment=null", "train.lr=0.1"]
    assert notes == ["--set train.augment=null replaces the spec's train.augment.flip=0.1"]


def test_a_plan_written_before_the_merge_reports_one_value_per_key() -> None:
    plan = {"overrides": ["train.epochs=6", "train.batch_size=6", "data.root=/d", "train.epochs=2"]}
    assert fixed_overrides(plan) == ["train.epochs=2", "train.batch_size=6", "data.root=/d"]


@pytest.mark.slow
def test_compare_reports_and_records_the_command_lines_values_and_resumes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = compare_base(tmp_path)
    spec = write_yaml(tmp_path / "spec.yaml", {"compare": {
        "config": str(base), "vary": {"model.upsample": ["transposed", "nearest"]}, "seeds": 1,
        "set": {"train.epochs": 3, "train.steps_per_epoch": 5, "train.batch_size": 4}}})
    out = tmp_path / "out"
    args = ["compare", "--config", str(spec), "--set", "train.epochs=1", "train.steps_per_epoch=2",
            "train.batch_size=2", "--out", str(out)]
    assert main(args) == 0
    printed = " ".join(capsys.readouterr().out.split())
    for note in ("--set train.epochs replaces the spec's 3 with 1", "--set train.steps_per_epoch replaces the spec's "
                 "5 with 2", "--set train.batch_size replaces the spec's 4 with 2"):
        assert note in printed
    fixed = ["train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=2"]
    plan = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert plan["overrides"] == fixed
    line = "- Fixed overrides: `train.epochs=1`, `train.steps_per_epoch=2`, `train.batch_size=2`\n"
    assert line in (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "train.epochs=3" not in html and "train.epochs=1" in html
    for result in out.glob("runs/*/*/result.json"):
        assert json.loads(result.read_text(encoding="utf-8"))["config"]["train"]["epochs"] == 1

    # a folder made before the merge: its plan lists the spec's value and then --set's
    plan["overrides"] = ["train.epochs=3", "train.steps_per_epoch=5", "train.batch_size=4", *fixed]
    (out / "compare.json").write_text(json.dumps(plan), encoding="utf-8")
    assert main(["compare", "--report-only", str(out)]) == 0
    assert line in (out / "report.md").read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(args) == 0  # the same command again: every run is finished
    printed = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "2 runs (2 variants × 1 seeds) in" in printed and "2 finished already (skipped), 0 to run" in printed
    assert json.loads((out / "compare.json").read_text(encoding="utf-8"))["overrides"] == fixed
