"""The Makefile's demo targets: README.md promises that `make demo` works again after `make clean`."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from segkit.data.synth import write_dataset
from tests.cli_run import run_cli

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--cases", "2", "--size", "8", "32", "32"]  # argparse keeps the last value: a small dataset, same command

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _make(target: str, tmp_path: Path, *, dry_run: bool) -> str:
    """``make TARGET`` with the demo data and run under ``tmp_path`` (``-n``: print the commands only)."""
    args = ["make", "-s", "-C", str(ROOT), target, f"DEMO_DATA={tmp_path / 'demo'}", f"DEMO_RUN={tmp_path / 'run'}"]
    args += [f"VENV={Path(sys.prefix)}"] if dry_run else [f"VENV={tmp_path / 'venv'}"]
    done = subprocess.run([*args[:1], "-n", *args[1:]] if dry_run else args, capture_output=True, text=True,
                          check=True, timeout=60)
    return done.stdout


def _synth_step(target: str, tmp_path: Path) -> list[str]:
    """The ``segkit data synth`` arguments the target runs when the demo dataset is missing."""
    line = next(line for line in _make(target, tmp_path, dry_run=True).splitlines() if " data synth " in line)
    command = shlex.split(line.split("||", 1)[1])
    return command[command.index("data"):]


@pytest.mark.parametrize("target", ["demo", "compare-demo"])
def test_the_demo_targets_synthesise_again_after_make_clean(tmp_path: Path, target: str) -> None:
    demo = tmp_path / "demo"
    write_dataset(demo, cases=2, seed=0, size_dhw=(8, 32, 32))
    assert run_cli("data", "check", str(demo), cwd=tmp_path).returncode == 0  # as training leaves it
    _make("clean", tmp_path, dry_run=False)
    assert not (demo / "dataset.json").exists()
    done = run_cli(*_synth_step(target, tmp_path), *SMALL, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (demo / "dataset.json").is_file()


def test_the_demo_target_finishes_a_synth_that_was_interrupted(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    write_dataset(demo, cases=2, seed=0, size_dhw=(8, 32, 32))
    (demo / "dataset.json").unlink()  # as an interrupted synth leaves it: its record written, no dataset.json
    done = run_cli(*_synth_step("demo", tmp_path), *SMALL, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (demo / "dataset.json").is_file()
