"""Seconds per training step: segkit's 3D UNet-ResNet34 against MONAI's FlexibleUNet (resnet34), same input.

    python benchmarks/train_step.py
    python benchmarks/train_step.py --device cuda --size 128 128 128 --batch 2 --compile

One step is zero_grad, forward under autocast, loss, backward (scaled for fp16) and the optimiser step, on a
random image (B, 1, D, H, W) and labels in {0, 1, 2} made once on the device: data loading is not measured.
segkit's side is the product code: the model from configs/unet_resnet34.yaml (3 classes, --norm if given),
its Dice+CE loss, fused AdamW, LR schedule, gradient scaler and ``run_step``. MONAI's side is FlexibleUNet
(resnet34 encoder, its default norms) with DiceCELoss and the same AdamW settings in a plain MONAI-style loop.
Both use the same autocast dtype, memory format and compile flag. After warm-up the two models' steps
alternate (segkit, MONAI, ...), so drift hits both alike; on CUDA each step is synchronised and its peak
memory recorded. Prints a table (median, min, max; ratio MONAI/segkit of the medians, > 1 means segkit is
faster) and, with --json, writes the same numbers with versions, device, date and the command line.

The config's norm is instance; FlexibleUNet's encoder always uses batch norm, so --norm batch compares like
with like. Instance norm also cannot train on 32³ (one voxel left after the stride-32 encoder): use 32 32 64.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import monai
import torch
from machine import device_name
from monai.losses import DiceCELoss
from monai.networks.nets import FlexibleUNet
from rich.console import Console
from rich.table import Table
from segkit.pipelines.train import build_optimisation

from segkit.config import Config, load_config
from segkit.engine.step import run_step
from segkit.models import build_model
from segkit.runtime import autocast_dtype, channels_last_format, resolve_device, use_channels_last

NUM_CLASSES = 3
GIB = 2**30


@dataclass
class Side:
    """One contender: its plain model and optimiser (for parameter and memory counts) and a step to time."""

    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step: Callable[[], float]
    seconds: list[float] = field(default_factory=list)
    peak_bytes: list[int] = field(default_factory=list)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, nargs=3, metavar=("D", "H", "W"), help="64³ on CPU, 128³ on CUDA")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"), default="auto")
    parser.add_argument("--memory-format", choices=("auto", "channels_last", "contiguous"), default="auto")
    parser.add_argument("--compile", nargs="?", const="default", choices=("default", "reduce-overhead", "max-autotune"),
                        help="torch.compile both models (mode: default, or reduce-overhead for CUDA graphs)")
    parser.add_argument("--warmup", type=int, help="untimed steps per model (3 on CPU, 10 on CUDA)")
    parser.add_argument("--repeats", type=int, help="timed steps per model (5 on CPU, 50 on CUDA)")
    parser.add_argument("--norm", choices=("batch", "instance", "group"), help="segkit's model.norm (config's)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="CUDA: afterwards, profile this many steps per side and print where the time goes")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    args.size = tuple(args.size or ((128,) * 3 if cuda else (64,) * 3))
    args.warmup = args.warmup if args.warmup is not None else (10 if cuda else 3)
    args.repeats = args.repeats if args.repeats is not None else (50 if cuda else 5)
    return args


def _config(args: argparse.Namespace) -> Config:
    overrides = [f"model.num_classes={NUM_CLASSES}", "model.in_channels=1", f"train.batch_size={args.batch}",
                 f"train.patch_size=[{', '.join(map(str, args.size))}]", f"train.device={args.device}",
                 f"train.precision={args.precision}", f"train.memory_format={args.memory_format}",
                 f"train.compile={_compile_setting(args.compile)}"]
    if args.norm:
        overrides.append(f"model.norm={args.norm}")
    return load_config("unet_resnet34.yaml", overrides)


def _compile_setting(mode: str | None) -> str:
    return "false" if mode is None else "true" if mode == "default" else mode


def _segkit_side(cfg: Config, device: torch.device, image: torch.Tensor, label: torch.Tensor) -> Side:
    """segkit's model, loss, optimiser, schedule and scaler, assembled by the train pipeline's own builder."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model)
    _check_size(cfg, model.size_divisor)
    opt = build_optimisation(cfg, model, device)
    batches = [{"image": image, "label": label}]
    return Side("segkit", opt.module, opt.optimizer, lambda: run_step(opt, batches))


def _check_size(cfg: Config, divisor: tuple[int, ...]) -> None:
    """Instance norm needs more than one voxel at the bottom of the UNet (input / total stride, rounded up)."""
    size = cfg.train.patch_size
    if cfg.model.norm == "instance" and math.prod(-(-s // d) for s, d in zip(size, divisor, strict=True)) < 2:
        sys.exit(f"--size {' '.join(map(str, size))}: the encoder's total stride is {'x'.join(map(str, divisor))}, "
                 "leaving one voxel at the bottom, where instance norm cannot train; use a larger size "
                 "(e.g. 32 32 64) or --norm batch")


def _adamw(model: torch.nn.Module, cfg: Config, device: torch.device) -> torch.optim.AdamW:
    """AdamW with segkit's settings, fused on CUDA and on CPU where this torch build supports it."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                                 fused=True)
    except RuntimeError:
        if device.type == "cuda":
            raise
        return torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)


def _monai_side(cfg: Config, device: torch.device, image: torch.Tensor, label: torch.Tensor) -> Side:
    """FlexibleUNet + DiceCELoss in a standard MONAI training loop, with segkit's dtype/format/compile choices."""
    channels_last = use_channels_last(device, cfg.train.memory_format, cfg.model.norm)
    memory_format = channels_last_format(3) if channels_last else torch.contiguous_format
    torch.manual_seed(cfg.seed)
    model = FlexibleUNet(in_channels=1, out_channels=NUM_CLASSES, backbone="resnet34", pretrained=False,
                         spatial_dims=3).to(device, memory_format=memory_format)
    mode = None if cfg.train.compile in (True, False) else cfg.train.compile
    forward = torch.compile(model, mode=mode) if cfg.train.compile else model
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = _adamw(model, cfg, device)
    amp_dtype = autocast_dtype(device, cfg.train.precision)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        inputs = image.contiguous(memory_format=memory_format)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = loss_fn(forward(inputs), label)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        return loss.item()

    return Side("MONAI", model, optimizer, step)


def _resident_bytes(side: Side) -> int:
    """Bytes held between steps: parameters, gradients and optimiser state."""
    tensors = [t for p in side.model.parameters() for t in (p, p.grad) if t is not None]
    tensors += [t for state in side.optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
    return sum(t.numel() * t.element_size() for t in tensors)


def _timed_step(side: Side, other: Side, device: torch.device) -> None:
    """Time one step; on CUDA also its peak memory less what the other model keeps resident meanwhile."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    side.step()
    if cuda:
        torch.cuda.synchronize(device)
    side.seconds.append(time.perf_counter() - started)
    if cuda:
        side.peak_bytes.append(torch.cuda.max_memory_allocated(device) - _resident_bytes(other))


def _run(sides: list[Side], device: torch.device, warmup: int, repeats: int) -> None:
    """Warm each model up (compilation, cuDNN autotuning, optimiser state), then alternate timed steps."""
    for side in sides:
        for _ in range(warmup):
            side.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    for _ in range(repeats):
        for side, other in (sides, sides[::-1]):
            _timed_step(side, other, device)


def _summary(side: Side) -> dict:
    params = list(side.model.parameters())
    result = {"median_s": statistics.median(side.seconds), "min_s": min(side.seconds), "max_s": max(side.seconds),
              "steps_s": side.seconds, "parameters": sum(p.numel() for p in params),
              "trainable_parameters": sum(p.numel() for p in params if p.requires_grad)}
    if side.peak_bytes:
        result["peak_memory_gib"] = max(side.peak_bytes) / GIB
    return result


def _setup(cfg: Config, args: argparse.Namespace, device: torch.device) -> dict:
    """What both sides ran with, as resolved by segkit's runtime helpers."""
    dtype = autocast_dtype(device, cfg.train.precision)
    return {"input": [args.batch, 1, *args.size], "classes": NUM_CLASSES,
            "precision": str(dtype).removeprefix("torch.") if dtype is not None else "fp32",
            "channels_last": use_channels_last(device, cfg.train.memory_format, cfg.model.norm),
            "compile": cfg.train.compile, "segkit_norm": cfg.model.norm,
            "monai_norm": "batch (FlexibleUNet default: encoder and decoder)",
            "warmup": args.warmup, "repeats": args.repeats, "data_loading": "excluded (tensors made once on device)"}


def _environment(device: torch.device) -> dict:
    return {"torch": torch.__version__, "monai": monai.__version__, "python": platform.python_version(),
            "device": device_name(device), "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": shlex.join(sys.orig_argv)}


def _compiled(setting: bool | str) -> str:
    return "" if setting is False else ", compiled" if setting is True else f", compiled ({setting})"


def _table(results: dict) -> Table:
    setup, segkit, other = results["setup"], results["segkit"], results["monai"]
    title = (f"Training step, input {'x'.join(map(str, setup['input']))}, {setup['precision']}, "
             f"{'channels-last' if setup['channels_last'] else 'contiguous'}"
             f"{_compiled(setup['compile'])}, {results['environment']['device']}")
    table = Table(title=title, caption="data loading excluded; ratio = MONAI / segkit (> 1: segkit faster)")
    for column in ("model", "median s", "min s", "max s", "parameters", "peak GiB"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, r in (("segkit UNet-ResNet34", segkit), ("MONAI FlexibleUNet", other)):
        peak = f"{r['peak_memory_gib']:.2f}" if "peak_memory_gib" in r else "-"
        table.add_row(name, f"{r['median_s']:.4f}", f"{r['min_s']:.4f}", f"{r['max_s']:.4f}",
                      f"{r['parameters'] / 1e6:.1f}M", peak)
    peak = results["ratios"].get("peak_memory")
    table.add_row("ratio", f"{results['ratios']['median_s']:.2f}", "", "",
                  f"{other['parameters'] / segkit['parameters']:.2f}", f"{peak:.2f}" if peak else "-",
                  style="bold")
    return table


def main() -> None:
    args = _parse_args()
    device = resolve_device(args.device)
    cfg = _config(args)
    generator = torch.Generator().manual_seed(cfg.seed)
    image = torch.randn((args.batch, 1, *args.size), generator=generator).to(device)
    label = torch.randint(0, NUM_CLASSES, (args.batch, 1, *args.size), generator=generator).to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as segkit's training does (fixed patch size)
    sides = [_segkit_side(cfg, device, image, label), _monai_side(cfg, device, image, label)]
    _run(sides, device, args.warmup, args.repeats)
    segkit, other = (_summary(side) for side in sides)
    ratios = {"median_s": other["median_s"] / segkit["median_s"]}
    if "peak_memory_gib" in segkit:
        ratios["peak_memory"] = other["peak_memory_gib"] / segkit["peak_memory_gib"]
    results = {"setup": _setup(cfg, args, device), "environment": _environment(device), "segkit": segkit,
               "monai": other, "ratios": ratios}
    Console().print(_table(results))
    print(f"{results['environment']['command']}  |  torch {torch.__version__}, MONAI {monai.__version__}, "
          f"{results['environment']['date']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.profile and device.type == "cuda":
        from profiling import kernel_report

        for side in sides:
            kernel_report(side.step, args.profile, f"{side.name} training step")


if __name__ == "__main__":
    main()
