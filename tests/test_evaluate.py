"""segkit evaluate: Dice, HD95 and NSD per case and class, CSV and markdown outputs, problems, CLI."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from rich.console import Console
from segkit.pipelines.evaluate import evaluate_folders, run_evaluation, spacing_from_affine
from segkit.pipelines.evaluation_files import CSV_FIRST_LINE

from segkit.cli import build_parser, main
from segkit.engine.metrics import dice_per_class, surface_metrics_per_class
from tests.cli_run import run_cli

SHAPE = (16, 12, 10)
ANISO = np.diag([2.0, 1.0, 3.0, 1.0])  # voxel size 2 × 1 × 3 mm along the array axes
# axes permuted and rotated: column norms are (2, 1, 3), row norms would be (1, 2, 3)
PERMUTED = np.array([[0.0, 1.0, 0.0, -5.0], [-2.0, 0.0, 0.0, 3.0], [0.0, 0.0, 3.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
DIAGONAL_MM = math.hypot(16 * 2.0, 12 * 1.0, 10 * 3.0)


def quiet() -> Console:
    return Console(file=io.StringIO(), width=200)


def save(folder: Path, name: str, labels: np.ndarray, affine: np.ndarray = ANISO) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), affine), path)
    return path


def cube(start: tuple[int, int, int], size: int = 4, label: int = 1) -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[tuple(slice(s, s + size) for s in start)] = label
    return labels


def blobs(seed: int) -> np.ndarray:
    """Three classes of overlapping boxes at random places."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(SHAPE, np.uint8)
    for label, size in ((1, 7), (2, 4), (3, 3)):
        corner = [int(rng.integers(0, n - size)) for n in SHAPE]
        labels[tuple(slice(c, c + size) for c in corner)] = label
    return labels


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_spacing_is_the_column_norms_in_array_axis_order() -> None:
    assert spacing_from_affine(ANISO, 3) == (2.0, 1.0, 3.0)
    assert spacing_from_affine(PERMUTED, 3) == pytest.approx((2.0, 1.0, 3.0))
    assert spacing_from_affine(np.diag([0.5, 0.7, 1.0]), 2) == pytest.approx((0.5, 0.7))  # 2D: 3×3 affine


def test_scores_equal_the_metric_functions_with_the_affine_spacing(tmp_path: Path) -> None:
    cases = {"a": (blobs(1), blobs(2), ANISO), "b": (blobs(3), blobs(3) * (blobs(4) > 0), PERMUTED)}
    for name, (ref, pred, affine) in cases.items():
        save(tmp_path / "ref", name, ref, affine)
        save(tmp_path / "pred", name, pred, affine)
    result = evaluate_folders(tmp_path / "pred", tmp_path / "ref", num_classes=4, tolerance_mm=2.0)
    assert result.case_ids == ["a", "b"] and result.tolerance_mm == 2.0 and not result.problems
    assert result.dice.shape == result.hd95.shape == result.nsd.shape == (2, 3)
    for i, (ref, pred, _) in enumerate(cases.values()):
        hd95, nsd = surface_metrics_per_class(pred, ref, 4, (2.0, 1.0, 3.0), 2.0)
        np.testing.assert_allclose(result.dice[i], dice_per_class(pred, ref, 4), equal_nan=True)
        np.testing.assert_allclose(result.hd95[i], hd95, equal_nan=True)
        np.testing.assert_allclose(result.nsd[i], nsd, equal_nan=True)
    isotropic, _ = surface_metrics_per_class(cases["a"][1], cases["a"][0], 4, (1.0, 1.0, 1.0), 2.0)
    assert not np.allclose(isotropic, result.hd95[0], equal_nan=True)  # the check above depends on the spacing
    assert result.mean == pytest.approx(np.nanmean(result.dice))


@pytest.mark.parametrize(("axis", "expected_mm"), [(0, 2.0), (1, 1.0), (2, 3.0)])
def test_cube_shifted_by_one_voxel_has_hd95_of_that_axis_spacing(tmp_path: Path, axis: int,
                                                                 expected_mm: float) -> None:
    # the shifted cube's leading face (16 of its 56 surface voxels, > 5 %) lies one voxel from the reference's
    # face; every other surface voxel is at most that far: both directed 95th percentiles are one voxel in mm
    ref = cube((2, 2, 2))
    save(tmp_path / "ref", "a", ref)
    save(tmp_path / "pred", "a", np.roll(ref, 1, axis=axis))
    result = evaluate_folders(tmp_path / "pred", tmp_path / "ref")
    assert result.hd95[0, 0] == pytest.approx(expected_mm)
    assert result.dice[0, 0] == pytest.approx(0.75)  # 48 of 64 voxels overlap


def test_disjoint_cube_hd95_is_the_distance_between_far_faces(tmp_path: Path) -> None:
    save(tmp_path / "ref", "a", cube((2, 2, 2)))
    save(tmp_path / "pred", "a", cube((8, 2, 2)))  # 6 voxels × 2 mm along axis 0
    result = evaluate_folders(tmp_path / "pred", tmp_path / "ref")
    assert result.hd95[0, 0] == pytest.approx(12.0)
    assert result.dice[0, 0] == 0.0 and result.nsd[0, 0] == 0.0


def test_csv_is_long_format_with_the_empty_structure_conventions(tmp_path: Path) -> None:
    ref = cube((2, 2, 2)) + cube((9, 6, 5), size=3, label=2)  # organ and vessel; lesion absent everywhere
    save(tmp_path / "ref", "a", ref)
    save(tmp_path / "ref", "b", ref)
    save(tmp_path / "pred", "a", cube((2, 2, 2)))  # vessel missed
    save(tmp_path / "pred", "b", ref)  # perfect
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "bg", "1": "organ", "2": "vessel"}}))
    result = run_evaluation(tmp_path / "pred", tmp_path / "ref", None, 4, quiet())
    rows = read_rows(tmp_path / "pred" / "evaluation.csv")
    assert list(rows[0]) == ["case", "class", "dice", "hd95_mm", "nsd"]
    assert [(r["case"], r["class"]) for r in rows] == [
        (case, name) for case in ("a", "b", "mean") for name in ("organ", "vessel", "class 3")]
    cell = {(r["case"], r["class"]): r for r in rows}
    assert cell["a", "vessel"] == {"case": "a", "class": "vessel", "dice": "0.000000",
                                   "hd95_mm": f"{DIAGONAL_MM:.6f}", "nsd": "0.000000"}
    assert cell["b", "vessel"]["dice"] == "1.000000" and cell["b", "vessel"]["hd95_mm"] == "0.000000"
    assert all(cell[case, "class 3"][key] == "" for case in ("a", "b", "mean") for key in ("dice", "hd95_mm", "nsd"))
    assert float(cell["mean", "vessel"]["dice"]) == pytest.approx(0.5)
    assert float(cell["mean", "vessel"]["hd95_mm"]) == pytest.approx(DIAGONAL_MM / 2)
    assert float(cell["mean", "vessel"]["nsd"]) == pytest.approx(0.5)
    assert result.absent_in_both().tolist() == [0, 0, 2]
    assert math.isnan(result.hd95[0, 2]) and math.isnan(result.nsd[1, 2])


def test_markdown_summary_has_every_section_and_the_numbers(tmp_path: Path) -> None:
    save(tmp_path / "ref", "a", cube((2, 2, 2)) + cube((9, 6, 5), size=3, label=2))
    save(tmp_path / "ref", "b", cube((3, 3, 3)))
    save(tmp_path / "pred", "a", cube((2, 2, 2)))
    save(tmp_path / "pred", "b", np.roll(cube((3, 3, 3)), 1, axis=2))
    summary = tmp_path / "out" / "report.md"
    result = run_evaluation(tmp_path / "pred", tmp_path / "ref", num_classes=3, console=quiet(), tolerance_mm=2.5,
                            summary_path=summary)
    text = summary.read_text(encoding="utf-8")
    for section in ("# Segmentation evaluation", "## Per class", "## Problems", "## Conventions"):
        assert section in text
    assert "NSD tolerance: 2.5 mm" in text and "Cases evaluated: 2" in text
    assert f"Mean foreground Dice: {result.mean:.4f}" in text
    organ = f"| class 1 | {np.mean(result.dice[:, 0]):.4f} ± {np.std(result.dice[:, 0]):.4f} | " \
            f"{np.mean(result.hd95[:, 0]):.2f} ± {np.std(result.hd95[:, 0]):.2f} | " \
            f"{np.mean(result.nsd[:, 0]):.4f} ± {np.std(result.nsd[:, 0]):.4f} | 2 | 0 |"
    assert organ in text
    assert f"| class 2 | 0.0000 ± 0.0000 | {DIAGONAL_MM:.2f} ± 0.00 | 0.0000 ± 0.0000 | 1 | 1 |" in text
    assert "None." in text.split("## Problems")[1]
    conventions = text.split("## Conventions")[1]
    assert "absent from both" in conventions and "diagonal of the volume" in conventions
    assert (tmp_path / "pred" / "evaluation.csv").is_file()  # CSV default beside the predictions


def test_missing_prediction_is_a_problem_and_the_others_are_evaluated(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        save(tmp_path / "ref", name, cube((2, 2, 2)))
    for name in ("a", "c"):
        save(tmp_path / "pred", name, cube((2, 2, 2)))
    result = run_evaluation(tmp_path / "pred", tmp_path / "ref", console=quiet())
    assert result.case_ids == ["a", "c"] and result.mean == 1.0
    assert len(result.problems) == 1 and "b.nii.gz" in result.problems[0] and "no prediction" in result.problems[0]
    assert "b.nii.gz: no prediction" in (tmp_path / "pred" / "evaluation.md").read_text(encoding="utf-8")


def test_grid_mismatch_is_reported_not_raised(tmp_path: Path) -> None:
    save(tmp_path / "ref", "a", cube((2, 2, 2)))
    save(tmp_path / "ref", "b", cube((2, 2, 2)))
    save(tmp_path / "pred", "a", cube((2, 2, 2)))
    save(tmp_path / "pred", "b", cube((2, 2, 2)), np.diag([1.0, 1.0, 3.0, 1.0]))  # other spacing
    console = quiet()
    result = run_evaluation(tmp_path / "pred", tmp_path / "ref", console=console)
    assert result.case_ids == ["a"]
    assert len(result.problems) == 1 and "grid" in result.problems[0]
    assert "grid" in (tmp_path / "pred" / "evaluation.md").read_text(encoding="utf-8")
    assert "warning" in console.file.getvalue()


def test_positional_arguments_and_console_output(tmp_path: Path) -> None:
    save(tmp_path / "ref", "a", cube((2, 2, 2)))
    save(tmp_path / "pred", "a", np.roll(cube((2, 2, 2)), 1, axis=0))
    console = quiet()
    run_evaluation(tmp_path / "pred", tmp_path / "ref", tmp_path / "x.csv", 2, console)
    text = console.file.getvalue()
    assert "Dice per case" in text and "HD95" in text and "NSD" in text
    assert "mean foreground Dice 0.7500" in text and "x.csv" in text and "evaluation.md" in text


def test_cli_writes_csv_and_summary(tmp_path: Path) -> None:
    save(tmp_path / "labels", "a", cube((2, 2, 2)))
    save(tmp_path / "preds", "a", cube((2, 2, 2)))
    done = run_cli("evaluate", "--pred", "preds", "--ref", "labels", "--tolerance", "0.5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "preds" / "evaluation.csv").is_file()
    assert "NSD tolerance: 0.5 mm" in (tmp_path / "preds" / "evaluation.md").read_text(encoding="utf-8")


def test_cli_with_problems_exits_1(tmp_path: Path) -> None:
    save(tmp_path / "labels", "a", cube((2, 2, 2)))
    save(tmp_path / "labels", "b", cube((2, 2, 2)))
    save(tmp_path / "preds", "a", cube((2, 2, 2)))
    assert main(["evaluate", "--pred", str(tmp_path / "preds"), "--ref", str(tmp_path / "labels"),
                 "--csv", str(tmp_path / "c.csv"), "--summary", str(tmp_path / "s.md")]) == 1
    assert (tmp_path / "c.csv").is_file() and (tmp_path / "s.md").is_file()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "abc"])
def test_non_positive_tolerance_is_an_argparse_error(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["evaluate", "--pred", "p", "--ref", "r", "--tolerance", value])
    assert info.value.code == 2 and "--tolerance" in capsys.readouterr().err
    assert build_parser().parse_args(["evaluate", "--pred", "p", "--ref", "r"]).tolerance == 1.0


def test_a_label_only_a_prediction_holds_is_a_problem_not_a_class(tmp_path: Path) -> None:
    ref = blobs(3)
    stray = ref.copy()
    stray[tuple(np.argwhere(ref == 0)[0])] = 9  # one background voxel
    save(tmp_path / "labels", "a", ref)
    save(tmp_path / "preds", "a", stray)
    save(tmp_path / "clean", "a", ref)
    result = evaluate_folders(tmp_path / "preds", tmp_path / "labels")
    clean = evaluate_folders(tmp_path / "clean", tmp_path / "labels")
    assert result.dice.shape == clean.dice.shape == (1, 3)  # classes 1..3 from the reference, not 1..9
    np.testing.assert_array_equal(result.dice, clean.dice)  # no Dice 0 for a class 9 in the mean
    assert result.problems == [f"{tmp_path / 'preds' / 'a.nii.gz'}: label 9 is in no reference (they hold labels "
                               "up to 3), so it is no class and its voxels count as background; the case's classes "
                               "are scored — check the model's classes, or give --num-classes"]


def test_prediction_without_reference_is_a_problem_and_exits_1(tmp_path: Path) -> None:
    for name in ("a", "b"):
        save(tmp_path / "ref", name, cube((2, 2, 2)))
        save(tmp_path / "pred", name, cube((2, 2, 2)))
    stray = save(tmp_path / "pred", "stray", cube((3, 3, 3)))
    (tmp_path / "pred" / "a.preview.png").write_bytes(b"not read")  # segkit predict --preview's picture of a
    result = evaluate_folders(tmp_path / "pred", tmp_path / "ref")
    assert result.case_ids == ["a", "b"] and result.mean == 1.0
    assert result.problems == [f"{stray}: no reference for this case in {tmp_path / 'ref'}; not scored"]
    done = run_cli("evaluate", "--pred", "pred", "--ref", "ref", cwd=tmp_path)
    assert done.returncode == 1 and "warning: pred/stray.nii.gz: no reference for this case in ref" in done.stdout
    summary = (tmp_path / "pred" / "evaluation.md").read_text(encoding="utf-8")
    assert "- pred/stray.nii.gz: no reference for this case in ref; not scored" in summary
    assert [row["case"] for row in read_rows(tmp_path / "pred" / "evaluation.csv")] == ["a", "b", "mean"]


def test_a_failed_run_removes_the_outputs_of_an_earlier_run(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    save(tmp_path / "ref", "a", cube((2, 2, 2)))
    save(tmp_path / "pred", "a", cube((2, 2, 2)))
    own_csv, own_md = tmp_path / "out" / "scores.csv", tmp_path / "out" / "scores.md"
    run_evaluation(tmp_path / "pred", tmp_path / "ref", console=quiet())
    run_evaluation(tmp_path / "pred", tmp_path / "ref", own_csv, console=quiet(), summary_path=own_md)
    defaults = [tmp_path / "pred" / "evaluation.csv", tmp_path / "pred" / "evaluation.md"]
    assert all(path.is_file() for path in [*defaults, own_csv, own_md])
    (tmp_path / "pred" / "a.nii.gz").unlink()  # now nothing can be evaluated
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert (f"no prediction in {tmp_path / 'pred'} matches a reference in {tmp_path / 'ref'} by case id (removed "
            f"{defaults[0]} and {defaults[1]} of an earlier run, which no longer describe {tmp_path / 'pred'})") in err
    assert not any(path.exists() for path in defaults) and own_csv.is_file() and own_md.is_file()
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"),
                 "--csv", str(own_csv), "--summary", str(own_md)]) == 1
    assert f"(removed {own_csv} and {own_md} of an earlier run" in capsys.readouterr().err
    assert not own_csv.exists() and not own_md.exists()


@pytest.mark.parametrize("scored", [True, False], ids=["run-that-scores", "run-that-fails"])
def test_a_report_path_holding_the_users_own_file_is_refused_before_scoring(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], scored: bool) -> None:
    save(tmp_path / "ref", "a", cube((2, 2, 2)))
    save(tmp_path / "pred", "a" if scored else "b", cube((2, 2, 2)))
    own_csv, own_md = tmp_path / "pred" / "evaluation.csv", tmp_path / "notes.md"
    own_md.write_text("# my notes\n", encoding="utf-8")  # a user's file where the summary would go
    own_csv.write_text(CSV_FIRST_LINE + "\nan earlier run's rows\n", encoding="utf-8")
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"),
                 "--summary", str(own_md)]) == 1
    err = capsys.readouterr().err
    assert err == (f"error: {own_md}: exists and was not written by segkit evaluate, which never replaces it — give "
                   "--csv / --summary another path, or move the file\n")
    assert own_md.read_text(encoding="utf-8") == "# my notes\n"
    assert own_csv.read_text(encoding="utf-8") == CSV_FIRST_LINE + "\nan earlier run's rows\n"  # nothing was run
