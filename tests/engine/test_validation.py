"""Validation scores through a given prediction function: per case, spacing from the affine, summary; mode restored."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from torch.nn import functional as F

from segkit.engine.metrics import surface_metrics_per_class
from segkit.engine.validation import (
    CaseScores,
    evaluate_volumes,
    rows_to_scores,
    score_volumes,
    scores_to_rows,
    summarise,
)
from segkit.inference.sliding_window import WindowSettings


def test_perfect_and_wrong_predictions_and_mode_restored() -> None:
    label = torch.zeros(1, 8, 8, 8, dtype=torch.uint8)
    label[0, :4] = 1
    label[0, 6:, 6:] = 2
    volumes = [{"image": torch.zeros(1, 8, 8, 8), "label": label}]
    model = torch.nn.Identity().train()

    def perfect(_, image):
        return F.one_hot(label[0].long(), 4).permute(3, 0, 1, 2)[None].float()

    result = evaluate_volumes(model, volumes, perfect, num_classes=4, device=torch.device("cpu"))
    assert result["dice_per_class"][:2] == [1.0, 1.0] and math.isnan(result["dice_per_class"][2])
    assert result["mean_dice"] == 1.0 and model.training

    def background_only(_, image):
        return torch.zeros(1, 4, 8, 8, 8).index_fill_(1, torch.tensor([0]), 1.0)

    assert evaluate_volumes(model, volumes, background_only, 4, torch.device("cpu"))["mean_dice"] == 0.0


class FixedLogits(torch.nn.Module):
    """Returns one-hot logits of a fixed label map and records the mode it was called in."""

    def __init__(self, pred: torch.Tensor, num_classes: int) -> None:
        super().__init__()
        self.logits = F.one_hot(pred.long(), num_classes).permute(3, 0, 1, 2)[None].float()
        self.called_in_training = []

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        self.called_in_training.append(self.training)
        return self.logits


def _cubes(shift: int) -> torch.Tensor:
    """Class 1: a 6-voxel cube shifted by ``shift`` voxels along axis 0; class 2: a small cube when unshifted."""
    label = torch.zeros(20, 20, 20, dtype=torch.uint8)
    label[5 + shift:11 + shift, 5:11, 5:11] = 1
    if shift == 0:
        label[14:17, 14:17, 14:17] = 2
    return label


def _volumes(image_affine: torch.Tensor | None) -> list[dict]:
    image = torch.zeros(1, 20, 20, 20)
    image = MetaTensor(image, affine=image_affine) if image_affine is not None else image
    return [{"image": image, "label": _cubes(0)[None], "case_id": "liver_7"},
            {"image": image, "label": _cubes(0)[None]}]


def _predict(model: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    return model(image)


def test_scores_per_case_use_the_spacing_of_the_image_affine() -> None:
    model = FixedLogits(_cubes(2), 4).train()
    affine = torch.diag(torch.tensor([3.0, 1.0, 1.0, 1.0]))
    scores = score_volumes(model, _volumes(affine), _predict, 4, torch.device("cpu"), tolerance_mm=1.0)
    assert [s.case_id for s in scores] == ["liver_7", "case1"]
    assert model.called_in_training == [False, False] and model.training
    expected_nsd = surface_metrics_per_class(_cubes(2), _cubes(0), 4, (3.0, 1.0, 1.0), 1.0)[1]
    for case in scores:
        assert case.dice[0] == pytest.approx(2 * 4 / 12) and case.dice[1] == 0.0 and math.isnan(case.dice[2])
        assert case.hd95[0] == pytest.approx(6.0)  # 2 voxels of 3 mm
        assert case.hd95[1] == pytest.approx(math.sqrt(60**2 + 20**2 + 20**2)) and math.isnan(case.hd95[2])
        assert case.nsd[0] == pytest.approx(expected_nsd[0]) and 0 < case.nsd[0] < 1
        assert case.nsd[1] == 0.0 and math.isnan(case.nsd[2])


def test_images_without_affine_are_taken_as_one_mm_and_surface_can_be_skipped() -> None:
    model = FixedLogits(_cubes(2), 4)
    volumes = _volumes(None)
    assert score_volumes(model, volumes, _predict, 4, torch.device("cpu"))[0].hd95[0] == pytest.approx(2.0)
    skipped = score_volumes(model, volumes, _predict, 4, torch.device("cpu"), surface=False)[0]
    assert skipped.dice[0] == pytest.approx(2 / 3) and all(math.isnan(v) for v in skipped.hd95 + skipped.nsd)


def test_summary_averages_cases_per_class_skipping_nan_without_warnings() -> None:
    nan = float("nan")
    scores = [CaseScores("a", [1.0, nan], [2.0, nan], [1.0, nan]), CaseScores("b", [0.5, nan], [4.0, nan], [nan, nan])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = summarise(scores)
        empty = summarise([])
    assert summary["dice_per_class"][0] == 0.75 and math.isnan(summary["dice_per_class"][1])
    assert summary["hd95_per_class"][0] == 3.0 and summary["nsd_per_class"][0] == 1.0
    assert (summary["mean_dice"], summary["mean_hd95"], summary["mean_nsd"], summary["cases"]) == (0.75, 3.0, 1.0, 2)
    assert empty["cases"] == 0 and math.isnan(empty["mean_dice"]) and empty["dice_per_class"] == []


def test_the_mean_weighs_every_class_alike_however_many_cases_hold_it() -> None:
    """nnU-Net's foreground mean: the mean of the per-class means. Over the case × class table a class found in
    one case of three (Dice 0.1) counted a third as much: 0.633 where the per-class means [0.9, 0.5, 0.1] give 0.5."""
    nan = float("nan")
    scores = [CaseScores("a", [0.9, 0.5, 0.1], [nan] * 3, [nan] * 3),
              CaseScores("b", [0.9, 0.5, nan], [nan] * 3, [nan] * 3),
              CaseScores("c", [0.9, 0.5, nan], [nan] * 3, [nan] * 3)]
    summary = summarise(scores)
    assert summary["dice_per_class"] == pytest.approx([0.9, 0.5, 0.1])
    assert summary["mean_dice"] == pytest.approx(0.5) and math.isnan(summary["mean_hd95"])


def test_evaluate_volumes_reports_the_summary_of_the_scores() -> None:
    model = FixedLogits(_cubes(2), 4)
    volumes = _volumes(torch.diag(torch.tensor([3.0, 1.0, 1.0, 1.0])))
    result = evaluate_volumes(model, volumes, _predict, 4, torch.device("cpu"), tolerance_mm=7.0)
    assert set(result) == {"dice_per_class", "hd95_per_class", "nsd_per_class", "mean_dice", "mean_hd95", "mean_nsd",
                           "cases"}
    assert result["cases"] == 2 and result["hd95_per_class"][0] == pytest.approx(6.0)
    assert result["nsd_per_class"][:2] == [1.0, 0.0] and result["mean_nsd"] == 0.5
    expected = summarise(score_volumes(model, volumes, _predict, 4, torch.device("cpu"), tolerance_mm=7.0))
    np.testing.assert_equal(result, expected)  # NaN entries compare equal here


def test_scores_cross_processes_as_rows_and_an_empty_shard_keeps_the_width() -> None:
    nan = float("nan")
    scores = [CaseScores("a", [1.0, nan], [2.0, nan], [1.0, nan]), CaseScores("b", [0.5, 0.2], [4.0, 9.0], [0.0, 0.1])]
    rows = scores_to_rows(scores, num_classes=3)
    assert rows.dtype == torch.float64 and rows.shape == (2, 6)
    back = rows_to_scores(rows)
    assert [s.case_id for s in back] == ["case0", "case1"]
    np.testing.assert_equal([(s.dice, s.hd95, s.nsd) for s in back], [(s.dice, s.hd95, s.nsd) for s in scores])
    empty = scores_to_rows([], num_classes=3)
    assert empty.shape == (0, 6) and rows_to_scores(torch.cat([empty, rows]))[1].nsd == [0.0, 0.1]
    with pytest.raises(ValueError, match="shape"):
        rows_to_scores(torch.zeros(2, 5))


def test_training_validates_a_prepared_copy_of_the_model_and_reports_each_case(monkeypatch: pytest.MonkeyPatch
                                                                               ) -> None:
    """Validation runs the network as ``segkit predict`` prepares it (batch norm folded, convolutions packed on
    the CPU: 2.6× faster than the eager model on a 2-core CPU, minutes per CT volume), on a copy: the trained model
    keeps its modules, weights and mode; the scores equal the eager model's; each case prints one line."""
    from io import StringIO

    from rich.console import Console
    from segkit.pipelines import train as train_pipeline

    from segkit.config import Config
    from segkit.engine.distributed import DistEnv
    from segkit.models import build_model
    from segkit.models.packed_conv import PackedConv, packing_available

    if not packing_available():
        pytest.skip("this torch build cannot pack convolutions for oneDNN")
    cfg = Config.model_validate({"model": {"encoder": "resnet18", "num_classes": 3, "norm": "batch",
                                           "decoder_channels": [32, 16, 8, 8, 8]},
                                 "train": {"device": "cpu", "patch_size": [32, 32, 16]},
                                 "infer": {"roi_size": [32, 32, 16]}})
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    label = torch.zeros(1, 32, 32, 16, dtype=torch.uint8)  # one window per volume: the test stays fast
    label[0, 8:24, 8:24, 4:12] = 1
    label[0, 14:18, 12:16, 6:10] = 2
    volumes = [{"image": MetaTensor(torch.rand(1, 32, 32, 16)), "label": label, "case_id": f"c{i}"} for i in range(2)]
    networks = []
    original = train_pipeline.sliding_window_logits
    monkeypatch.setattr(train_pipeline, "sliding_window_logits",
                        lambda network, *args: networks.append(network) or original(network, *args))
    out = StringIO()
    validate = train_pipeline._validator(cfg, volumes, torch.device("cpu"), None, DistEnv(),
                                         Console(file=out, width=200))
    result = validate(model)
    assert networks and all(any(isinstance(m, PackedConv) for m in n.modules()) for n in networks)
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any(isinstance(m, PackedConv) for m in model.modules())
    eager = evaluate_volumes(model, volumes, lambda net, image: original(net, image, WindowSettings.from_config(cfg)),
                             3, torch.device("cpu"))
    assert result["dice_per_class"] == pytest.approx(eager["dice_per_class"], nan_ok=True, abs=1e-6)
    lines = [line for line in out.getvalue().splitlines() if "validated" in line]
    assert [line.split()[1:3] for line in lines] == [["c0", "(1/2)"], ["c1", "(2/2)"]]
