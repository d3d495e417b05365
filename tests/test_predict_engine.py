"""The prediction engine end to end on a random-weight checkpoint: manifest, resume after a crash,
bad inputs, probabilities, TTA and previews."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import segkit.pipelines.predict as predict_module
import segkit.pipelines.predict_writer as writer_module
from segkit.pipelines.predict import PredictOptions, run_prediction

from segkit.inference.case_loader import CaseLoader
from segkit.inference.manifest import read_manifest
from segkit.inference.predictor import Predictor
from segkit.models import build_model


@pytest.fixture(scope="module")
def checkpoint(random_checkpoint: Path) -> Path:
    return random_checkpoint


@pytest.fixture
def inputs(tiny_dataset: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "scans"
    shutil.copytree(tiny_dataset / "imagesTr", folder)
    return folder


def _statuses(results) -> dict[str, str]:
    return {r.case_id: r.status for r in results}


def test_outputs_manifest_probabilities_and_rerun(checkpoint: Path, inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds"
    options = PredictOptions(device="cpu", probabilities=True, preview=True)
    results = run_prediction(checkpoint, [str(inputs)], out, options)
    assert set(_statuses(results).values()) == {"written"} and len(results) == 4
    records = read_manifest(out / "manifest.jsonl")
    for result in results:
        record = records[result.case_id]
        assert record["status"] == "written" and set(record["seconds"]) == {"read", "compute", "write"}
        source, written = nib.load(str(result.source)), nib.load(str(result.output))
        assert written.shape == source.shape and np.allclose(written.affine, source.affine, atol=1e-5)
        for code in ("qform_code", "sform_code"):  # the inputs are LPS, RAS and oblique, all anisotropic
            assert int(written.header[code]) == int(source.header[code])
        assert np.allclose(written.header.get_qform(), source.header.get_qform(), atol=1e-5)
        labels = np.asarray(written.dataobj)
        assert labels.dtype == np.uint8
        voxel_ml = abs(np.linalg.det(source.affine[:3, :3])) / 1000
        expected = {str(k): round(float((labels == k).sum()) * voxel_ml, 4) for k in range(1, 4) if (labels == k).any()}
        assert record["volumes_ml"] == pytest.approx(expected)
        probs = np.load(out / f"{result.case_id}.probabilities.npz", allow_pickle=False)
        p = probs["probabilities"].astype(np.float32)
        assert p.dtype == np.float32 and p.shape == (4, *labels.shape)
        assert np.allclose(p.sum(0), 1.0, atol=5e-3)
        agree = (p.argmax(0) == labels).mean()
        assert agree > 0.99  # float16 rounding may flip near-ties only
        assert (out / f"{result.case_id}.preview.png").read_bytes()[:4] == b"\x89PNG"
    again = run_prediction(checkpoint, [str(inputs)], out, PredictOptions(device="cpu", probabilities=True))
    assert set(_statuses(again).values()) == {"skipped"}
    assert all(r.message == "complete in manifest" for r in again)
    tta = run_prediction(checkpoint, [str(inputs)], out, PredictOptions(device="cpu", probabilities=True, tta=True))
    assert set(_statuses(tta).values()) == {"written"}  # other settings: the manifest does not count it done
    bf16 = run_prediction(checkpoint, [str(inputs)], out, PredictOptions(device="cpu", probabilities=True,
                                                                         tta=True, precision="bf16"))
    assert set(_statuses(bf16).values()) == {"written"}  # another precision, another result
    assert {r["settings"]["precision"] for r in read_manifest(out / "manifest.jsonl").values()} == {"bf16"}


def test_a_crash_while_writing_redoes_only_the_missing_cases(checkpoint: Path, inputs: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "preds"
    real_write, calls = writer_module.write_like, {"n": 0}

    class Killed(BaseException):
        """Stands in for SIGKILL: nothing in segkit catches it."""

    def dying_write(array, reference, path, level=1):
        calls["n"] += 1
        if calls["n"] == 2:
            path.with_name(f".{path.name[:-7]}.0badc0de.tmp.nii.gz").write_bytes(b"\x1f\x8b partial")
            raise Killed
        real_write(array, reference, path, level)

    with monkeypatch.context() as patch:
        patch.setattr(writer_module, "write_like", dying_write)
        with pytest.raises(Killed):
            run_prediction(checkpoint, [str(inputs)], out, PredictOptions(device="cpu", workers=1))
    crashed = sorted(inputs.iterdir())[1].name  # the second write (one writer thread: input order)
    assert not (out / crashed).exists() and (out / sorted(inputs.iterdir())[0].name).exists()
    results = run_prediction(checkpoint, [str(inputs)], out, PredictOptions(device="cpu", workers=1))
    assert sorted(_statuses(results).values()) == ["skipped", "written", "written", "written"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # the killed write's temp file is gone
    for path in out.glob("*.nii.gz"):
        assert np.asarray(nib.load(str(path)).dataobj).shape == nib.load(str(inputs / path.name)).shape
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line)["status"] == "written" for line in lines)  # compacted


def test_a_corrupt_input_is_recorded_and_the_others_finish(checkpoint: Path, inputs: Path, tmp_path: Path) -> None:
    (inputs / "broken.nii.gz").write_bytes(b"this is not an image")
    out = tmp_path / "preds"
    results = run_prediction(checkpoint, [str(inputs)], out, PredictOptions(device="cpu"))
    statuses = _statuses(results)
    assert statuses.pop("broken") == "failed" and set(statuses.values()) == {"written"}
    record = read_manifest(out / "manifest.jsonl")["broken"]
    assert record["status"] == "failed" and "broken.nii.gz" in record["error"]
    assert not (out / "broken.nii.gz").exists()


def test_reading_starts_before_the_model_is_prepared_on_the_device(checkpoint: Path, inputs: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The first read is the one nothing else overlaps: it must already run while the predictor is being built."""
    first_read, seen = threading.Event(), []
    original_load = CaseLoader.load

    def load(self, paths):
        first_read.set()
        return original_load(self, paths)

    class RecordingPredictor(Predictor):
        def __init__(self, *args, **kwargs) -> None:
            seen.append(first_read.wait(timeout=5))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(CaseLoader, "load", load)
    monkeypatch.setattr(predict_module, "Predictor", RecordingPredictor)
    results = run_prediction(checkpoint, [str(inputs)], tmp_path / "preds", PredictOptions(device="cpu"))
    assert seen == [True] and {r.status for r in results} == {"written"} and len(results) == 4


def test_an_existing_file_that_segkit_did_not_write_is_kept(checkpoint: Path, inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds"
    out.mkdir()
    first = sorted(inputs.iterdir())[0]
    (out / first.name).write_bytes(b"the user's own file")
    results = run_prediction(checkpoint, [str(inputs)], out, PredictOptions(device="cpu"))
    assert _statuses(results)[first.name[:-7]] == "skipped"
    assert (out / first.name).read_bytes() == b"the user's own file"


def test_two_processes_shard_the_cases_and_write_each_exactly_once(checkpoint: Path, inputs: Path,
                                                                   tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    out = tmp_path / "preds"
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "segkit",
         "predict", "--checkpoint", str(checkpoint), "--input", str(inputs), "--output", str(out), "--device", "cpu"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["case_id"] for r in lines) == sorted(p.name[:-7] for p in inputs.iterdir())  # once each
    assert {r["rank"] for r in lines} == {0, 1} and all(r["status"] == "written" for r in lines)
    assert not list(out.glob("manifest.rank*.jsonl"))  # parts merged
    assert run.stdout.count("4 written, 0 skipped, 0 failed") == 1  # one table, from rank 0
    flat = " ".join(run.stdout.split())  # rich wraps lines at 80 columns
    assert flat.count("predicting 2 case(s)") == 1 and "(rank 0's share; 2 processes in all)" in flat
    for path in inputs.iterdir():
        assert nib.load(str(out / path.name)).shape == nib.load(str(path)).shape


def test_preprocessing_on_the_device_gives_the_same_prediction(checkpoint: Path, inputs: Path) -> None:
    from segkit.engine.checkpoint import load_checkpoint, load_weights
    from segkit.inference.predictor import Predictor

    ckpt = load_checkpoint(checkpoint)
    model = build_model(ckpt.config.model)
    load_weights(model, ckpt)
    source = [sorted(inputs.iterdir())[2]]
    device = __import__("torch").device("cpu")
    host = Predictor(model, ckpt.config, device, device_preprocessing=False)
    split = Predictor(model, ckpt.config, device, device_preprocessing=True)
    loaded = split.load(source)
    assert loaded.shape != host.load(source).shape  # only read and reoriented: not yet resampled
    prepared = split.finish_preprocessing(loaded)
    reference = host.load(source)
    assert prepared.shape == reference.shape and (prepared - reference).abs().max() < 1e-5
    prediction = split.infer(loaded)
    assert np.array_equal(prediction.labels, host.infer(host.load(source)).labels)
    assert prediction.labels.flags.f_contiguous  # NIfTI's order: written without a transposing copy
    counts = np.bincount(prediction.labels.ravel(), minlength=ckpt.config.model.num_classes)
    assert np.array_equal(prediction.voxel_counts, counts)


def test_channels_last_inference_matches_contiguous(checkpoint: Path, inputs: Path) -> None:
    import torch

    from segkit.engine.checkpoint import load_checkpoint, load_weights
    from segkit.inference.predictor import Predictor
    from segkit.runtime import ChannelsLastInput

    ckpt = load_checkpoint(checkpoint)
    model = build_model(ckpt.config.model)
    load_weights(model, ckpt)
    logits = {}
    for layout in ("channels_last", "contiguous"):
        cfg = ckpt.config.model_copy(update={"infer": ckpt.config.infer.model_copy(update={"memory_format": layout})})
        predictor = Predictor(model, cfg, torch.device("cpu"))
        assert isinstance(predictor.model, ChannelsLastInput) == (layout == "channels_last")
        logits[layout] = predictor.logits(predictor.load([sorted(inputs.iterdir())[0]]))
    assert (logits["channels_last"] - logits["contiguous"]).abs().max() < 1e-4


def test_bf16_prediction_on_the_cpu_runs_packed_bf16_convolutions_close_to_fp32(checkpoint: Path,
                                                                                inputs: Path) -> None:
    import torch

    from segkit.engine.checkpoint import load_checkpoint, load_weights
    from segkit.inference.predictor import Predictor
    from segkit.models.packed_conv import PackedConv, packing_available

    ckpt = load_checkpoint(checkpoint)
    logits, predictors = {}, {}
    for precision in ("bf16", "fp32"):
        model = build_model(ckpt.config.model)
        load_weights(model, ckpt)
        cfg = ckpt.config.model_copy(update={"train": ckpt.config.train.model_copy(update={"precision": precision})})
        predictors[precision] = Predictor(model, cfg, torch.device("cpu"))
        logits[precision] = predictors[precision].logits(predictors[precision].load([sorted(inputs.iterdir())[0]]))
    packed = {name: m for name, m in predictors["bf16"].model.named_modules() if isinstance(m, PackedConv)}
    assert len(packed) > 0 or not packing_available()
    assert all(m.conv.weight.dtype == torch.bfloat16 for m in packed.values())
    assert all(m._packed is not None for name, m in packed.items() if "aux_heads" not in name)  # the fast path ran
    assert torch.isfinite(logits["bf16"]).all()
    error = (logits["bf16"] - logits["fp32"]).abs().max()
    assert error <= 0.03 * logits["fp32"].abs().max()
    agreement = (logits["bf16"].argmax(0) == logits["fp32"].argmax(0)).float().mean()
    assert agreement >= 0.99
