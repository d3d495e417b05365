"""Checkpoints: safetensors round trip, atomic best/last links, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from segkit.config import Config, ModelCfg, TrainCfg
from segkit.engine.checkpoint import (
    Snapshot,
    cpu_state_dict,
    load_checkpoint,
    load_resume_state,
    load_weights,
    remove_stale,
    resolve_checkpoint,
    save_checkpoint,
)
from segkit.errors import CheckpointError
from segkit.models import build_model

SMALL = ModelCfg(spatial_dims=2, encoder="resnet18", decoder_channels=(16, 16, 8, 8, 8), num_classes=3)
PATCH_2D = TrainCfg(patch_size=(64, 64))


def test_round_trip_restores_identical_weights_and_config(tmp_path: Path) -> None:
    cfg = Config(model=SMALL, train=PATCH_2D, seed=3)
    model = build_model(cfg.model)
    link = save_checkpoint(tmp_path, "best", cfg, Snapshot.of(model, {"global_step": 5, "best_metric": 0.5}))
    assert link.is_symlink()
    ckpt = load_checkpoint(tmp_path)  # a run directory resolves to best/
    assert ckpt.config == cfg and ckpt.state["global_step"] == 5
    fresh = build_model(ckpt.config.model)
    load_weights(fresh, ckpt)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value, rtol=0, atol=0)


def test_new_save_repoints_link_and_removes_stale_directory(tmp_path: Path) -> None:
    cfg = Config(model=SMALL, train=PATCH_2D)
    model = build_model(cfg.model)
    save_checkpoint(tmp_path, "last", cfg, Snapshot.of(model, {"global_step": 1}))
    first = (tmp_path / "last").resolve()
    save_checkpoint(tmp_path, "last", cfg, Snapshot.of(model, {"global_step": 2}))
    assert (tmp_path / "last").resolve() != first and not first.exists()
    assert json.loads((tmp_path / "last" / "state.json").read_text())["global_step"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp links left


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    cfg = Config(model=SMALL, train=PATCH_2D)
    save_checkpoint(tmp_path, "best", cfg, Snapshot.of(build_model(cfg.model), {}))
    other = build_model(ModelCfg(spatial_dims=2, encoder="resnet34", decoder_channels=(16, 16, 8, 8, 8)))
    with pytest.raises(CheckpointError, match="weights do not fit the model"):
        load_weights(other, load_checkpoint(tmp_path / "best"))


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        resolve_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        resolve_checkpoint(tmp_path)


def test_a_crash_inside_a_save_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import segkit.engine.checkpoint as checkpoint_module

    cfg = Config(model=SMALL, train=PATCH_2D)
    model = build_model(cfg.model)
    save_checkpoint(tmp_path, "last", cfg, Snapshot(cpu_state_dict(model), {"global_step": 1}, None,
                                                     {"optimizer": {"state": {}}}))
    before = (tmp_path / "last").resolve()
    real_write = checkpoint_module.atomic_write_bytes

    def failing_write(path: Path, data: bytes) -> None:
        if path.name == "resume.pt":  # weights already written, resume state half-way
            path.with_name(".resume.1234.tmp.pt").write_bytes(data[: len(data) // 2])
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(checkpoint_module, "atomic_write_bytes", failing_write)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path, "last", cfg, Snapshot(cpu_state_dict(model), {"global_step": 2}, None,
                                                         {"optimizer": {"state": {}}}))
    assert (tmp_path / "last").resolve() == before
    survivor = load_checkpoint(tmp_path / "last")
    assert survivor.state["global_step"] == 1
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [before.name]  # the staged copy is gone
    _, resume = load_resume_state(before)
    assert resume == {"optimizer": {"state": {}}}


def test_stale_leftovers_of_a_killed_save_are_removed(tmp_path: Path) -> None:
    cfg = Config(model=SMALL, train=PATCH_2D)
    save_checkpoint(tmp_path, "last", cfg, Snapshot.of(build_model(cfg.model), {"global_step": 1}))
    store = tmp_path / "checkpoints"
    (store / ".last-000000002-abcdef.partial").mkdir()  # killed while staging
    (store / "last-000000002-abcdef").mkdir()  # killed between the rename and the link switch
    (tmp_path / ".last.1234abcd.tmp").symlink_to("checkpoints")
    remove_stale(tmp_path)
    assert [p.name for p in store.iterdir()] == [(tmp_path / "last").resolve().name]
    assert not (tmp_path / ".last.1234abcd.tmp").is_symlink()


def test_resume_state_is_loaded_without_unpickling_objects(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (sentinel,))

    torch.save({"optimizer": Payload()}, tmp_path / "resume.pt")  # torch.load without weights_only would run it
    with pytest.raises(CheckpointError, match="resume state refused"):
        load_resume_state(tmp_path)
    assert not sentinel.exists()


def test_class_names_are_read_only_when_they_fit_the_model() -> None:
    from segkit.config import Config
    from segkit.engine.checkpoint import Checkpoint

    cfg = Config()  # 4 classes
    names = ["background", "liver", "vessel", "lesion"]
    assert Checkpoint(Path("c"), cfg, {}, {"class_names": names}).class_names == names
    for wrong in (names[:3], [*names[:3], 4], "liver", None):  # an edited state.json: not used, never a crash
        assert Checkpoint(Path("c"), cfg, {}, {"class_names": wrong}).class_names is None
