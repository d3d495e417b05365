"""Checks `segkit train` runs on a config before training: patches too small for the norm at the deepest stage."""

from __future__ import annotations

from pathlib import Path

import pytest
from segkit.pipelines.train_checks import small_deepest_stage_warning

from segkit.cli import main
from segkit.config import load_config

DIVISOR_3D = (32, 32, 32)


def _config(norm: str, patch: list[int]):
    return load_config("demo_unet_resnet34.yaml", [f"model.norm={norm}", f"train.patch_size={patch}",
                                                   f"infer.roi_size={patch}"])


def test_instance_norm_over_a_deepest_stage_narrower_than_nnunets_four_voxels_is_warned_about() -> None:
    warning = small_deepest_stage_warning(_config("instance", [64, 64, 32]), DIVISOR_3D)
    assert warning is not None
    assert warning.startswith("train.patch_size: [64, 64, 32] leaves 2×2×1 voxels at the deepest stage")
    assert warning.endswith("use a patch of at least [128, 128, 128] or model.norm: batch")
    anisotropic = small_deepest_stage_warning(_config("instance", [160, 160, 48]), (32, 32, 16))
    assert anisotropic is not None and "5×5×3 voxels" in anisotropic and "[160, 160, 64]" in anisotropic


@pytest.mark.parametrize(("norm", "patch"), [("instance", [128, 128, 128]), ("batch", [64, 64, 32]),
                                             ("instance", [128, 128, 64 + 1])])
def test_no_warning_where_the_deepest_stage_is_wide_enough_or_batch_norm_pools_the_batch(norm: str,
                                                                                       patch: list[int]) -> None:
    divisor = (32, 32, 16) if patch[2] == 65 else DIVISOR_3D  # 65 / 16 rounds up to 5
    assert small_deepest_stage_warning(_config(norm, patch), divisor) is None


def test_segkit_train_prints_the_warning_and_trains(tiny_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--config", str(tiny_config), "--set", "model.norm=instance",
                 "--set", "train.patch_size=[64,64,32]", "--set", "infer.roi_size=[64,64,32]",
                 "--set", "train.steps_per_epoch=1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    printed = " ".join(captured.out.split())  # rich wraps long lines at the console's width
    assert "warning: train.patch_size: [64, 64, 32] leaves 2×2×1 voxels at the deepest stage" in printed
