"""CPU inference kernels segkit writes itself, each against the library path it replaces (and its test oracle).

    python benchmarks/cpu_inference.py [--repeats 5] [--json out.json]

1. Resampling 3-class logits from the 1.5 mm prediction grid (137×137×199) back to a 256×256×120 input grid:
   ``torch.nn.functional.grid_sample`` (trilinear, border) against segkit's separable path
   (``segkit.inference.resample``; the same weights, one axis at a time).
2. The one-channel 7×7×7 stride-2 stem of UNet-ResNet34 on two 96×96×32 windows in bf16: oneDNN-packed as it is
   against ``PhaseConvolution`` (a stride-1 convolution over the input's 2×2×2 phases, packed the same way).
3. One pass of the demo network (UNet-ResNet34, batch norm, 3 classes) over two 96×96×32 windows: eager fp32 and
   eager under bf16 autocast (what MONAI's ``sliding_window_inference`` runs) against segkit's prepared model
   (``prepare_for_inference``) in fp32 and bf16.
4. The first bf16 pass of a freshly prepared model (packing the weights), with the process's bf16 kernel verdicts
   known against cleared, i.e. with segkit's once-per-process check of every kernel against float32 sums.

Calls alternate between the contenders of each group after one warm-up call each; the table gives the median
and min–max in ms and each contender's speed-up over the group's first row.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from machine import device_name
from rich.console import Console
from rich.table import Table

import segkit.inference.resample as resample
from segkit.config import load_config
from segkit.inference.predictor import prepare_for_inference
from segkit.models import build_model, packed_conv
from segkit.models.packed_conv import pack_convolutions
from segkit.models.space_to_depth import use_phase_convolutions

CPU = torch.device("cpu")
WINDOWS = (2, 1, 96, 96, 32)


def _timed(groups: dict[str, dict[str, Callable[[], object]]], repeats: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per call for every contender, calls alternating within each group."""
    times: dict[str, dict[str, list[float]]] = {}
    with torch.no_grad():
        for group, contenders in groups.items():
            times[group] = {name: [] for name in contenders}
            for call in contenders.values():
                call()
            for _ in range(repeats):
                for name, call in contenders.items():
                    start = time.perf_counter()
                    call()
                    times[group][name].append(time.perf_counter() - start)
    return times


def _resampling() -> dict[str, Callable[[], object]]:
    logits = torch.randn(3, 137, 137, 199, generator=torch.Generator().manual_seed(0))
    src, dst = np.diag([1.5, 1.5, 1.5, 1.0]), np.diag([0.8, 0.8, 2.5, 1.0])
    dst[:3, 3] = [0.3, 0.2, 0.1]

    def grid_sample() -> torch.Tensor:
        axes = resample._axis_for_each_output_axis
        resample._axis_for_each_output_axis = lambda linear, shape: None  # the general path: grid_sample
        try:
            return resample.resample_to_grid(logits, src, dst, (256, 256, 120))
        finally:
            resample._axis_for_each_output_axis = axes

    return {"grid_sample (trilinear)": grid_sample,
            "segkit separable": lambda: resample.resample_to_grid(logits, src, dst, (256, 256, 120))}


def _bf16(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def call() -> object:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return module(x)
    return call


def _stem() -> dict[str, Callable[[], object]]:
    torch.manual_seed(0)
    stem = torch.nn.Sequential(torch.nn.Conv3d(1, 64, 7, stride=2, padding=3, bias=False)).eval()
    x = torch.randn(WINDOWS).contiguous(memory_format=torch.channels_last_3d)
    packed = pack_convolutions(copy.deepcopy(stem), torch.bfloat16)
    phases = pack_convolutions(use_phase_convolutions(copy.deepcopy(stem)), torch.bfloat16)
    return {"packed bf16": _bf16(packed, x), "segkit phases, packed bf16": _bf16(phases, x)}


def _network() -> dict[str, Callable[[], object]]:
    torch.manual_seed(0)
    cfg = load_config("demo_unet_resnet34.yaml", ["model.num_classes=3"])
    model = build_model(cfg.model).eval()
    x = torch.randn(WINDOWS)
    fp32 = prepare_for_inference(copy.deepcopy(model), cfg, CPU, None)
    bf16 = prepare_for_inference(copy.deepcopy(model), cfg, CPU, torch.bfloat16)
    return {"eager fp32": lambda: model(x), "eager bf16 autocast (MONAI's path)": _bf16(model, x),
            "segkit fp32 (folded, packed, channels-last)": lambda: fp32(x),
            "segkit bf16 (packed, phase stem, channels-last)": _bf16(bf16, x)}


def _first_pass() -> dict[str, Callable[[], object]]:
    torch.manual_seed(0)
    cfg = load_config("demo_unet_resnet34.yaml", ["model.num_classes=3"])
    model = build_model(cfg.model).eval()
    x = torch.randn(WINDOWS)

    def first(clear: bool) -> Callable[[], object]:
        def call() -> object:
            prepared = prepare_for_inference(copy.deepcopy(model), cfg, CPU, torch.bfloat16)
            if clear:
                packed_conv._KERNEL_VERDICTS.clear()
            return _bf16(prepared, x)()
        return call

    return {"verdicts known": first(clear=False), "verdicts checked now": first(clear=True)}


def _table(times: dict[str, dict[str, list[float]]]) -> Table:
    table = Table(title=f"CPU inference kernels, {device_name(CPU)}, torch {torch.__version__}")
    for column in ("group", "contender", "median ms", "min–max ms", "speed-up"):
        table.add_column(column, justify="left" if column in ("group", "contender") else "right")
    for group, contenders in times.items():
        baseline = statistics.median(next(iter(contenders.values())))
        for name, seconds in contenders.items():
            median = statistics.median(seconds)
            table.add_row(group, name, f"{median * 1e3:.1f}", f"{min(seconds) * 1e3:.1f}–{max(seconds) * 1e3:.1f}",
                          f"{baseline / median:.2f}×")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    groups = {"resample back": _resampling(), "stem": _stem(), "network pass": _network(),
              "first bf16 pass": _first_pass()}
    times = _timed(groups, args.repeats)
    console = Console(width=140)
    console.print(_table(times))
    if args.json:
        results = {"times_s": times, "device": device_name(CPU), "torch": torch.__version__,
                   "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                   "command": shlex.join(sys.orig_argv)}
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
