"""An nnU-Net v2 raw dataset with faults: every training fault named at once, a faulty held-out case never blocks
training, and ``numTraining`` must count the training cases (as nnU-Net's integrity check demands)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from segkit.data.index import load_dataset
from segkit.data.synth import write_dataset
from segkit.errors import DataError
from tests.cli_run import run_cli
from tests.conftest import TINY_SIZE


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "Dataset001_Phantoms"
    write_dataset(root, cases=4, seed=2, size_dhw=TINY_SIZE, test_cases=1, layout="nnunet", channels=2)
    return root


def test_every_training_fault_is_named_in_one_error(root: Path) -> None:
    for case in ("phantom_000", "phantom_001"):
        (root / "imagesTr" / f"{case}_0001.nii.gz").unlink()
    (root / "labelsTr" / "phantom_002.nii.gz").unlink()
    with pytest.raises(DataError) as info:  # before: only phantom_000's missing channel, one fault per run
        load_dataset(root, "nnunet")
    message = str(info.value)
    assert message.startswith("3 problems: ")
    assert f"{root / 'imagesTr' / 'phantom_000'}: has channels [0]" in message
    assert f"{root / 'imagesTr' / 'phantom_001'}: has channels [0]" in message
    assert f"{root / 'labelsTr' / 'phantom_002.nii.gz'}: missing label for training case 'phantom_002'" in message


def test_a_faulty_held_out_case_is_listed_by_the_check_but_never_blocks_training(root: Path, tmp_path: Path) -> None:
    (root / "imagesTs" / "phantom_003_0001.nii.gz").unlink()
    shutil.copy(root / "imagesTs" / "phantom_003_0000.nii.gz", root / "imagesTs" / "scan.nii.gz")
    index = load_dataset(root, "nnunet")  # before: a DataError, so `segkit train` refused to start
    assert len(index.training) == 3 and index.test == []
    assert sorted(case_id for case_id, _, _ in index.skipped) == ["phantom_003", "scan"]
    done = run_cli("data", "check", str(root), cwd=tmp_path)
    assert done.returncode == 1
    assert "has channels [0] but" in done.stdout and "nnU-Net image names end in _XXXX.nii.gz" in done.stdout


def test_num_training_must_count_the_training_cases(root: Path) -> None:
    manifest = json.loads((root / "dataset.json").read_text())
    assert manifest["numTraining"] == 3
    manifest["numTraining"] = 5
    (root / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"dataset.json: numTraining is 5 but imagesTr/labelsTr hold 3 case\(s\) — "
                                        r"nnU-Net refuses this; set numTraining to 3$"):
        load_dataset(root, "nnunet")  # before: accepted, and nnU-Net's baseline then refused the dataset
    del manifest["numTraining"]  # not given: nothing to compare
    (root / "dataset.json").write_text(json.dumps(manifest))
    assert len(load_dataset(root, "nnunet").training) == 3
