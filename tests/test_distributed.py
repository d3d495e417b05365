"""DDP on CPU with gloo: two processes finish with identical weights; ``--gpus N`` launches torchrun."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from segkit.pipelines.launch import torchrun_command, without_gpus_flag

from segkit.cli import main
from segkit.config import Config, DataCfg, InferCfg, ModelCfg, TrainCfg
from segkit.engine.run_log import read_metrics


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cfg(root: Path, run_dir: Path) -> Config:
    return Config(
        run_dir=run_dir,
        data=DataCfg(root=root, spacing=(1.2, 1.2, 2.5), val_fraction=0.4),
        model=ModelCfg(encoder="resnet18", decoder_channels=(32, 16, 16, 8, 8), norm="batch"),
        train=TrainCfg(epochs=1, steps_per_epoch=3, batch_size=2, patch_size=(32, 32, 16), device="cpu"),
        infer=InferCfg(roi_size=(32, 32, 16)),
        seed=3,
    )


def _rank_main(rank: int, port: int, root: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from segkit.pipelines.train import run_training

    result = run_training(_cfg(Path(root), Path(out) / "run"))
    weights = {k: v.detach().contiguous() for k, v in result.model.state_dict().items()}
    save_file(weights, str(Path(out) / f"rank{rank}.safetensors"))


def test_two_gloo_processes_train_to_identical_weights(tiny_dataset: Path, tmp_path: Path) -> None:
    mp.start_processes(_rank_main, args=(_free_port(), str(tiny_dataset), str(tmp_path)), nprocs=2,
                       start_method="spawn", join=True)
    first, second = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert first.keys() == second.keys()
    for name, value in first.items():
        assert torch.equal(value, second[name]), name
    saved = load_file(str(tmp_path / "run" / "last" / "weights.safetensors"))
    assert all(torch.equal(saved[name], value) for name, value in first.items())  # rank 0 wrote the checkpoint
    steps = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "step"]
    assert steps == [1, 2, 3]  # logged by rank 0 only
    validation = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "val"]
    assert validation[0]["cases"] == 2  # each rank scored one volume; the results were gathered


def test_gpus_flag_launches_torchrun_with_the_same_command(tiny_dataset: Path, tmp_path: Path,
                                                          capfd: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["train", "--gpus", "2", "--config", "x.yaml", "--gpus=2", "--set", "train.epochs=1"]
    assert without_gpus_flag(argv) == ["train", "--config", "x.yaml", "--set", "train.epochs=1"]
    command = torchrun_command(2, argv)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"] and "--nproc_per_node=2" in command
    assert command[-6:-4] == ["-m", "segkit"] or command[command.index("-m", 3):][:2] == ["-m", "segkit"]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # inherited by torchrun's two processes
    settings = {"data.root": tiny_dataset, "run_dir": tmp_path / "run", "train.epochs": 1, "train.steps_per_epoch": 2,
                "train.batch_size": 2, "train.patch_size": "[32,32,16]", "infer.roi_size": "[32,32,16]",
                "model.encoder": "resnet18", "train.device": "cpu", "data.spacing": "[1.2,1.2,2.5]",
                "data.val_fraction": 0.4}
    overrides = [item for key, value in settings.items() for item in ("--set", f"{key}={value}")]
    code = main(["train", "--gpus", "2", "--config", "demo_unet_resnet34.yaml", *overrides])  # runs torchrun
    out, err = capfd.readouterr()  # the launcher's line and the ranks' output (file descriptors)
    assert code == 0, out[-2000:] + err[-2000:]
    assert "training on CPU with gloo" in out
    assert out.count("training resnet18 UNet on") == 1  # rank 0 speaks; rank 1 is quiet
    assert (tmp_path / "run" / "last" / "resume.pt").is_file()
    steps = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "step"]
    assert steps == [1, 2]
    # resumed as one process: it goes on, and says the global batch and sample streams change
    assert main(["train", "--resume", str(tmp_path / "run"), "--set", "train.epochs=2"]) == 0
    said = " ".join(capfd.readouterr().out.split())
    assert "warning: this run trained on 2 process(es) (global batch 4); resumed on 1, it goes on with a global " \
           "batch of 2" in said
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "step"] == [1, 2, 3, 4]
