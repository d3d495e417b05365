"""`make bench-gpu` (benchmarks/gpu_session.sh) before a lent GPU machine runs it: every stage's command line is one
its benchmark script accepts, the make target needs no network, and the time budget skips what does not fit.

The script runs here with a stand-in Python that records its arguments and succeeds at once (no GPU is needed).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_session.sh"
FIELD, RECORD = "\x1f", "\x1e"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def _stand_in(tmp_path: Path, missing: str = "") -> tuple[Path, Path]:
    """An executable that appends its arguments to a record file and exits 0 (``-c`` snippets included), but 1
    for ``-c "import MISSING"``."""
    record = tmp_path / "calls"
    python = tmp_path / "python"
    refuse = f'if [ "$1 $2" = "-c import {missing}" ]; then exit 1; fi\n' if missing else ""
    python.write_text(f"#!/usr/bin/env bash\nprintf '%s{FIELD}' \"$@\" >> '{record}'\n"
                      f"printf '{RECORD}' >> '{record}'\n{refuse}")
    python.chmod(0o755)
    return python, record


def _calls(record: Path) -> list[list[str]]:
    if not record.exists():
        return []
    return [call.split(FIELD)[:-1] for call in record.read_text().split(RECORD)[:-1]]


def _session(tmp_path: Path, *stages: str, missing: str = "", **env: str
             ) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    python, record = _stand_in(tmp_path, missing)
    inherited = {k: v for k, v in os.environ.items() if k not in ("BUDGET_S", "ARCHIVE")}
    environ = {**inherited, "PYTHON": str(python), "OUT": str(tmp_path / "out"), **env}
    done = subprocess.run(["bash", str(SCRIPT), *stages], cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=120)
    return done, _calls(record)


def _known_stages() -> list[str]:
    known = re.search(r'KNOWN=" (.*?) "\n', SCRIPT.read_text(), re.S)
    assert known, "gpu_session.sh lists its stages in KNOWN"
    return known.group(1).replace("\\\n", "").split()


def _parse_with_script(script: Path, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``script``'s own ``_parse_args`` on ``argv`` (argparse exits on a flag it does not know)."""
    monkeypatch.syspath_prepend(str(script.parent))
    name = f"bench_{script.stem}"
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", [str(script), *argv])
    try:
        module._parse_args()
    except SystemExit as exc:
        pytest.fail(f"{script.name} refuses the arguments gpu_session.sh gives it: {argv} (exit {exc.code})")


def test_every_stage_runs_a_command_its_script_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stages = _known_stages()
    done, calls = _session(tmp_path, *stages)
    assert done.returncode == 0, done.stdout + done.stderr
    session = (tmp_path / "out" / "session.txt").read_text().splitlines()
    assert [line.split()[0] for line in session] == stages
    assert all(" rc=0 " in f"{line} " for line in session), session
    runs = [call for call in calls if call[0] != "-c"]
    assert len(runs) == len(stages)
    for call in runs:
        if call[:2] == ["-m", "pytest"]:
            tests = [arg for arg in call[2:] if arg.endswith(".py")]
            assert tests and all((ROOT / t).is_file() for t in tests), call
            continue
        script = ROOT / call[0]
        assert script.is_file() and script.parent.name == "benchmarks", call
        _parse_with_script(script, call[1:], monkeypatch)


def test_a_misspelt_stage_is_refused_before_anything_runs(tmp_path: Path) -> None:
    done, calls = _session(tmp_path, "tests", "predict-batchnorm")
    assert done.returncode == 2
    assert "unknown stage predict-batchnorm" in done.stdout
    assert calls == [] and not (tmp_path / "out").exists()


def test_the_budget_skips_stages_that_do_not_fit_and_names_them(tmp_path: Path) -> None:
    archive = tmp_path / "bench.tar.gz"
    done, calls = _session(tmp_path, "tests", "predict", "train-ro", "stages", BUDGET_S="100", ARCHIVE=str(archive))
    assert done.returncode == 0, done.stdout + done.stderr
    session = (tmp_path / "out" / "session.txt").read_text().splitlines()
    assert [line.split()[:2] for line in session] == [["tests", "rc=0"], ["predict", "skipped"],
                                                      ["train-ro", "skipped"], ["stages", "rc=0"]]
    assert "=== predict skipped" in done.stdout
    ran = [call for call in calls if call[0] != "-c"]
    assert [call[:2] for call in ran] == [["-m", "pytest"], ["benchmarks/predict_stages.py", "--device"]]
    with tarfile.open(archive) as bundle:  # one file holding what the stages left, as a lent machine returns it
        names = {Path(name).name for name in bundle.getnames()}
    assert {"session.txt", "tests.log", "stages.log", "gpu.txt"} <= names


def test_inflate_without_rapidgzip_is_skipped_not_run(tmp_path: Path) -> None:
    """Without its contender the benchmark would spend device time timing ISA-L against zlib only."""
    done, calls = _session(tmp_path, "inflate", "stages", missing="rapidgzip")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "inflate skipped: rapidgzip is not installed" in done.stdout
    assert not any(call[0] == "benchmarks/inflate.py" for call in calls)
    assert [line.split()[:2] for line in (tmp_path / "out" / "session.txt").read_text().splitlines()] == [
        ["inflate", "skipped"], ["stages", "rc=0"]]


def test_a_python_without_cuda_stops_the_session_at_once(tmp_path: Path) -> None:
    environ = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
    probe = "import torch, monai; raise SystemExit(0 if torch.cuda.is_available() else 1)"
    if subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0:
        pytest.skip("this Python has a CUDA GPU")
    done = subprocess.run(["bash", str(SCRIPT), "predict"], cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert "no CUDA GPU for" in done.stdout and "=== predict" not in done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_bench_gpu_builds_no_venv_and_runs_the_session_within_a_budget(tmp_path: Path) -> None:
    """On a lent GPU machine there is no .venv and no network: the target must not try to build one."""
    dry = subprocess.run(["make", "-s", "-n", "-C", str(ROOT), "bench-gpu", f"VENV={tmp_path / 'no-venv'}"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert "venv" not in dry and "pip install" not in dry, dry
    assert re.search(r"BUDGET_S=540 PYTHON=python3 bash benchmarks/gpu_session.sh tests ", dry), dry
    python, record = _stand_in(tmp_path)
    out = tmp_path / "bench-out"
    done = subprocess.run(["make", "-s", "-C", str(ROOT), "bench-gpu", f"GPU_PYTHON={python}", f"BENCH_OUT={out}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    session = (out / "session.txt").read_text().splitlines()
    assert session and all(" rc=0 " in f"{line} " for line in session), session
    assert len([call for call in _calls(record) if call[0] != "-c"]) == len(session)
