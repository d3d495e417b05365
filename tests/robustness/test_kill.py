"""SIGKILL fault injection (``kill.py``), a few points of each: a real ``segkit train`` subprocess killed at
seeded random moments (one of them inside a checkpoint write) and resumed until it finishes, against an
uninterrupted run; ``segkit predict`` killed and rerun until every case is written once. The full version
with more points is ``make robustness``. The last tests show that the harness's checks catch what they
look for."""

from __future__ import annotations

import gzip
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from segkit.config import Config
from segkit.engine.checkpoint import RESUME, WEIGHTS, Snapshot, remove_stale, save_checkpoint
from segkit.inference.manifest import MANIFEST, Manifest, read_manifest
from tests.robustness import kill

pytestmark = pytest.mark.slow

KILLS, SEED = 3, 1


@pytest.fixture(scope="module")
def experiments(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[kill.Chain, kill.Chain]:
    """One chain of KILLS points each for train and predict, beside their uninterrupted runs; the two
    experiments run side by side to fit the time budget of ``make test``."""
    train, predict = kill.run_experiments(tmp_path_factory.mktemp("kill"), tiny_dataset, (1, KILLS), (1, KILLS),
                                          SEED, jobs=2)
    return train[0], predict[0]


def test_train_killed_at_random_moments_resumes_to_identical_weights(experiments) -> None:
    chain = experiments[0]
    assert chain.problems == [] and not chain.mismatch
    assert len(chain.points) == KILLS
    assert chain.max_diff <= kill.ATOL
    assert chain.reruns + chain.restarts == KILLS
    assert sorted(p.moment.mode for p in chain.points) == sorted(kill.MODES)
    assert "write" in [p.landed for p in chain.points]  # a kill inside a checkpoint write
    assert "resume" in [p.command for p in chain.points]  # a resume killed too


def test_predict_killed_at_random_moments_writes_every_case_once(experiments) -> None:
    chain = experiments[1]
    assert chain.problems == [] and not chain.mismatch
    assert len(chain.points) == KILLS and chain.reruns == KILLS
    assert sorted(p.moment.mode for p in chain.points) == sorted(kill.MODES)
    assert any(p.progress < 6 for p in chain.points)  # killed before every case was done


# ------------------------------------------------------------------------------ the harness's own checks


def _run_with_last(run_dir: Path) -> Path:
    """A run directory whose ``last`` holds tiny weights and a resume state."""
    weights = {"w": torch.arange(6.0).reshape(2, 3)}
    snapshot = Snapshot(weights, {"global_step": 3}, None, {"optimizer": {"state": {}}, "step": torch.tensor(3)})
    return save_checkpoint(run_dir, "last", Config(), snapshot)


def test_run_dir_check_flags_a_truncated_checkpoint_file(tmp_path: Path) -> None:
    last = _run_with_last(tmp_path / "run")
    assert kill.run_dir_problems(tmp_path / "run") == []
    assert kill.last_step(tmp_path / "run") == 3
    resume = last.resolve() / RESUME
    resume.write_bytes(resume.read_bytes()[:-40])
    assert [p for p in kill.run_dir_problems(tmp_path / "run") if str(resume) in p]


def test_run_dir_check_flags_a_damaged_unreferenced_checkpoint(tmp_path: Path) -> None:
    last = _run_with_last(tmp_path / "run")
    orphan = Path(shutil.copytree(last.resolve(), last.resolve().parent / "last-000000002-abcdef"))
    (orphan / WEIGHTS).write_bytes(b"\0" * 16)
    assert kill.run_dir_problems(tmp_path / "run") == [f"{orphan / WEIGHTS}: damaged"]


def test_output_check_flags_partial_files_and_rewritten_cases(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    label = out / "a.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6), np.uint8), np.eye(4)), str(label))
    np.savez_compressed(out / "a.probabilities.npz", probabilities=np.zeros((4, 4, 5, 6), np.float16))
    (out / "manifest.jsonl").write_text(json.dumps({"case_id": "a", "output": str(label), "status": "written"}) + "\n")
    setup = kill.PredictSetup(tmp_path, tmp_path, {"a.nii.gz": (4, 5, 6), "a.probabilities.npz": (4, 4, 5, 6)})
    identities: dict = {}
    assert kill.output_problems(setup, out, identities) == [] and len(identities) == 2
    label.write_bytes(gzip.compress(gzip.decompress(label.read_bytes())[:300]))  # whole gzip, short NIfTI
    problems = kill.output_problems(setup, out, identities)
    assert problems[0].startswith(f"{label}: unreadable")
    assert problems[1] == f"{label}: written again (or removed) after the manifest recorded it as written"


# ------------------------------------------------------------------------- regressions found on the way

KILLED_WRITE = """import os, signal, sys
from pathlib import Path
from segkit.io.atomic import atomic_path
with atomic_path(Path(sys.argv[1])) as tmp:
    tmp.write_bytes(b"half a file")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_resume_removes_the_temp_file_of_a_write_killed_in_the_run_dir(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _run_with_last(run_dir)
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(run_dir / "curves.png")], timeout=60)
    assert killed.returncode == -signal.SIGKILL
    [temp] = [p for p in run_dir.iterdir() if p.name.startswith(".")]
    assert temp.name.startswith(".curves.") and temp.read_bytes() == b"half a file"
    remove_stale(run_dir)  # what train --resume does first
    assert not temp.exists() and not (run_dir / "curves.png").exists()
    assert kill.run_dir_problems(run_dir) == [] and kill.last_step(run_dir) == 3


def test_a_manifest_line_cut_by_a_kill_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    whole = json.dumps({"case_id": "a", "output": "a.nii.gz", "status": "written"})
    (tmp_path / MANIFEST).write_text(f'{whole}\n{{"case_id": "b", "output": "b.nii.g', encoding="utf-8")
    manifest = Manifest(tmp_path)
    manifest.append({"case_id": "b", "output": "b.nii.gz", "status": "started"})
    manifest.append({"case_id": "c", "output": "c.nii.gz", "status": "written"})
    records = read_manifest(tmp_path / MANIFEST)
    assert {k: r["status"] for k, r in records.items()} == {"a": "written", "b": "started", "c": "written"}
