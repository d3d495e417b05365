"""Export pipeline: checkpoint → model → ONNX file with dynamic batch and spatial axes, checked in onnxruntime."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from segkit.config import Config
from segkit.engine.checkpoint import load_checkpoint, load_weights
from segkit.errors import SegkitError
from segkit.inference.export import (
    DEFAULT_OPSET,
    INPUT_NAME,
    OUTPUT_NAME,
    TOLERANCE,
    ExportResult,
    ExportSettings,
    axis_names,
    export_onnx,
)
from segkit.io.atomic import prove_writable
from segkit.models import build_model

FORMATS = ("onnx",)


@dataclass(frozen=True)
class ExportOptions:
    """Command-line choices for ``segkit export``."""

    format: str = "onnx"
    opset: int = DEFAULT_OPSET
    overwrite: bool = False
    exporter: str = "legacy"  # or dynamo (torch.export): 5-8× slower here; each is the other's fallback
    quiet: bool = True  # hide the exporters' warnings and log lines (the CLI's --debug shows them)


def _nearest_existing(folder: Path) -> Path:
    """``folder`` or the nearest of its parents that exists (a dangling link counts: it is in the way)."""
    return next((p for p in (folder, *folder.parents) if p.exists() or p.is_symlink()), Path("."))


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse a directory, an existing file without ``overwrite``, a path through a file (``file/m.onnx``) and a
    folder this process may not write in, before anything is loaded."""
    if out.is_dir():
        raise SegkitError(f"--out {out} is a directory; give a file name such as {out / 'model.onnx'}")
    folder = _nearest_existing(out.parent)
    if not folder.is_dir():
        kind = "a file" if folder.is_file() else "not a folder"
        raise SegkitError(f"--out {out}: {folder} is {kind}, so no file can be made below it; choose another path, "
                          f"e.g. {folder.parent / out.name}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SegkitError(f"--out {out}: no permission to write in {folder}; choose a folder you can write to")
    if out.exists() and not overwrite:
        raise SegkitError(f"{out} exists; add --overwrite to replace it")


def prepare_folder(out: Path) -> None:
    """Create ``out``'s folder and make sure a file can be created there, before the export spends its time."""
    try:
        prove_writable(out.parent)
    except OSError as exc:
        raise SegkitError(f"--out {out}: cannot write in {out.parent} ({exc.strerror or exc}); choose a folder you "
                          "can write to") from None


def _check_onnx(opset: int) -> None:
    """The onnx package is installed and knows ``opset``."""
    try:
        import onnx.defs
    except ImportError:
        raise SegkitError("segkit export needs the onnx package: pip install onnx onnxscript onnxruntime "
                          "(all three come with segkit[dev])") from None
    newest = onnx.defs.onnx_opset_version()
    if not 7 <= opset <= newest:
        raise SegkitError(f"--opset {opset}: choose an opset from 7 to {newest} (the newest the installed onnx knows)")


def _shape(names: list[str]) -> str:
    return f"({', '.join(names)})"


def report_lines(result: ExportResult, cfg: Config) -> list[str]:
    """What the CLI prints after an export: the check against torch, the file, its axes and metadata."""
    model, lines = cfg.model, []
    if result.fallback_reason:
        lines.append(f"{result.fallback_reason}; exported with the {result.exporter} exporter instead")
    if result.parity is None:
        lines.append("onnxruntime is not installed: the export was not checked against torch "
                     "(pip install onnxruntime to check it)")
    else:
        checks = ", ".join(f"{p.max_abs_diff:.2e} at {'×'.join(map(str, p.shape))}" for p in result.parity)
        lines.append(f"onnxruntime vs torch, max abs difference of the logits: {checks} (limit {TOLERANCE:g})")
    spatial = list(axis_names(model.spatial_dims).values())[1:]
    size_mb = result.path.stat().st_size / 1e6
    lines.append(f"wrote {result.path} ({size_mb:.1f} MB, {result.exporter} exporter, opset {result.opset}, "
                 f"{result.seconds:.1f} s): {INPUT_NAME} {_shape(['batch', str(model.in_channels), *spatial])} → "
                 f"{OUTPUT_NAME} {_shape(['batch', str(model.num_classes), *spatial])}")
    divisor = result.metadata["size_divisor"].strip("[]").replace(", ", "×")
    lines.append(f"any batch and spatial size: padded inside the graph to a multiple of {divisor} and cropped back; "
                 f"metadata: {', '.join(result.metadata)}")
    return lines


def run_export(checkpoint: Path, out: Path, options: ExportOptions | None = None,
               console: Console | None = None) -> ExportResult:
    """Export a checkpoint's model (eval mode, CPU, fp32) to ``out``; refuses an existing file unless
    ``options.overwrite``, creates missing parent folders and never leaves a partial file under ``out``."""
    options, console, out = options or ExportOptions(), console or Console(), Path(out)
    if options.format not in FORMATS:
        raise SegkitError(f"format '{options.format}': segkit exports {', '.join(FORMATS)}")
    check_target(out, options.overwrite)
    _check_onnx(options.opset)
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt.config
    model = build_model(cfg.model, initialise=False)  # the checkpoint holds every weight
    load_weights(model, ckpt)
    prepare_folder(out)
    step = ckpt.state.get("global_step")
    console.print(f"exporting {ckpt.path} (step {step}) to {out}: {cfg.model.spatial_dims}D UNet "
                  f"{cfg.model.encoder}, {options.exporter} exporter, opset {options.opset}",
                  highlight=False, soft_wrap=True)
    settings = ExportSettings(options.exporter, options.opset, quiet=options.quiet)
    result = export_onnx(model, cfg, out, settings, step, ckpt.class_names)
    for line in report_lines(result, cfg):
        console.print(line, highlight=False, soft_wrap=True)
    return result
