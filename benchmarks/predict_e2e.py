"""End-to-end batch prediction, segkit vs MONAI: same weights, same volumes, same window settings, outputs checked.

    python benchmarks/predict_e2e.py                  # CPU: 4 cases of 256x256x120, demo config
    python benchmarks/predict_e2e.py --device cuda    # GPU: 4 cases of 512x512x300, unet_resnet34 config
    python benchmarks/predict_e2e.py --size 96 96 48 --cases 2 --json out.json   # smoke test

Writes N seeded CT-like int16 volumes (.nii.gz, gzip level 6, spacing 0.8 x 0.8 x 2.5 mm, LPS-ish affine: air
-1000 HU, a ~40 HU body ellipsoid with noise, brighter ~200 HU blobs) to ``--data`` (reused when present) or a
temp folder. Builds one randomly initialised (seeded) UNet from the config with 3 classes, spacing 1.5 mm, RAS,
HU window [-200, 300], overlap 0.5 and Gaussian blending; saves it as a segkit checkpoint and gives the very
same weights to MONAI.

Random weights make the output comparison trivial: with fresh batch-norm statistics (mean 0, variance 1) the
logits hardly vary across the image and one class wins everywhere. So, before saving, the model is made to
give spatially varying, balanced label maps: batch-norm running statistics (if the config uses batch norm)
are set from one pass over the central window of the first preprocessed case; the final 1x1 conv
(``model.head``) is rescaled per class to zero-mean, unit-std logits on that window; and its bias is shifted
so that each class wins a third of the window's voxels (exact quantiles, a few sweeps over the classes).

segkit's side is the product path: ``run_prediction`` on the files (reader threads -> device -> writer threads),
timed as the wall time of the whole folder divided by N; it includes loading the checkpoint and building the
model (that cost is also reported on its own). The per-stage seconds come from its manifest.jsonl (read,
compute, write; they overlap in the pipeline). MONAI's side is the standard tutorial pipeline as MONAI's own
inference bundle (model-zoo spleen_ct_segmentation, configs/inference.json) runs it: a ``Dataset`` of the files
behind a ``DataLoader(batch_size=1, num_workers=--monai-workers)`` (default: as many worker processes as segkit
has reader threads, so that loading overlaps inference on both sides; 0 gives the old case-by-case run) doing
LoadImaged -> EnsureChannelFirstd -> Orientationd(RAS) -> Spacingd(1.5, bilinear) -> ScaleIntensityRanged, then
in the main process per decollated case sliding_window_inference (same roi, windows per pass, overlap, blending
and autocast) -> Invertd (nearest_interp=False) -> AsDiscreted(argmax) -> SaveImaged(uint8, resample=False),
each stage timed (CUDA synchronised; "load+preprocess" is the wait for the loader's next case plus any device
preprocessing). As in MONAI's tutorials the image is moved to the device only for the sliding window, and the
logits stay where it leaves them (the GPU) for Invertd and argmax. With ``--device cuda`` (or ``--monai-best``
on CPU) also MONAI's "best practice" variant: the loader's workers only read (LoadImaged, EnsureChannelFirstd),
then EnsureTyped(device) so that orientation, resampling and intensity scaling run on the GPU, the model in
channels_last_3d where its norm keeps that layout (CUDA, batch or group norm; PyTorch's instance norm converts
layouts at every norm and is slower channels-last: forward_variants.py, so instance-norm models stay
contiguous; a copy with the same weights), 8 windows per pass, and the label map cast to uint8 on the device
before saving. Output files are gzip level 1 on both sides (segkit's infer.compression_level, nibabel's default
for MONAI).

Precision is the same on both sides: by default bf16, the issue's pipeline precision, on CUDA and on CPUs that
compute bf16 in hardware (AMX or AVX512-BF16; segkit: ``segkit predict --precision bf16``, oneDNN-packed bf16
convolutions; MONAI: the same sliding window under ``torch.autocast("cpu", torch.bfloat16)``), fp32 on other CPUs;
``--precision fp32`` gives the fp32 comparison. torch 2.13's oneDNN computes some bf16 convolution shapes wrongly
on AMX (docs/PREDICTION.md): MONAI's NaN/Inf logits are counted per case and reported when the Dice check fails.

Each side first predicts one untimed warm-up case (lazy initialisation: imports, cuDNN, thread pools); then
``--repeats`` folder runs alternate segkit, MONAI (, MONAI best). Both sides read the same files (in the page
cache after generation; with a reused --data folder only the warm-up case is sure to be, and segkit reads first in
each repeat, so a cold read falls on segkit's side). The outputs of the last repeat are compared case by case:
same shape, same affine (1e-4) and the mean foreground Dice between segkit's and MONAI's label maps; the script
exits non-zero if any Dice is below 0.99 or any geometry differs. Prints a table and, with --json, writes the
same numbers with versions, device, date and the command line.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gzip
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import monai
import nibabel as nib
import numpy as np
import torch
from machine import device_name
from monai import transforms as mt
from monai.data import DataLoader, Dataset, decollate_batch
from monai.inferers import sliding_window_inference
from rich.console import Console
from rich.table import Table
from segkit.pipelines.predict import PredictOptions, run_prediction

import segkit
from segkit.config import Config, load_config
from segkit.data.cases import case_id_of
from segkit.data.transforms import prediction_transforms
from segkit.engine.checkpoint import Snapshot, load_checkpoint, load_weights, save_checkpoint
from segkit.engine.metrics import dice_per_class, mean_foreground
from segkit.inference.manifest import read_all
from segkit.models import build_model
from segkit.runtime import autocast, autocast_dtype, cpu_has_native_bf16, resolve_device

NUM_CLASSES = 3
SPACING_MM = (0.8, 0.8, 2.5)
TARGET_SPACING = (1.5, 1.5, 1.5)
WINDOW = (-200.0, 300.0)
OVERLAP = 0.5
GZIP_LEVEL = 6
MIN_DICE = 0.99
AFFINE_TOL = 1e-4
BEST_SW_BATCH = 8


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--size", type=int, nargs=3, metavar=("X", "Y", "Z"),
                        help="voxels per volume (256 256 120 on CPU, 512 512 300 on CUDA)")
    parser.add_argument("--data", type=Path, help="folder for the volumes (reused when present; default: temp)")
    parser.add_argument("--config", help="demo_unet_resnet34.yaml on CPU, unet_resnet34.yaml on CUDA")
    parser.add_argument("--roi", type=int, nargs=3, metavar=("X", "Y", "Z"), help="window size (config's)")
    parser.add_argument("--sw-batch", type=int, help="windows per pass (2 on CPU, 8 on CUDA)")
    parser.add_argument("--norm", choices=("batch", "instance", "group"), help="model.norm (the config's)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"),
                        help="both sides (default: bf16, the issue's pipeline, on CUDA and on CPUs with AMX or "
                             "AVX512-BF16; fp32 on other CPUs)")
    parser.add_argument("--workers", type=int, default=2, help="segkit's reader and writer threads (each)")
    parser.add_argument("--monai-workers", type=int,
                        help="MONAI's DataLoader worker processes (default: --workers; 0: load in the main process)")
    parser.add_argument("--repeats", type=int, default=1, help="folder runs per side, alternating")
    parser.add_argument("--monai-best", action="store_true", help="also MONAI's best practice (always on CUDA)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    args.size = tuple(args.size or ((512, 512, 300) if cuda else (256, 256, 120)))
    args.config = args.config or ("unet_resnet34.yaml" if cuda else "demo_unet_resnet34.yaml")
    args.sw_batch = args.sw_batch or (8 if cuda else 2)
    args.precision = args.precision or ("bf16" if cuda or cpu_has_native_bf16() else "fp32")
    args.monai_best = args.monai_best or cuda
    args.monai_workers = args.workers if args.monai_workers is None else args.monai_workers
    return args


# ---------------------------------------------------------------- data


def _affine(shape: tuple[int, ...]) -> np.ndarray:
    """LPS-ish voxel-to-RAS affine: i runs right-to-left, j anterior-to-posterior, k inferior-to-superior."""
    affine = np.diag([-SPACING_MM[0], -SPACING_MM[1], SPACING_MM[2], 1.0])
    affine[:3, 3] = [(shape[0] - 1) * SPACING_MM[0] / 2, (shape[1] - 1) * SPACING_MM[1] / 2, -300.0]
    return affine


def _phantom(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Air at -1000 HU, a ~40 HU body ellipsoid with noise, 3-6 brighter (~200 HU) blobs inside it."""
    axes = [((np.arange(n, dtype=np.float32) - (n - 1) / 2) / (n / 2)) for n in shape]
    x, y, z = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    body = (x / 0.85) ** 2 + (y / 0.65) ** 2 + (z / 1.2) ** 2 <= 1.0
    volume = np.full(shape, -1000.0, dtype=np.float32)
    volume += rng.standard_normal(shape, dtype=np.float32) * 5.0
    volume[body] = 40.0 + rng.standard_normal(int(body.sum()), dtype=np.float32) * 15.0
    mm = [np.arange(n, dtype=np.float32) * s for n, s in zip(shape, SPACING_MM, strict=True)]
    for _ in range(int(rng.integers(3, 7))):
        centre = [float(rng.uniform(0.3, 0.7) * m[-1]) for m in mm]
        radius = float(rng.uniform(8.0, 25.0))
        box = [slice(int(np.searchsorted(m, c - radius)), int(np.searchsorted(m, c + radius)))
               for m, c in zip(mm, centre, strict=True)]
        d2 = sum(((m[b] - c) ** 2).reshape([-1 if a == i else 1 for a in range(3)])
                 for i, (m, b, c) in enumerate(zip(mm, box, centre, strict=True)))
        volume[tuple(box)][(d2 <= radius**2) & body[tuple(box)]] = 200.0 + rng.normal(0.0, 20.0)
    return np.clip(np.rint(volume), -1024, 3071).astype(np.int16)


def _write_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """int16 NIfTI with scanner qform/sform and mm units, gzip level 6, written under a temp name then renamed."""
    image = nib.Nifti1Image(array, affine)
    image.header.set_data_dtype(np.int16)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(gzip.compress(image.to_bytes(), compresslevel=GZIP_LEVEL, mtime=0))
    os.replace(tmp, path)


def _usable(path: Path, shape: tuple[int, ...]) -> bool:
    try:
        header = nib.load(str(path)).header
    except Exception:  # a missing or broken file: write it again
        return False
    return tuple(header.get_data_shape()) == shape and np.allclose(header.get_zooms()[:3], SPACING_MM)


def ensure_volumes(data_dir: Path, cases: int, shape: tuple[int, int, int], seed: int) -> tuple[list[Path], int]:
    """``case_000.nii.gz`` ... in ``data_dir`` (kept when already there with this shape); returns the paths and
    how many were written now."""
    data_dir.mkdir(parents=True, exist_ok=True)
    paths, written = [], 0
    for i in range(cases):
        path = data_dir / f"case_{i:03d}.nii.gz"
        if not _usable(path, shape):
            _write_nifti(_phantom(shape, np.random.default_rng([seed, i])), _affine(shape), path)
            written += 1
        paths.append(path)
    return paths, written


# ---------------------------------------------------------------- model


def _config(args: argparse.Namespace) -> Config:
    overrides = [f"model.num_classes={NUM_CLASSES}", f"data.spacing=[{', '.join(map(str, TARGET_SPACING))}]",
                 "data.normalize=window", f"data.window=[{WINDOW[0]}, {WINDOW[1]}]", "data.orientation=RAS",
                 f"infer.overlap={OVERLAP}", "infer.blend=gaussian", f"infer.sw_batch_size={args.sw_batch}",
                 f"train.precision={args.precision}", f"seed={args.seed}"]
    if args.roi:
        overrides.append(f"infer.roi_size=[{', '.join(map(str, args.roi))}]")
    if args.norm:
        overrides.append(f"model.norm={args.norm}")
    return load_config(args.config, overrides)


def _centre_window(image: torch.Tensor, roi: tuple[int, ...]) -> torch.Tensor:
    """The central ``roi`` of a (C, *spatial) image, or all of an axis shorter than it (the UNet pads itself)."""
    starts = [max((s - r) // 2, 0) for s, r in zip(image.shape[1:], roi, strict=True)]
    return image[(slice(None), *(slice(a, a + r) for a, r in zip(starts, roi, strict=True)))]


def _win_fractions(logits: np.ndarray) -> np.ndarray:
    """Fraction of voxels each class wins, from (K, voxels) logits."""
    return np.bincount(logits.argmax(0), minlength=logits.shape[0]) / logits.shape[1]


def _balancing_shifts(logits: np.ndarray, sweeps: int = 5) -> np.ndarray:
    """Per-class logit shifts giving each class 1/K of the voxels: for each class in turn, the shift that puts
    exactly 1/K of its margins over the other (shifted) classes above zero."""
    classes = logits.shape[0]
    shift = np.zeros(classes)
    for _ in range(sweeps):
        for k in range(classes):
            others = np.delete(logits + shift[:, None], k, axis=0).max(0)
            shift[k] = -np.quantile(logits[k] - others, 1.0 - 1.0 / classes)
    return shift


@torch.no_grad()
def balance_head(model: torch.nn.Module, cfg: Config, first_case: Path, device: torch.device) -> dict:
    """Rescale the final 1x1 conv (``model.head``) so that, on the central window of ``first_case``, each class's
    logit has mean 0 and std 1, then shift its bias so that each class wins 1/K of that window's voxels."""
    image = prediction_transforms(cfg.data)({"image": str(first_case)})["image"]
    window = _centre_window(torch.as_tensor(image).as_subclass(torch.Tensor), cfg.roi_size)
    window, head = window[None].to(device), model.to(device).head
    calibrated = _calibrate_batch_norm(model, window)
    logits = model.eval()(window)[0].double().flatten(1).cpu().numpy()  # (K, voxels)
    mean, std = logits.mean(1), np.maximum(logits.std(1), 1e-12)
    logits = (logits - mean[:, None]) / std[:, None]
    shift = _balancing_shifts(logits)
    scale = torch.as_tensor(1.0 / std, dtype=head.weight.dtype, device=head.weight.device)
    head.weight *= scale.view(-1, *[1] * (head.weight.ndim - 1))
    head.bias.copy_(torch.as_tensor((head.bias.double().cpu().numpy() - mean) / std + shift))
    before = logits * std[:, None] + mean[:, None]
    return {"batch_norm_layers_calibrated": calibrated,
            "class_fractions_before": _rounded(_win_fractions(before)),
            "class_fractions_after": _rounded(_win_fractions(logits + shift[:, None])),
            "logit_mean_before": _rounded(mean), "logit_std_before": _rounded(std)}


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in values]


def _calibrate_batch_norm(model: torch.nn.Module, window: torch.Tensor) -> int:
    """Batch-norm running statistics from one forward pass over ``window`` (fresh layers hold mean 0, var 1,
    which leaves a random network's logits almost constant); returns how many layers were calibrated."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average: exactly this pass's statistics
    if layers:
        model.train()(window)
    for layer in layers:
        layer.momentum = 0.1
    return len(layers)


def make_model(cfg: Config, first_case: Path, device: torch.device, work: Path) -> tuple[torch.nn.Module, Path, dict]:
    """The seeded random model (head balanced), saved as a segkit checkpoint; also what the balancing did and
    what loading the checkpoint into a new model costs (segkit's wall time includes it, MONAI's does not)."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model)
    balance = balance_head(model, cfg, first_case, device)
    link = save_checkpoint(work / "run", "best", cfg, Snapshot.of(model, {"global_step": 0}))
    started = time.perf_counter()
    ckpt = load_checkpoint(link)
    load_weights(build_model(ckpt.config.model, initialise=False), ckpt)  # as predict does
    balance = {"head_balance": balance, "segkit_checkpoint_to_model_s": round(time.perf_counter() - started, 4)}
    return model.eval(), link, balance


# ---------------------------------------------------------------- MONAI


@dataclass
class MonaiVariant:
    """One MONAI pipeline: preprocessing (all of it, for Invertd; its host part, run by the loader's workers;
    the rest, run in the main process), the model (as it runs) and its settings; results per folder run."""

    name: str
    pre: mt.Compose
    host_pre: mt.Compose
    device_pre: mt.Compose | None
    model: torch.nn.Module
    sw_batch: int
    uint8_on_device: bool
    channels_last: bool
    walls: list[float] = field(default_factory=list)  # folder wall / N, per repeat
    cases: list[dict[str, float]] = field(default_factory=list)  # stage seconds per case (all repeats)
    nonfinite_logits: list[int] = field(default_factory=list)  # NaN/Inf voxels of the blended logits, per case
    check_seconds: float = 0.0  # spent counting them: taken out of the wall times


def monai_variant(cfg: Config, model: torch.nn.Module, device: torch.device, best: bool) -> MonaiVariant:
    """The standard tutorial chain (all of it in the loader's workers), or (best) the workers only reading, then
    EnsureTyped(device) and the rest on the device, with a channels-last model where that is faster (CUDA, a norm
    other than PyTorch's instance norm, which converts layouts at every norm: forward_variants.py)."""
    image, low, high = "image", *cfg.data.window
    read = [mt.LoadImaged(image), mt.EnsureChannelFirstd(image)]
    to_device = [mt.EnsureTyped(image, device=device, track_meta=True)] if best else []
    rest = [mt.Orientationd(image, axcodes="RAS"), mt.Spacingd(image, pixdim=cfg.data.spacing, mode="bilinear"),
            mt.ScaleIntensityRanged(image, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)]
    pre = mt.Compose([*read, *to_device, *rest])  # the same transform objects: Invertd matches them by id
    host_pre, device_pre = (mt.Compose(read), mt.Compose([*to_device, *rest])) if best else (pre, None)
    channels_last = best and device.type == "cuda" and cfg.model.norm != "instance"
    if best:
        model = copy.deepcopy(model)
        if channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
    model = model.to(device).eval()
    return MonaiVariant("MONAI best practice" if best else "MONAI standard", pre, host_pre, device_pre, model,
                        BEST_SW_BATCH if best else cfg.infer.sw_batch_size, uint8_on_device=best,
                        channels_last=channels_last)


class _Stopwatch:
    """Laps in seconds, synchronising CUDA before each reading."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.laps = device, {}
        self._last = self._now()

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def lap(self, name: str) -> None:
        now = self._now()
        self.laps[name], self._last = now - self._last, now

    def restart(self) -> None:
        """Leave the time since the last lap out of every lap."""
        self._last = self._now()


def _post(variant: MonaiVariant, out_dir: Path) -> tuple[mt.Compose, mt.SaveImaged]:
    cast = [mt.CastToTyped("pred", dtype=torch.uint8)] if variant.uint8_on_device else []
    invert = mt.Compose([mt.Invertd("pred", transform=variant.pre, orig_keys="image", nearest_interp=False),
                         mt.AsDiscreted("pred", argmax=True), *cast])
    save = mt.SaveImaged("pred", output_dir=str(out_dir), output_postfix="seg", separate_folder=False,
                         output_dtype=np.uint8, resample=False, print_log=False)
    return invert, save


@torch.no_grad()
def monai_case(variant: MonaiVariant, cfg: Config, cases, post: tuple, device: torch.device) -> dict:
    """The loader's next case through the rest of the MONAI pipeline; seconds per stage ("load+preprocess": the
    wait for the loader plus any preprocessing on the device)."""
    invert, save = post
    amp = autocast_dtype(device, cfg.train.precision)
    watch = _Stopwatch(device)
    data = decollate_batch(next(cases))[0]  # batch_size 1, as in MONAI's tutorials and bundles
    if variant.device_pre is not None:
        data = variant.device_pre(data)
    watch.lap("load+preprocess")
    with autocast(device, amp):
        logits = sliding_window_inference(data["image"].unsqueeze(0).to(device), cfg.roi_size, variant.sw_batch,
                                          variant.model, overlap=cfg.infer.overlap, mode=cfg.infer.blend)
    data["pred"] = logits[0]
    watch.lap("inference")
    counted = time.perf_counter()  # not MONAI's work: outside every lap and the wall
    variant.nonfinite_logits.append(int((~torch.isfinite(logits)).sum()))
    variant.check_seconds += time.perf_counter() - counted
    watch.restart()
    data = invert(data)
    watch.lap("invert+argmax")
    save(data)
    watch.lap("save")
    return watch.laps


def run_monai(variant: MonaiVariant, cfg: Config, files: list[Path], out_dir: Path, device: torch.device,
              workers: int) -> None:
    """All cases through a DataLoader with ``workers`` worker processes (started inside the wall, as segkit's
    threads are); records the folder wall time per case and each case's stages."""
    post = _post(variant, out_dir)
    variant.check_seconds, started = 0.0, time.perf_counter()
    # fork, as Linux's Python up to 3.13 does by default (3.14: forkserver): Invertd matches the workers' transforms
    # to the main process's by object id, which only forked workers share; the workers never touch CUDA
    loader = DataLoader(Dataset([{"image": str(p)} for p in files], transform=variant.host_pre), batch_size=1,
                        shuffle=False, num_workers=workers, multiprocessing_context="fork" if workers else None)
    cases = iter(loader)
    variant.cases += [monai_case(variant, cfg, cases, post, device) for _ in files]
    del cases  # the workers end here, inside the wall
    variant.walls.append((time.perf_counter() - started - variant.check_seconds) / len(files))


# ---------------------------------------------------------------- segkit


@dataclass
class SegkitSide:
    """segkit's product path; results per folder run."""

    checkpoint: Path
    workers: int
    walls: list[float] = field(default_factory=list)
    stages: list[dict[str, float]] = field(default_factory=list)  # manifest seconds per case (all repeats)


def run_segkit(side: SegkitSide, files: list[Path], out_dir: Path, device: torch.device) -> None:
    """``run_prediction`` on the files into a fresh folder; fails loudly if any case failed."""
    options = PredictOptions(device=str(device), workers=side.workers)
    started = time.perf_counter()
    results = run_prediction(side.checkpoint, [str(p) for p in files], out_dir, options, Console(quiet=True))
    side.walls.append((time.perf_counter() - started) / len(files))
    failed = [f"{r.case_id}: {r.message}" for r in results if r.status != "written"]
    if failed:
        sys.exit("segkit prediction failed: " + "; ".join(failed))
    side.stages += [record["seconds"] for record in read_all(out_dir).values()]


# ---------------------------------------------------------------- comparison and report


def compare(files: list[Path], segkit_dir: Path, monai_dir: Path) -> dict:
    """Per case: shapes equal, affines equal (1e-4), mean foreground Dice of segkit's vs MONAI's labels."""
    dice, problems = [], []
    for path in files:
        case = case_id_of(path)
        ours, theirs = nib.load(str(segkit_dir / f"{case}.nii.gz")), nib.load(str(monai_dir / f"{case}_seg.nii.gz"))
        a, b = np.asarray(ours.dataobj), np.asarray(theirs.dataobj)
        if a.shape != b.shape:
            problems.append(f"{case}: shape {a.shape} vs {b.shape}")
            continue
        if not np.allclose(ours.affine, theirs.affine, atol=AFFINE_TOL):
            problems.append(f"{case}: affines differ by {np.abs(ours.affine - theirs.affine).max():.2e}")
        dice.append(mean_foreground(dice_per_class(a.astype(np.int64), b.astype(np.int64), NUM_CLASSES)))
    return {"min_dice": min(dice) if dice else float("nan"), "dice": dice, "problems": problems,
            "ok": not problems and bool(dice) and min(dice) >= MIN_DICE}


def _spread(values: list[float]) -> dict:
    return {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values)}


def _mean_stages(cases: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.fmean(c[k] for c in cases) for k in cases[0]}


def _summaries(side: SegkitSide, variants: list[MonaiVariant], checks: dict) -> dict:
    segkit_wall = statistics.median(side.walls)
    results = {"segkit": {"per_case_wall": _spread(side.walls), "walls_s": side.walls,
                          "stages_mean_s": _mean_stages(side.stages)}}
    for v in variants:
        case_walls = [sum(c.values()) for c in v.cases]
        results[v.name] = {"per_case_wall": {**_spread(v.walls), "case_min_s": min(case_walls),
                                             "case_max_s": max(case_walls)},
                           "walls_s": v.walls, "stages_mean_s": _mean_stages(v.cases),
                           "ratio_vs_segkit": statistics.median(v.walls) / segkit_wall,
                           "nonfinite_logits_per_case": v.nonfinite_logits, "comparison": checks[v.name]}
    return results


def _environment(device: torch.device) -> dict:
    return {"segkit": segkit.__version__, "torch": torch.__version__, "monai": monai.__version__,
            "nibabel": nib.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "device": device_name(device), "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": shlex.join(sys.orig_argv)}


def _setup(args: argparse.Namespace, cfg: Config, device: torch.device, model_info: dict, written: int,
           variants: list[MonaiVariant]) -> dict:
    amp = autocast_dtype(device, cfg.train.precision)
    return {"cases": args.cases, "size": list(args.size), "spacing_mm": list(SPACING_MM), "gzip_level": GZIP_LEVEL,
            "volumes_written_now": written, "config": args.config, "norm": cfg.model.norm,
            "target_spacing_mm": list(cfg.data.spacing), "window_hu": list(cfg.data.window),
            "roi": list(cfg.roi_size), "overlap": cfg.infer.overlap, "blend": cfg.infer.blend,
            "sw_batch": cfg.infer.sw_batch_size, "best_sw_batch": BEST_SW_BATCH,
            "precision": str(amp).removeprefix("torch.") if amp is not None else "fp32",
            "segkit_workers": args.workers, "monai_loader_workers": args.monai_workers,
            "monai_best_channels_last": any(v.channels_last for v in variants),
            "segkit_output_gzip_level": cfg.infer.compression_level,
            "monai_output_gzip_level": nib.openers.Opener.default_compresslevel, "repeats": args.repeats,
            "warmup": "one untimed case per side before timing", **model_info}


STAGE_COLUMNS = (("load+preprocess", "read"), ("inference", "compute"), ("invert+argmax", None), ("save", "write"))


def _table(results: dict) -> Table:
    setup, env = results["setup"], results["environment"]
    title = (f"Batch prediction, {setup['cases']} x {'x'.join(map(str, setup['size']))} int16 .nii.gz, "
             f"{setup['config']}, roi {'x'.join(map(str, setup['roi']))}, {setup['sw_batch']} windows/pass, "
             f"{setup['precision']}, {env['device']}")
    caption = ("s/case = folder wall / N (median over repeats). min-max: segkit over repeats (its cases overlap in "
               "the pipeline), MONAI over single cases. Stage columns: mean s per case (segkit: read | compute incl. "
               "resample back + argmax | write, overlapping; MONAI: load+pre = wait for its DataLoader "
               f"({setup['monai_loader_workers']} workers) + device preprocessing). "
               "segkit's wall includes checkpoint -> model "
               f"({setup['segkit_checkpoint_to_model_s']:.2f} s per folder run), MONAI's model is built beforehand. "
               "One untimed warm-up case per side. ratio = MONAI / segkit s/case (> 1: segkit faster); "
               "min Dice = lowest mean foreground Dice of MONAI's label maps against segkit's")
    table = Table(title=title, caption=caption)
    for column in ("pipeline", "s/case", "min-max s", "load+pre / read", "inference / compute", "invert+argmax",
                   "save / write", "ratio", "min Dice"):
        table.add_column(column, justify="left" if column == "pipeline" else "right")
    seg = results["sides"]["segkit"]
    stages = [f"{seg['stages_mean_s'][ours]:.2f}" if ours else "-" for _, ours in STAGE_COLUMNS]
    wall = seg["per_case_wall"]
    table.add_row(f"segkit ({setup['segkit_workers']} workers)", f"{wall['median_s']:.2f}",
                  f"{wall['min_s']:.2f}-{wall['max_s']:.2f}", *stages, "1.00", "-", style="bold")
    for name, side in results["sides"].items():
        if name == "segkit":
            continue
        wall, check = side["per_case_wall"], side["comparison"]
        stages = [f"{side['stages_mean_s'][theirs]:.2f}" for theirs, _ in STAGE_COLUMNS]
        table.add_row(name, f"{wall['median_s']:.2f}", f"{wall['case_min_s']:.2f}-{wall['case_max_s']:.2f}",
                      *stages, f"{side['ratio_vs_segkit']:.2f}", f"{check['min_dice']:.4f}",
                      style=None if check["ok"] else "red")
    return table


def _timed_runs(args, cfg, device, files, side, variants, work) -> None:
    """One untimed warm-up case per side, then ``--repeats`` alternating folder runs into fresh folders."""
    run_segkit(side, files[:1], work / "warmup-segkit", device)
    side.walls.clear()
    side.stages.clear()
    for v in variants:
        run_monai(v, cfg, files[:1], work / f"warmup-{v.name.replace(' ', '-')}", device, args.monai_workers)
        v.walls.clear()
        v.cases.clear()
        v.nonfinite_logits.clear()
    for r in range(args.repeats):
        run_segkit(side, files, work / f"segkit-{r}", device)
        for v in variants:
            run_monai(v, cfg, files, work / f"{v.name.replace(' ', '-')}-{r}", device, args.monai_workers)


def main() -> None:
    args = _parse_args()
    device = resolve_device(args.device)
    warnings.filterwarnings("ignore", category=FutureWarning, module="monai")  # Orientationd's labels default
    torch.backends.cudnn.benchmark = True  # for both sides (segkit's predictor turns it on for itself anyway)
    console = Console()
    if not console.is_terminal:  # piped or captured: keep the table's columns unwrapped
        console = Console(width=max(console.width, 130))
    with tempfile.TemporaryDirectory(prefix="predict-e2e-") as tmp:
        work = Path(tmp)
        console.print(f"volumes: {args.cases} x {'x'.join(map(str, args.size))} in {args.data or work / 'data'}")
        files, written = ensure_volumes(args.data or work / "data", args.cases, args.size, args.seed)
        cfg = _config(args)
        model, checkpoint, model_info = make_model(cfg, files[0], device, work)
        fractions = model_info["head_balance"]
        console.print(f"model: {args.config}, head balanced: class fractions {fractions['class_fractions_before']}"
                      f" -> {fractions['class_fractions_after']}")
        side = SegkitSide(checkpoint, args.workers)
        variants = [monai_variant(cfg, model, device, best=False)]
        if args.monai_best:
            variants.append(monai_variant(cfg, model, device, best=True))
        _timed_runs(args, cfg, device, files, side, variants, work)
        last = args.repeats - 1
        checks = {v.name: compare(files, work / f"segkit-{last}", work / f"{v.name.replace(' ', '-')}-{last}")
                  for v in variants}
    results = {"setup": _setup(args, cfg, device, model_info, written, variants),
               "environment": _environment(device),
               "sides": _summaries(side, variants, checks)}
    console.print(_table(results))
    env = results["environment"]
    console.print(f"{env['command']}  |  segkit {env['segkit']}, torch {env['torch']}, MONAI {env['monai']}, "
                  f"{env['date']}", highlight=False)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        console.print(f"wrote {args.json}")
    bad = {name: c for name, c in checks.items() if not c["ok"]}
    for name, check in bad.items():
        nonfinite = results["sides"][name]["nonfinite_logits_per_case"]
        console.print(f"[red]{name} vs segkit: min Dice {check['min_dice']:.4f} (need {MIN_DICE}); "
                      f"{'; '.join(check['problems']) or 'geometry equal'}; NaN/Inf logits on MONAI's side per "
                      f"case: {nonfinite}[/red]")
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
