"""Shared fixtures: tiny seeded phantom datasets and configs in temp folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from segkit.data.synth import write_dataset

TINY_SIZE = (16, 40, 40)  # slices, rows, columns


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five tiny phantoms (four for training, one held out), seed 7."""
    root = tmp_path_factory.mktemp("phantoms")
    write_dataset(root, cases=5, seed=7, size_dhw=TINY_SIZE, test_cases=1)
    return root


def write_yaml(path: Path, data: dict) -> Path:
    """Write ``data`` as YAML to ``path`` and return the path."""
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def tiny_config(tmp_path: Path, tiny_dataset: Path) -> Path:
    """A config that trains a few CPU steps on the tiny phantoms."""
    return write_yaml(tmp_path / "tiny.yaml", {
        "base": "demo_unet_resnet34.yaml",
        "run_dir": str(tmp_path / "run"),
        "data": {"root": str(tiny_dataset), "spacing": [1.2, 1.2, 2.5], "val_fraction": 0.25},
        "model": {"encoder": "resnet18"},
        "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 1, "patch_size": [32, 32, 32], "val_every": 1},
        "infer": {"roi_size": [32, 32, 32]},
    })


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> Path:
    """A random-weight resnet18 UNet checkpoint (1 input channel, 4 classes) for the tiny phantoms;
    returns the ``best`` link. Tests only read it."""
    from segkit.config import Config, DataCfg, InferCfg, ModelCfg, TrainCfg
    from segkit.engine.checkpoint import Snapshot, save_checkpoint
    from segkit.models import build_model

    cfg = Config(data=DataCfg(root=tiny_dataset, spacing=(1.2, 1.2, 2.5)),
                 model=ModelCfg(encoder="resnet18", decoder_channels=(32, 16, 16, 8, 8), norm="batch"),
                 train=TrainCfg(patch_size=(32, 32, 16)), infer=InferCfg(roi_size=(32, 32, 16), sw_batch_size=4))
    run = tmp_path_factory.mktemp("ckpt")
    return save_checkpoint(run, "best", cfg, Snapshot.of(build_model(cfg.model).eval(), {"global_step": 1}))
