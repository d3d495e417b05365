"""Where segkit's prediction time goes, stage by stage, for one CT-sized case (no pipelining, device synchronised).

    python benchmarks/predict_stages.py --device cuda               # 512x512x300, unet_resnet34.yaml, bf16
    python benchmarks/predict_stages.py --size 128 128 60            # a quick CPU run

Uses the volumes of ``predict_e2e.py`` (same generator, same seed) and a randomly initialised model from the
config (3 classes, spacing 1.5 mm, HU window): the weights do not change the time. Each stage is the product
code: ``Predictor.load`` (host read), the device part of preprocessing split into its transforms, the sliding
window, the resampling of the logits back to the input grid, argmax + F-order + copy to the host, and
``write_like``. Prints the median and min over ``--repeats`` runs (after one warm-up run) and, with --json, writes
them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from machine import device_name
from predict_e2e import NUM_CLASSES, TARGET_SPACING, WINDOW, ensure_volumes
from rich.console import Console
from rich.table import Table

from segkit.config import load_config
from segkit.data.transforms import IMAGE, split_prediction_transforms
from segkit.inference.predictor import Predictor, _file_ordered
from segkit.inference.resample import resample_to_grid
from segkit.io.image_io import write_like
from segkit.models import build_model
from segkit.runtime import class_indices, resolve_device


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, nargs=3, metavar=("X", "Y", "Z"), default=(512, 512, 300))
    parser.add_argument("--config", default="unet_resnet34.yaml")
    parser.add_argument("--sw-batch", type=int, default=8)
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, help="folder of predict_e2e volumes (reused; default: temp)")
    parser.add_argument("--json", type=Path)
    return parser.parse_args()


def _timed(device: torch.device, fn: Callable[[], object]) -> tuple[object, float]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def one_case(predictor: Predictor, path: Path, out: Path) -> dict[str, float]:
    """Seconds per stage for one case."""
    device, seconds = predictor.device, {}
    image, seconds["read (host)"] = _timed(device, lambda: predictor.load([path]))
    to_float, rest = split_prediction_transforms(predictor.cfg.data, device)[1:]
    data, seconds["to device, float32"] = _timed(device, lambda: to_float({IMAGE: image}))
    for transform in rest.transforms:
        data, seconds[type(transform).__name__.removesuffix("d")] = _timed(device, lambda t=transform, d=data: t(d))
    prepared = data[IMAGE]
    logits, seconds["sliding window"] = _timed(device, lambda: predictor.logits(prepared))
    back, seconds["resample back"] = _timed(device, lambda: resample_to_grid(
        logits, prepared.affine, prepared.meta["original_affine"], prepared.meta["spatial_shape"]))
    labels, seconds["argmax, to host"] = _timed(
        device, lambda: _file_ordered(class_indices(back, 0).to(torch.uint8)).cpu().numpy().T)
    _, seconds["write .nii.gz"] = _timed(device, lambda: write_like(labels, path, out / path.name))
    return seconds


def main() -> None:
    args = _parse_args()
    device = resolve_device(args.device)
    cfg = load_config(args.config, [f"model.num_classes={NUM_CLASSES}",
                                    f"data.spacing=[{', '.join(map(str, TARGET_SPACING))}]", "data.normalize=window",
                                    f"data.window=[{WINDOW[0]}, {WINDOW[1]}]", "data.orientation=RAS",
                                    f"infer.sw_batch_size={args.sw_batch}", f"train.precision={args.precision}"])
    data_dir = args.data or Path(tempfile.mkdtemp(prefix="predict-stages-"))
    paths, _ = ensure_volumes(data_dir, 1, tuple(args.size), 0)
    predictor = Predictor(build_model(cfg.model).to(device), cfg, device, device_preprocessing=True)
    out = Path(tempfile.mkdtemp(prefix="predict-stages-out-"))
    one_case(predictor, paths[0], out)  # warm-up: cuDNN, thread pools, lazy imports
    runs = [one_case(predictor, paths[0], out) for _ in range(args.repeats)]
    table = Table(title=f"segkit prediction stages, {'x'.join(map(str, args.size))} int16 .nii.gz, {args.config}, "
                        f"{args.sw_batch} windows/pass, {args.precision}, {device_name(device)}")
    for column in ("stage", "median s", "min s"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    result = {}
    for stage in runs[0]:
        values = [run[stage] for run in runs]
        result[stage] = {"median": statistics.median(values), "min": min(values)}
        table.add_row(stage, f"{result[stage]['median']:.3f}", f"{result[stage]['min']:.3f}")
    total = [sum(run.values()) for run in runs]
    table.add_row("total (serial)", f"{statistics.median(total):.3f}", f"{min(total):.3f}")
    Console(width=120).print(table)
    print(" ".join(["python", *sys.argv]))
    if args.json:
        args.json.write_text(json.dumps({"device": device_name(device), "stages": result}, indent=1))


if __name__ == "__main__":
    main()
