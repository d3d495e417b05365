"""One tiny real comparison (2 upsampling modes × 2 seeds, then a rerun, then a third seed), shared by the tests.

The phantoms are smaller than ``tiny_dataset`` (8 slices of 32×32, one held-out case) and the 2D model trains
two steps, so the six runs fit the test budget on a 2-core CPU.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from segkit.compare.spec import CompareRequest
from segkit.data.synth import write_dataset
from tests.conftest import write_yaml

VARIANTS = ("transposed", "nearest")


@dataclass(frozen=True)
class Invocation:
    """What one ``run_compare`` call printed, and the result files' modification times right after it."""

    output: str
    result_mtimes: dict[str, int]


@dataclass(frozen=True)
class History:
    """The comparison folder and its three invocations: first (2 seeds), rerun (same), more (3 seeds)."""

    out: Path
    base: Path
    first: Invocation
    rerun: Invocation
    more: Invocation


def compare_base(folder: Path) -> Path:
    """Tiny phantoms and a base config that trains a 2D resnet18 UNet for two steps."""
    data = folder / "phantoms"
    write_dataset(data, cases=4, seed=7, size_dhw=(8, 32, 32), test_cases=1)
    return write_yaml(folder / "base.yaml", {
        "base": "demo_unet_resnet34.yaml",
        "data": {"root": str(data), "spacing": None, "val_fraction": 0.3},
        "model": {"spatial_dims": 2, "encoder": "resnet18", "decoder_channels": [16, 16, 8, 8, 8]},
        "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "patch_size": [32, 32], "val_every": 1,
                  "surface_metrics": False},
        "infer": {"roi_size": [32, 32], "sw_batch_size": 16, "overlap": 0.0},
    })


def _invoke(base: Path, out: Path, seeds: int) -> Invocation:
    from segkit.pipelines.compare import run_compare

    text = io.StringIO()
    request = CompareRequest(str(base), (f"model.upsample={','.join(VARIANTS)}",), (), seeds, out, "transposed")
    run_compare(request, "auto", Console(file=text, width=200))
    mtimes = {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.glob("runs/*/*/result.json"))}
    return Invocation(text.getvalue(), mtimes)


@pytest.fixture(scope="package")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """Run the comparison three times in one folder (4 runs, then none, then 2 more)."""
    folder = tmp_path_factory.mktemp("compare")
    base, out = compare_base(folder), folder / "out"
    first = _invoke(base, out, 2)
    rerun = _invoke(base, out, 2)
    more = _invoke(base, out, 3)
    return History(out, base, first, rerun, more)


def results(out: Path) -> list[dict]:
    """Every run's result.json in ``out``."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.glob("runs/*/*/result.json"))]
