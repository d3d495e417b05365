"""segkit export: ONNX files that match torch in onnxruntime at sizes that are not multiples of the divisor,
dynamic batch and spatial axes, metadata, atomic writes and the CLI's errors.

Two real exports with the default (legacy) exporter: a 3D model through ``python -m segkit export`` and a
2D model in-process; the other tests reuse the 2D graph in place of a fresh export. The dynamo exporter
(the fallback) is checked once on the 2D model (~25 s).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from segkit.pipelines.export import ExportOptions, run_export

from segkit.cli import main
from segkit.config import Config, DataCfg, ModelCfg, TrainCfg, config_to_dict
from segkit.engine.checkpoint import Snapshot, save_checkpoint
from segkit.errors import CheckpointError, SegkitError
from segkit.inference import export as export_module
from segkit.inference.export import Parity
from segkit.models import build_model

ort = pytest.importorskip("onnxruntime")  # a dev dependency (make test installs it)
onnx = pytest.importorskip("onnx")

ROI = {3: (64, 48, 32), 2: (64, 48)}


def _checkpoint(root: Path, dims: int) -> tuple[Path, torch.nn.Module, Config]:
    torch.manual_seed(dims)
    cfg = Config(model=ModelCfg(encoder="resnet18", decoder_channels=(32, 16, 16, 8, 8), spatial_dims=dims),
                 train=TrainCfg(patch_size=ROI[dims]), data=DataCfg(image_dims=dims))
    model = build_model(cfg.model)
    with torch.no_grad():  # random, non-trivial norm affine parameters and biases
        for name, param in model.named_parameters():
            if name.endswith("bias") or param.dim() == 1:
                param.normal_(0.0, 0.5)
    names = {"class_names": ["background", "liver", "vessel", "lesion"]} if dims == 3 else {}
    save_checkpoint(root, "best", cfg, Snapshot.of(model, {"global_step": 1, **names}))
    return root, model.eval(), cfg


@pytest.fixture(scope="module")
def run3d(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module, Config]:
    return _checkpoint(tmp_path_factory.mktemp("run3d"), 3)


@pytest.fixture(scope="module")
def run2d(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module, Config]:
    return _checkpoint(tmp_path_factory.mktemp("run2d"), 2)


@pytest.fixture(scope="module")
def cli3d(run3d, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("cli3d") / "new" / "folder" / "model.onnx"  # parents do not exist yet
    result = subprocess.run([sys.executable, "-m", "segkit", "export", "--checkpoint", str(run3d[0]), "--format",
                             "onnx", "--out", str(out)],
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "250"}, timeout=300)
    return out, result


def _export_2d(run2d, directory: Path, exporter: str):
    out = directory / "model.onnx"
    console = Console(file=StringIO(), width=200)
    result = run_export(run2d[0], out, ExportOptions(exporter=exporter), console)
    return result, console.file.getvalue()


@pytest.fixture(scope="module")
def legacy2d(run2d, tmp_path_factory: pytest.TempPathFactory):
    return _export_2d(run2d, tmp_path_factory.mktemp("legacy2d"), "legacy")


@pytest.fixture(scope="module")
def dynamo2d(run2d, tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("onnxscript")
    return _export_2d(run2d, tmp_path_factory.mktemp("dynamo2d"), "dynamo")


_SESSIONS: dict[Path, object] = {}


def _max_diff(path: Path, model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    if path not in _SESSIONS:  # one session per file: loading the 3D graph takes seconds
        _SESSIONS[path] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    image = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)))
    with torch.inference_mode():
        expected = model(image).numpy()
    (actual,) = _SESSIONS[path].run(["logits"], {"image": image.numpy()})
    assert actual.shape == expected.shape
    return float(np.abs(actual - expected).max())


def test_cli_export_exits_0_quietly(cli3d) -> None:
    out, result = cli3d
    assert result.returncode == 0, result.stderr
    assert "max abs difference" in result.stdout and "legacy exporter" in result.stdout
    assert "Warning" not in result.stdout + result.stderr and "torchvision" not in result.stdout + result.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"]  # no temp file left


@pytest.mark.parametrize("shape", [(1, 1, 40, 36, 20), (2, 1, 33, 64, 50)])
def test_3d_onnxruntime_matches_torch(cli3d, run3d, shape: tuple[int, ...]) -> None:
    assert _max_diff(cli3d[0], run3d[1], shape) <= 1e-4


@pytest.mark.parametrize("shape", [(1, 1, 40, 36), (3, 1, 70, 45)])
def test_2d_onnxruntime_matches_torch(legacy2d, run2d, shape: tuple[int, ...]) -> None:
    result, printed = legacy2d
    assert result.exporter == "legacy" and not result.fallback_reason
    assert all(p.max_abs_diff <= 1e-4 for p in result.parity) and "max abs difference" in printed
    assert _max_diff(result.path, run2d[1], shape) <= 1e-4


@pytest.mark.parametrize("shape", [(1, 1, 40, 36), (3, 1, 70, 45)])
def test_2d_dynamo_export_matches_torch(dynamo2d, run2d, shape: tuple[int, ...]) -> None:
    result, printed = dynamo2d
    assert result.exporter == "dynamo" and not result.fallback_reason and "dynamo exporter" in printed
    assert all(p.max_abs_diff <= 1e-4 for p in result.parity)
    assert _max_diff(result.path, run2d[1], shape) <= 1e-4


@pytest.mark.parametrize(("dims", "shape"), [(2, (1, 1, 20, 28)), (2, (2, 1, 32, 32)), (3, (1, 1, 32, 32, 32)),
                                            (3, (1, 1, 20, 24, 9))])
def test_an_input_within_one_stride_on_every_axis_matches_torch(request: pytest.FixtureRequest, dims: int,
                                                                 shape: tuple[int, ...]) -> None:
    """``UNet.forward`` pads such an input by one more stride (instance norm refuses a 1-voxel deepest stage); the
    graph, traced on a larger example, must keep that rule (it was a Python branch, baked in as "no")."""
    path = request.getfixturevalue("legacy2d")[0].path if dims == 2 else request.getfixturevalue("cli3d")[0]
    model = request.getfixturevalue(f"run{dims}d")[1]
    assert _max_diff(path, model, shape) <= 1e-4


@pytest.mark.parametrize(("encoder", "upsample", "fusion"), [
    ("resnet18", "nearest", "add"), ("resnet18", "linear", "concat"), ("resnet18", "pixelshuffle", "add"),
    ("densenet121", "transposed", "concat"),
])
def test_every_upsampling_mode_and_densenet_export_and_match_torch(encoder: str, upsample: str, fusion: str,
                                                                    tmp_path: Path) -> None:
    """The shared graphs above use transposed upsampling on ResNet-18; the other modes' interpolation and pixel
    shuffle (sizes computed from the input) and DenseNet's concatenations must follow any input size too."""
    torch.manual_seed(0)
    cfg = Config(model=ModelCfg(encoder=encoder, decoder_channels=(8, 8, 8, 4, 4), spatial_dims=2, upsample=upsample,
                                fusion=fusion), train=TrainCfg(patch_size=(64, 48)), data=DataCfg(image_dims=2))
    model = build_model(cfg.model).eval()
    result = export_module.export_onnx(model, cfg, tmp_path / "model.onnx",
                                       export_module.ExportSettings(fallback=False))
    assert result.exporter == "legacy" and all(p.max_abs_diff <= 1e-4 for p in result.parity)
    assert _max_diff(result.path, model, (2, 1, 33, 70)) <= 1e-4


def test_metadata_and_axis_names(cli3d, run3d) -> None:
    model = onnx.load(str(cli3d[0]), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["segkit_config"]) == config_to_dict(run3d[2])
    assert json.loads(meta["size_divisor"]) == [32, 32, 32] and json.loads(meta["roi_size"]) == [64, 48, 32]
    assert (meta["num_classes"], meta["in_channels"], meta["spatial_dims"]) == ("4", "1", "3")
    assert meta["segkit_version"] and meta["checkpoint_step"] == "1"
    assert json.loads(meta["class_names"]) == ["background", "liver", "vessel", "lesion"]  # from state.json
    for value, channels in ((model.graph.input[0], 1), (model.graph.output[0], 4)):
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        assert dims == ["batch", channels, "spatial_0", "spatial_1", "spatial_2"]


def test_refuses_to_overwrite(run2d, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"keep")
    code = main(["export", "--checkpoint", str(run2d[0]), "--format", "onnx", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and str(out) in err and "--overwrite" in err and "Traceback" not in err
    assert out.read_bytes() == b"keep"


def test_out_through_a_file_or_at_a_folder_is_one_line(run2d, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "file"
    file.write_text("keep")
    cases = [(file / "m.onnx", f"--out {file / 'm.onnx'}: {file} is a file, so no file can be made below it; choose "
                               f"another path, e.g. {tmp_path / 'm.onnx'}"),
             (file / "sub" / "m.onnx", f"--out {file / 'sub' / 'm.onnx'}: {file} is a file, so no file can be made"),
             (tmp_path, f"--out {tmp_path} is a directory; give a file name such as {tmp_path / 'model.onnx'}"),
             (f"{tmp_path / 'exports'}/", f"--out {tmp_path / 'exports'}/: give a file name such as "
                                         f"{tmp_path / 'exports' / 'model.onnx'}")]  # not a file named 'exports'
    for out, expected in cases:
        assert main(["export", "--checkpoint", str(run2d[0]), "--format", "onnx", "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1 and "unexpected" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"] and (tmp_path / "file").read_text() == "keep"


def test_a_folder_that_cannot_be_written_is_one_line(run2d, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "access", lambda *_args: False)  # as for a user without write permission
    out = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(run2d[0]), "--format", "onnx", "--out", str(out)]) == 1
    assert f"--out {out}: no permission to write in {tmp_path}; choose a folder you can write to" in \
        capsys.readouterr().err
    monkeypatch.setattr(os, "access", lambda *_args: True)  # root may pass the permission check, /proc still refuses
    if Path("/proc/self").is_dir():
        assert main(["export", "--checkpoint", str(run2d[0]), "--format", "onnx", "--out", "/proc/segkit.onnx"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: --out /proc/segkit.onnx: cannot write in /proc (") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_is_one_line(run2d, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_module, "_write_checked", disk_full)
    out = tmp_path / "model.onnx"
    with pytest.raises(SegkitError, match=f"^{out}: cannot write the ONNX file \\(No space left on device\\); choose "
                                          "another --out"):
        run_export(run2d[0], out, ExportOptions(), Console(file=StringIO()))


def test_missing_checkpoint_bad_opset_and_unknown_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        run_export(tmp_path / "nope", tmp_path / "model.onnx", console=Console(file=StringIO()))
    assert main(["export", "--checkpoint", str(tmp_path / "nope"), "--format", "onnx",
                 "--out", str(tmp_path / "m.onnx")]) == 1
    assert main(["export", "--checkpoint", str(tmp_path), "--format", "onnx", "--out", str(tmp_path / "m.onnx"),
                 "--opset", "99"]) == 1
    assert "--opset 99: choose an opset from 7 to" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["export", "--checkpoint", str(tmp_path), "--format", "tflite", "--out", str(tmp_path / "m.onnx")])
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err


@pytest.fixture
def reuse_2d_graph(legacy2d, monkeypatch: pytest.MonkeyPatch):
    """Stand-in exporters: legacy fails, dynamo returns the 2D graph already exported (no second export)."""
    graph = onnx.load(str(legacy2d[0].path))

    def fail(*_args):
        raise RuntimeError("tracing broke\nsecond line")

    monkeypatch.setattr(export_module, "_export_legacy", fail)
    monkeypatch.setattr(export_module, "_export_dynamo", lambda *_args: graph)


def test_failed_export_falls_back_to_the_other_exporter(reuse_2d_graph, run2d, tmp_path: Path) -> None:
    console = Console(file=StringIO(), width=200)
    result = run_export(run2d[0], tmp_path / "model.onnx", ExportOptions(), console)
    assert result.exporter == "dynamo" and result.fallback_reason == "legacy exporter: RuntimeError: tracing broke"
    assert "exported with the dynamo exporter instead" in console.file.getvalue()
    assert all(p.max_abs_diff <= 1e-4 for p in result.parity)


def test_mismatch_is_refused_and_leaves_no_file(reuse_2d_graph, run2d, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_module, "check_parity", lambda *_args: (Parity((1, 1, 64, 48), 0.5),))
    out = tmp_path / "model.onnx"
    with pytest.raises(SegkitError, match=r"tracing broke; dynamo exporter: onnxruntime output differs from torch "
                                          r"by 0\.5"):
        run_export(run2d[0], out, ExportOptions(), Console(file=StringIO()))
    assert list(tmp_path.iterdir()) == []


def test_overwrite_without_onnxruntime(reuse_2d_graph, run2d, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old")
    console = Console(file=StringIO(), width=200)
    result = run_export(run2d[0], out, ExportOptions(overwrite=True), console)
    assert result.parity is None and "not checked against torch" in console.file.getvalue()
    assert onnx.load(str(out)).metadata_props and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
