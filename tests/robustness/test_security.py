"""The claims of docs/SECURITY.md that no other test proves (the doc names the tests that prove the others):
what the source may call at all, names and keys in configs, where outputs and deletions are confined, and
sizes refused before anything is allocated."""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shutil
import struct
import sys
from pathlib import Path

import pytest
import torch
from segkit.pipelines.predict_inputs import output_path_for

from segkit.cli import main
from segkit.config import AlbumentationsStep, Config, config_from_dict
from segkit.data.albu import build_pipeline
from segkit.data.cases import Case
from segkit.engine.checkpoint import Snapshot, load_checkpoint, remove_stale, save_checkpoint
from segkit.errors import CheckpointError, ConfigError, DataError
from segkit.io.image_io import header_shape, read_image_array
from segkit.registry import ENCODERS, FUSIONS, LOSSES, UPSAMPLERS
from tests.robustness import kill

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*ROOT.joinpath("segkit").rglob("*.py"), *ROOT.joinpath("pipelines").rglob("*.py")])

# ------------------------------------------------------------------------------- what the source calls


def dotted(node: ast.AST) -> str:
    """``a.b.c`` for a name or attribute chain ('' for anything else, e.g. a call's result)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else f"?.{node.attr}"
    return ""


@functools.cache
def calls() -> list[tuple[str, str, ast.Call]]:
    """(file relative to the repository, dotted callee, call) for every call in segkit/ and pipelines/."""
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Call):
                found.append((str(path.relative_to(ROOT)), dotted(node.func), node))
    return found


def keyword(call: ast.Call, name: str) -> object:
    """The constant value of keyword ``name`` in ``call`` (None when absent or not a constant)."""
    value = next((k.value for k in call.keywords if k.arg == name), None)
    return value.value if isinstance(value, ast.Constant) else None


def test_every_torch_load_is_weights_only_and_every_numpy_load_refuses_pickles() -> None:
    torch_loads = [(f, c) for f, name, c in calls() if name == "torch.load"]
    numpy_loads = [(f, c) for f, name, c in calls() if name in ("np.load", "numpy.load")]
    assert {f for f, _ in torch_loads} == {"segkit/engine/checkpoint.py", "segkit/models/pretrained.py"}
    assert all(keyword(c, "weights_only") is True for _, c in torch_loads)
    assert numpy_loads and all(keyword(c, "allow_pickle") is False for _, c in numpy_loads)


FORBIDDEN = {"eval", "exec", "compile", "__import__", "pickle.load", "pickle.loads", "pickle.Unpickler",
             "yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "marshal.loads", "shelve.open",
             "os.system", "os.popen", "runpy.run_path", "runpy.run_module"}
OBJECT_COLLECTIVES = {"all_gather_object", "gather_object", "broadcast_object_list", "scatter_object_list",
                      "send_object_list", "recv_object_list"}


def test_no_call_can_run_code_from_data() -> None:
    names = [(f, name) for f, name, _ in calls()]
    assert [(f, n) for f, n in names if n in FORBIDDEN] == []
    assert [(f, n) for f, n in names if n.rsplit(".", 1)[-1] in OBJECT_COLLECTIVES] == []  # DDP: tensors only
    assert any(n == "yaml.safe_load" for _, n in names)  # the scan sees the calls it is about


def test_modules_are_imported_only_from_fixed_internal_lists() -> None:
    sites = sorted(f for f, name, _ in calls() if name in ("importlib.import_module", "import_module"))
    assert sites == ["segkit/models/encoders/__init__.py", "segkit/registry.py"]
    for registry in (ENCODERS, FUSIONS, LOSSES, UPSAMPLERS):
        assert all(module.startswith("segkit.") for module in registry._providers)


def test_subprocesses_are_started_from_argument_lists_without_a_shell() -> None:
    started = [(f, c) for f, name, c in calls() if name.startswith("subprocess.")]
    assert "pipelines/launch.py" in [f for f, _ in started]  # torchrun for --gpus N
    for file, call in started:
        assert keyword(call, "shell") in (None, False), file
        assert not isinstance(call.args[0], ast.Constant | ast.JoinedStr | ast.BinOp), file  # not a command string


# ---------------------------------------------------------------------------------- configs and names


def test_a_python_tag_in_a_set_override_is_refused_and_never_run(tmp_path: Path, capsys) -> None:
    sentinel = tmp_path / "sentinel"
    code = main(["config", "show", "--config", "demo_unet_resnet34.yaml",
                 "--set", f"seed=!!python/object/apply:os.system ['touch {sentinel}']"])
    assert code == 1 and "--set seed: value" in capsys.readouterr().err
    assert not sentinel.exists()


@pytest.mark.parametrize(("key", "value"), [("model.encoder", "this"), ("model.upsample", "this"),
                                            ("train.loss", "torch.nn.functional.cross_entropy")])
def test_import_strings_as_component_names_are_refused_without_importing(key: str, value: str, capsys) -> None:
    assert "this" not in sys.modules  # importing it prints the Zen of Python: the probe below
    code = main(["config", "show", "--config", "demo_unet_resnet34.yaml", "--set", f"{key}={value}"])
    assert code == 1 and f"{key}: unknown" in capsys.readouterr().err
    assert "this" not in sys.modules


def test_unknown_keys_in_a_checkpoint_config_are_refused(random_checkpoint: Path) -> None:
    raw = json.loads((random_checkpoint / "config.json").read_text(encoding="utf-8"))
    raw["model"]["init_hook"] = "os.system"
    with pytest.raises(ConfigError, match=r"config\.json: unknown key 'model\.init_hook'"):
        config_from_dict(raw, "ckpt/config.json")


@pytest.mark.parametrize("name", ["Lambda", "__class__", "Compose"])
def test_albumentations_names_outside_the_allow_list_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown transform '{name}'"):
        build_pipeline([AlbumentationsStep(name=name, p=1.0)])


def test_predict_never_reads_the_encoder_weights_a_checkpoint_names(tiny_dataset: Path, tmp_path: Path) -> None:
    checkpoint = kill.random_checkpoint(tmp_path / "run", tiny_dataset).resolve()
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    config["model"]["encoder_weights"] = str(tmp_path / "absent.pth")  # reading it would fail the run
    (checkpoint / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert load_checkpoint(checkpoint).config.model.encoder_weights == tmp_path / "absent.pth"
    code = main(["predict", "--checkpoint", str(checkpoint), "--input", str(tiny_dataset / "imagesTs"),
                 "--output", str(tmp_path / "out"), "--device", "cpu", "--workers", "1"])
    assert code == 0 and (tmp_path / "out" / "phantom_004.nii.gz").is_file()


# ------------------------------------------------------------------------------------ where files go


@pytest.mark.parametrize("case_id", ["../escape", "/tmp/escape", "sub/escape"])
def test_prediction_outputs_cannot_leave_the_output_folder(case_id: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="output name escapes the output directory"):
        output_path_for(Case(case_id, tmp_path / "in" / "x.nii.gz"), tmp_path / "out")


def _run_dir(root: Path) -> Path:
    run_dir = root / "run"
    save_checkpoint(run_dir, "last", Config(), Snapshot({"w": torch.zeros(2)}, {"global_step": 1}))
    return run_dir


def _victim(root: Path) -> Path:
    victim = root / "victim"
    (victim / "keep.partial").mkdir(parents=True)
    (victim / "precious.txt").write_text("the user's data", encoding="utf-8")
    return victim


def test_resume_cleanup_never_deletes_what_a_planted_link_points_at(tmp_path: Path) -> None:
    run_dir, victim = _run_dir(tmp_path), _victim(tmp_path)
    os.symlink(victim, run_dir / "checkpoints" / "planted")
    os.symlink(victim / "keep.partial", run_dir / "checkpoints" / ".planted.partial")
    remove_stale(run_dir)  # what train --resume does first
    assert (victim / "precious.txt").is_file() and (victim / "keep.partial").is_dir()
    linked = _run_dir(tmp_path / "other")
    shutil.rmtree(linked / "checkpoints")
    os.symlink(victim, linked / "checkpoints")  # the whole store is a link
    remove_stale(linked)
    assert (victim / "precious.txt").is_file() and (victim / "keep.partial").is_dir()


def test_saving_a_checkpoint_never_deletes_the_folder_a_planted_link_named(tmp_path: Path) -> None:
    run_dir, victim = _run_dir(tmp_path), _victim(tmp_path)
    os.symlink(victim, run_dir / "best")
    save_checkpoint(run_dir, "best", Config(), Snapshot({"w": torch.ones(2)}, {"global_step": 2}))
    assert (victim / "precious.txt").is_file()
    assert (run_dir / "best").resolve().parent == (run_dir / "checkpoints").resolve()


# --------------------------------------------------------------------------- sizes before allocation


def test_an_mha_header_declaring_a_huge_volume_is_refused_before_any_pixel_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bomb.mha"
    path.write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 100000 100000 100000\nElementType = MET_UCHAR\n"
                     b"ElementDataFile = LOCAL\n" + b"\0" * 64)  # a 1e15-byte volume in a 150-byte file
    for read in (header_shape, read_image_array):
        with pytest.raises(DataError, match=r"header declares size 100000×100000×100000 \(1e\+15 voxels\)"):
            read(path)


def test_a_weights_file_declaring_a_huge_header_is_refused_unread(random_checkpoint: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(random_checkpoint.resolve(), tmp_path / "ckpt"))
    (copy / "weights.safetensors").write_bytes(struct.pack("<Q", 2**60) + b"{}")  # claims an exabyte of JSON
    with pytest.raises(CheckpointError, match=r"unreadable checkpoint .*header too large"):
        load_checkpoint(copy)


# ------------------------------------------------------------------------------------------- the doc


def test_every_test_docs_security_md_names_exists() -> None:
    text = (ROOT / "docs" / "SECURITY.md").read_text(encoding="utf-8")
    named = re.findall(r"`((?:tests/(?:\w+/)*)?test_\w+\.py)::(test_\w+)", text)
    assert len(named) >= 25
    for file, test in named:
        path = ROOT / file if file.startswith("tests/") else ROOT / "tests" / "robustness" / file
        assert f"def {test}(" in path.read_text(encoding="utf-8"), f"{file}::{test}"


def test_json_nested_too_deeply_is_one_line(tmp_path: Path, tiny_dataset: Path) -> None:
    """Python's json raises RecursionError on 200000 nested brackets: it was reported as "unexpected"."""
    import shutil

    from segkit.data.index import detect_layout, load_dataset
    from segkit.engine.checkpoint import load_checkpoint

    root = Path(shutil.copytree(tiny_dataset, tmp_path / "ds"))
    (root / "dataset.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(DataError, match=r"dataset.json: not valid JSON \(nested too deeply to read\)"):
        load_dataset(root, detect_layout(root))
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "weights.safetensors").write_bytes(b"")
    (checkpoint / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(CheckpointError, match=r"unreadable checkpoint \(a JSON file nested too deeply to read\)"):
        load_checkpoint(checkpoint)
