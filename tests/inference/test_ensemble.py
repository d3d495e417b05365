"""Ensembles of checkpoints: logits averaged inside one sliding window, equal to averaging each member's own
prediction; incompatible checkpoints refused in one line; the CLI and the manifest with several checkpoints."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from segkit.pipelines.predict import PredictOptions, run_prediction

from segkit.config import Config, DataCfg, InferCfg, ModelCfg, TrainCfg
from segkit.engine.checkpoint import Snapshot, load_checkpoint, save_checkpoint
from segkit.errors import CheckpointError
from segkit.inference.ensemble import Ensemble, ensemble_config
from segkit.inference.manifest import read_manifest
from segkit.inference.predictor import Predictor
from segkit.models import build_model
from tests.cli_run import run_cli

SMALL = {"decoder_channels": (32, 16, 16, 8, 8), "norm": "batch"}


def _config(root: Path, **model: object) -> Config:
    return Config(data=DataCfg(root=root, spacing=(1.2, 1.2, 2.5)),
                  model=ModelCfg(encoder="resnet18", **{**SMALL, **model}),
                  train=TrainCfg(patch_size=(32, 32, 16), precision="fp32"),
                  infer=InferCfg(roi_size=(32, 32, 16), sw_batch_size=2, overlap=0.5))


def _save(folder: Path, cfg: Config, seed: int) -> Path:
    torch.manual_seed(seed)
    model = build_model(cfg.model).eval()
    for module in model.modules():  # non-trivial running statistics, so folding them must be right
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return save_checkpoint(folder, "best", cfg, Snapshot.of(model, {"global_step": seed}))


def test_ensemble_forward_is_the_mean_of_its_members() -> None:
    torch.manual_seed(0)
    members = [torch.nn.Conv3d(1, 3, 3, padding=1) for _ in range(3)]
    x = torch.randn(2, 1, 6, 5, 4)
    with torch.no_grad():
        expected = sum(m(x) for m in members) / 3
        torch.testing.assert_close(Ensemble(members)(x), expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError):
        Ensemble(members[:1])


def test_ensemble_logits_equal_the_mean_of_each_members_sliding_window(tmp_path: Path) -> None:
    """Two different architectures; the volume needs several overlapping windows along every axis."""
    configs = [_config(tmp_path), _config(tmp_path, upsample="linear", fusion="add")]
    paths = [_save(tmp_path / f"m{i}", cfg, seed=i) for i, cfg in enumerate(configs)]
    image = torch.randn(1, 45, 38, 21, generator=torch.Generator().manual_seed(3))
    device = torch.device("cpu")

    def logits(model: torch.nn.Module) -> torch.Tensor:
        return Predictor(model, configs[0], device).logits(image)

    members = []
    for path, cfg in zip(paths, configs, strict=True):
        model = build_model(cfg.model, initialise=False)
        model.load_state_dict(load_checkpoint(path).weights)
        members.append(model)
    singles = [logits(copy.deepcopy(model)) for model in members]  # the predictor prepares its model in place
    ensembled = logits(Ensemble(members))
    assert not torch.allclose(singles[0], singles[1], atol=1e-2)  # the members really differ
    torch.testing.assert_close(ensembled, (singles[0] + singles[1]) / 2, rtol=1e-4, atol=1e-4)


def test_incompatible_or_repeated_checkpoints_are_refused(tmp_path: Path) -> None:
    weights = Snapshot.of(build_model(_config(tmp_path).model).eval(), {})  # only the configs matter here
    window = _config(tmp_path)
    window = window.model_copy(update={"data": window.data.model_copy(update={"window": (-100.0, 250.0)})})
    base, classes, window = (save_checkpoint(tmp_path / name, "best", cfg, weights) for name, cfg in
                             {"base": _config(tmp_path), "classes": _config(tmp_path, num_classes=3),
                              "window": window}.items())
    ckpts = {name: (ckpt.path, ckpt.config) for name, ckpt in
             {"base": load_checkpoint(base), "classes": load_checkpoint(classes),
              "window": load_checkpoint(window)}.items()}
    with pytest.raises(CheckpointError, match=r"model\.num_classes is 3 but .* has 4"):
        ensemble_config([ckpts["base"], ckpts["classes"]])
    with pytest.raises(CheckpointError, match=r"data\.window is \[-100\.0, 250\.0\] but .* has \[-200\.0, 300\.0\]"):
        ensemble_config([ckpts["base"], ckpts["window"]])
    with pytest.raises(CheckpointError, match="given twice"):
        ensemble_config([ckpts["base"], (base, ckpts["base"][1])])
    assert ensemble_config([ckpts["base"]]) is ckpts["base"][1]


def test_cli_ensemble_of_a_checkpoint_and_its_copy_predicts_like_the_checkpoint(
        random_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(random_checkpoint.resolve(), copy)
    inputs = tmp_path / "scans"
    shutil.copytree(tiny_dataset / "imagesTr", inputs)
    single = run_prediction(random_checkpoint, [str(inputs)], tmp_path / "single", PredictOptions(device="cpu"))

    done = run_cli("predict", "--checkpoint", random_checkpoint, copy, "--input", inputs, "--output", "pair",
                   "--device", "cpu", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "with an ensemble of 2 checkpoints" in done.stdout
    records = read_manifest(tmp_path / "pair" / "manifest.jsonl")
    assert len(records) == len(single) == 4
    for result in single:
        ensembled = nib.load(str(tmp_path / "pair" / result.output.name))
        assert np.array_equal(np.asarray(ensembled.dataobj), np.asarray(nib.load(str(result.output)).dataobj))
        settings = records[result.case_id]["settings"]
        assert settings["checkpoint"] == [str(random_checkpoint.resolve()), str(copy.resolve())]
        assert settings["step"] == [1, 1]

    rerun = run_cli("predict", "--checkpoint", random_checkpoint, "--input", inputs, "--output", "pair",
                    "--device", "cpu", cwd=tmp_path)  # other weights than the manifest's: every case again
    assert rerun.returncode == 0 and "4 written, 0 skipped" in rerun.stdout


def test_cli_refuses_an_incompatible_ensemble_before_creating_the_output(
        random_checkpoint: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    config = json.loads((random_checkpoint / "config.json").read_text(encoding="utf-8"))
    other = _save(tmp_path / "other", _config(tiny_dataset).model_copy(
        update={"data": DataCfg(root=tiny_dataset, spacing=(1.0, 1.0, 2.0))}), seed=5)
    assert config["data"]["spacing"] == [1.2, 1.2, 2.5]
    done = run_cli("predict", "--checkpoint", random_checkpoint, other, "--input", tiny_dataset / "imagesTr",
                   "--output", "out", "--device", "cpu", cwd=tmp_path)
    assert done.returncode == 1 and not (tmp_path / "out").exists()
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in done.stderr
    assert "data.spacing is [1.0, 1.0, 2.0]" in message and str(other) in message
