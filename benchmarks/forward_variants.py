"""Forward time of one sliding-window pass (UNet-ResNet34 3D, 3 classes) under layout and norm variants.

    python benchmarks/forward_variants.py                   # CUDA: 8 windows of 128³, bf16
    python benchmarks/forward_variants.py --device cpu --batch 1 --roi 64 64 64 --precision fp32

What decides ``infer.memory_format`` and how a pass runs at inference. Variants: batch and instance norm, each
contiguous and channels-last; for instance norm also channels-last with a layout-keeping norm in PyTorch ops
(``layout_norm.py`` here; slower, not in the product) and with segkit's Triton instance norm; on CUDA, the pass
replayed as a CUDA graph, with and without the space-to-depth stem (the last is what ``segkit predict`` runs);
with --compile, torch.compile of the instance-norm model. cuDNN autotuning is on (as in segkit's prediction).
Each variant: 3 warm-up passes, then the median of --repeats timed passes (device synchronised); the table shows
each output's largest difference from the contiguous model's, relative to its largest value. --profile N also
prints each variant's kernels by kind (``profiling.py``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from layout_norm import with_layout_keeping_instance_norm
from machine import device_name
from rich.console import Console
from rich.table import Table

from segkit.config import load_config
from segkit.inference.cuda_graph import GraphedForward
from segkit.models import build_model
from segkit.models.fast_instance_norm import use_channels_last_instance_norm
from segkit.models.space_to_depth import use_space_to_depth_stems
from segkit.runtime import ChannelsLastInput, autocast, autocast_dtype, triton_kernels_usable


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--roi", type=int, nargs=3, default=(128, 128, 128))
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--profile", type=int, default=0, metavar="PASSES",
                        help="CUDA: also profile this many passes per variant and print where the time goes")
    return parser.parse_args()


def _time(model: torch.nn.Module, x: torch.Tensor, amp: torch.dtype | None, repeats: int
          ) -> tuple[float, torch.Tensor, float]:
    """Median seconds per pass, the output, and the seconds the 3 warm-up passes took together."""
    device = x.device
    times = []
    with torch.inference_mode(), autocast(device, amp):
        for _ in range(3 + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            out = model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times[3:]), out.float(), sum(times[:3])


def main() -> None:
    args = _parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    amp = autocast_dtype(device, args.precision)
    x = torch.randn(args.batch, 1, *args.roi, device=device)
    rows = []
    for norm in ("instance", "batch"):
        cfg = load_config("unet_resnet34.yaml", ["model.num_classes=3", f"model.norm={norm}"])
        torch.manual_seed(0)
        base = build_model(cfg.model).to(device).eval()
        variants = {"contiguous": base, "channels-last": ChannelsLastInput(_copy(base, cfg), 3)}
        if norm == "instance":
            variants["channels-last, layout-keeping norm"] = ChannelsLastInput(
                with_layout_keeping_instance_norm(_copy(base, cfg)), 3)
            if triton_kernels_usable(device):
                variants["channels-last, Triton instance norm"] = ChannelsLastInput(
                    use_channels_last_instance_norm(_copy(base, cfg)), 3)
            if args.compile:
                variants["compiled (contiguous)"] = torch.compile(_copy(base, cfg))
                variants["compiled (channels-last)"] = ChannelsLastInput(torch.compile(_copy(base, cfg)), 3)
        if device.type == "cuda":
            variants.update(_graphed_variants(base, cfg, norm))
        reference = None
        for name, model in variants.items():
            seconds, out, setup = _time(model, x, amp, args.repeats)
            reference = out if reference is None else reference
            error = float((out - reference).abs().max() / reference.abs().max())
            rows.append((norm, name, seconds, error, setup))
            if args.profile and device.type == "cuda":
                _profile(model, x, amp, args.profile, f"{norm} norm, {name}")
    table = Table(title=f"forward {args.batch}x1x{'x'.join(map(str, args.roi))}, {args.precision}, "
                        f"{device_name(device)}")
    for column in ("norm", "variant", "median s", "rel. max diff", "warm-up s"):
        table.add_column(column)
    for norm, name, seconds, error, setup in rows:
        table.add_row(norm, name, f"{seconds:.4f}", f"{error:.1e}", f"{setup:.1f}")
    Console(width=120).print(table)


def _graphed_variants(base: torch.nn.Module, cfg, norm: str) -> dict[str, torch.nn.Module]:
    """What segkit's predictor runs on a GPU (channels-last, Triton instance norm, space-to-depth stem,
    CUDA graph), and the same without the space-to-depth stem."""
    def prepared(pad: bool) -> torch.nn.Module:
        model = _copy(base, cfg)
        if norm == "instance":
            use_channels_last_instance_norm(model)
        if pad:
            use_space_to_depth_stems(model)
        return GraphedForward(ChannelsLastInput(model, 3))

    return {"channels-last, CUDA graph": prepared(False),
            "channels-last, space-to-depth stem, CUDA graph (segkit predict)": prepared(True)}


def _profile(model: torch.nn.Module, x: torch.Tensor, amp: torch.dtype | None, passes: int, title: str) -> None:
    from profiling import kernel_report

    with torch.inference_mode(), autocast(x.device, amp):
        kernel_report(lambda: model(x), passes, title)


def _copy(model: torch.nn.Module, cfg) -> torch.nn.Module:
    clone = build_model(cfg.model, initialise=False).to(next(model.parameters()).device).eval()
    clone.load_state_dict(model.state_dict())
    return clone


if __name__ == "__main__":
    main()
