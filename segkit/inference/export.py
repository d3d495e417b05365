"""ONNX export of a trained UNet: the eval-mode network including its pad-to-divisor/crop, with a
dynamic batch axis and dynamic spatial axes, segkit metadata (the preprocessing a deployment needs)
and a check against torch in onnxruntime before the file gets its final name.

Input ``image`` (batch, in_channels, *spatial) float32 → output ``logits`` (batch, num_classes, *spatial).
The graph is traced on a small example that is *not* a multiple of the size divisor on any axis, so the
padding branch of ``UNet.forward`` is part of the graph with its amounts computed from the input shape;
inputs of any size (multiples included) then give the same logits as torch.

Two exporters: ``legacy`` (TorchScript tracing with ``dynamic_axes``; the default: shapes are traced as
tensors, so the pad amounts and the crop follow the input) and ``dynamo`` (``torch.export``, torch's own
default; correct too, but 5-8× slower on this network's symbolic shapes, and it only goes through with
``Dim.AUTO`` because ``if any(padding)`` adds a guard no declared ``Dim`` range can express). When one
fails or its output does not match torch, the other is tried unless ``fallback`` is off — so exports
keep working once torch removes its deprecated TorchScript exporter.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import segkit
from segkit.config import Config, config_to_dict
from segkit.errors import SegkitError
from segkit.io.atomic import atomic_path

INPUT_NAME, OUTPUT_NAME = "image", "logits"
EXPORTERS = ("legacy", "dynamo")
DEFAULT_OPSET = 20  # torch's default; the highest the legacy exporter writes
TOLERANCE = 1e-3  # max abs logit difference onnxruntime vs torch above which an export is refused


@dataclass(frozen=True)
class ExportSettings:
    """How to export: exporter, ONNX opset, whether a failed export retries with the other exporter,
    and whether the exporters' own warnings and log lines are hidden."""

    exporter: str = "legacy"
    opset: int = DEFAULT_OPSET
    fallback: bool = True
    quiet: bool = True


@dataclass(frozen=True)
class Parity:
    """onnxruntime against torch on one random input."""

    shape: tuple[int, ...]
    max_abs_diff: float


@dataclass(frozen=True)
class ExportResult:
    """A written ONNX file, how it was made and how closely it matches torch (None: not checked,
    onnxruntime is not installed)."""

    path: Path
    exporter: str
    opset: int
    parity: tuple[Parity, ...] | None
    seconds: float
    metadata: dict[str, str]
    fallback_reason: str = ""


class _ExportFailed(Exception):
    """One exporter did not give a usable model (raised, or its output differs from torch)."""


def example_size(divisor: tuple[int, ...]) -> tuple[int, ...]:
    """A small spatial size that is not a multiple of ``divisor`` on any axis (> 1), so tracing keeps the
    padding; 1.5 × the divisor leaves the deepest features 2 voxels wide (instance norm needs > 1)."""
    return tuple(d + d // 2 if d > 1 else 3 for d in divisor)


def axis_names(spatial_dims: int) -> dict[int, str]:
    """Names of the dynamic axes of ``image`` and ``logits``."""
    return {0: "batch", **{2 + i: f"spatial_{i}" for i in range(spatial_dims)}}


def onnx_metadata(cfg: Config, divisor: tuple[int, ...], exporter: str, step: Any = None,
                  class_names: list[str] | None = None) -> dict[str, str]:
    """``metadata_props`` of the exported model: shapes, the divisor, the roi, the class names (JSON, ``null`` when
    the dataset declared none) and the whole config."""
    model = cfg.model
    return {
        "segkit_version": segkit.__version__,
        "segkit_config": json.dumps(config_to_dict(cfg), sort_keys=True),
        "spatial_dims": str(model.spatial_dims),
        "in_channels": str(model.in_channels),
        "num_classes": str(model.num_classes),
        "class_names": json.dumps(class_names),
        "size_divisor": json.dumps(list(divisor)),
        "roi_size": json.dumps(list(cfg.roi_size)),
        "spatial_sizes": "any: padded inside the graph to a multiple of size_divisor, logits cropped back",
        "input": f"{INPUT_NAME}: float32 (batch, in_channels, *spatial), preprocessed as segkit_config.data says",
        "output": f"{OUTPUT_NAME}: float32 (batch, num_classes, *spatial); softmax over axis 1, argmax = labels",
        "checkpoint_step": json.dumps(step),
        "exporter": exporter,
    }


@contextlib.contextmanager
def _output_to_devnull() -> Iterator[None]:
    """Point file descriptors 1 and 2 at /dev/null, for what C++ writes past Python (the TorchScript
    exporter's log dumps the whole graph to stdout when it fails)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        with open(os.devnull, "w") as devnull:
            for fd in saved:
                os.dup2(devnull.fileno(), fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


@contextlib.contextmanager
def quiet_exporter(enabled: bool = True) -> Iterator[None]:
    """Hide the exporters' warnings (torchvision missing, deprecations, tracer notes), log lines and prints."""
    if not enabled:
        yield
        return
    previous = logging.root.manager.disable
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _output_to_devnull():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(previous)


def _export_dynamo(model: nn.Module, example: torch.Tensor, opset: int) -> Any:
    auto = torch.export.Dim.AUTO  # named Dims fail: the padding branch adds a guard no Dim range can express
    shapes = ({axis: auto for axis in axis_names(example.dim() - 2)},)
    program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                                output_names=[OUTPUT_NAME], dynamic_shapes=shapes, verbose=False)
    return program.model_proto


def _export_legacy(model: nn.Module, example: torch.Tensor, opset: int) -> Any:
    import onnx

    axes = axis_names(example.dim() - 2)
    buffer = io.BytesIO()
    torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                      output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes}, verbose=False)
    return onnx.load_from_string(buffer.getvalue())


def _dims(value: Any) -> Any:
    return value.type.tensor_type.shape.dim


def name_axes(proto: Any, spatial_dims: int) -> None:
    """Give the symbolic axes readable names everywhere (``batch``, ``spatial_0``, ...) and the output
    the input's axis names (the dynamo exporter writes expressions such as ``Min(s53, 32*(...))``)."""
    names = axis_names(spatial_dims)
    graph = proto.graph
    image = next(v for v in graph.input if v.name == INPUT_NAME)
    rename = {d.dim_param: names[i] for i, d in enumerate(_dims(image)) if i in names and d.dim_param}
    if rename:
        pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in rename) + r")\b")
        for value in (*graph.input, *graph.output, *graph.value_info):
            for dim in _dims(value):
                if dim.dim_param:
                    dim.dim_param = pattern.sub(lambda m: rename[m[1]], dim.dim_param)
    for value in (image, next(v for v in graph.output if v.name == OUTPUT_NAME)):
        for i, dim in enumerate(_dims(value)):
            if i in names:
                dim.dim_param = names[i]


def set_metadata(proto: Any, metadata: dict[str, str]) -> None:
    """Replace the model's ``metadata_props`` with ``metadata``."""
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def check_parity(path: Path, model: nn.Module, shapes: list[tuple[int, ...]]) -> tuple[Parity, ...] | None:
    """Run the ONNX file in onnxruntime (CPU) and the model in torch on the same random inputs; None
    when onnxruntime is not installed. A wrong output shape counts as an infinite difference."""
    try:
        import onnxruntime
    except ImportError:
        return None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    results = []
    for shape in shapes:
        image = torch.randn(shape, generator=generator)
        with torch.inference_mode():
            expected = model(image).numpy()
        actual = session.run([OUTPUT_NAME], {INPUT_NAME: image.numpy()})[0]
        diff = float(np.abs(actual - expected).max()) if actual.shape == expected.shape else float("inf")
        results.append(Parity(tuple(shape), diff))
    return tuple(results)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _write_checked(model: nn.Module, cfg: Config, out: Path, exporter: str, settings: ExportSettings,
                   metadata: dict[str, str]) -> tuple[Parity, ...] | None:
    """Export with one exporter to a temp file, check it against torch, then move it to ``out``."""
    import onnx

    divisor = tuple(model.size_divisor)
    example = torch.randn(2, cfg.model.in_channels, *example_size(divisor))
    convert = _export_dynamo if exporter == "dynamo" else _export_legacy
    with atomic_path(out) as tmp:
        try:
            with quiet_exporter(settings.quiet), torch.no_grad():
                proto = convert(model, example, settings.opset)
        except Exception as exc:  # the exporters raise many types; the reason is reported, not lost
            raise _ExportFailed(_first_line(exc)) from exc
        written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        if written != settings.opset:
            raise _ExportFailed(f"wrote opset {written} instead of {settings.opset}")
        name_axes(proto, cfg.model.spatial_dims)
        set_metadata(proto, metadata)
        onnx.save_model(proto, str(tmp))
        try:
            parity = check_parity(tmp, model, [(1, cfg.model.in_channels, *cfg.roi_size), tuple(example.shape)])
        except Exception as exc:  # onnxruntime refusing the graph is a failed export, too
            raise _ExportFailed(f"the check against torch failed ({_first_line(exc)})") from exc
        worst = max((p.max_abs_diff for p in parity or ()), default=0.0)
        if not worst <= TOLERANCE:
            raise _ExportFailed(f"onnxruntime output differs from torch by {worst:.3g} (max abs; limit {TOLERANCE})")
    return parity


def export_onnx(model: nn.Module, cfg: Config, out: Path, settings: ExportSettings | None = None,
                step: Any = None, class_names: list[str] | None = None) -> ExportResult:
    """Export the eval-mode ``model`` (a segkit UNet on the CPU in fp32) to ``out`` atomically: a failed
    export or a failed check never leaves a file under ``out``. ``step`` and ``class_names`` are recorded in
    the metadata."""
    settings = settings or ExportSettings()
    if settings.exporter not in EXPORTERS:
        raise SegkitError(f"exporter '{settings.exporter}': choose one of {', '.join(EXPORTERS)}")
    model = model.float().cpu().eval()
    order = [settings.exporter] + [e for e in EXPORTERS if e != settings.exporter and settings.fallback]
    failures: list[str] = []
    last: _ExportFailed | None = None
    start = time.perf_counter()
    for exporter in order:
        metadata = onnx_metadata(cfg, tuple(model.size_divisor), exporter, step, class_names)
        try:
            parity = _write_checked(model, cfg, Path(out), exporter, settings, metadata)
        except _ExportFailed as exc:
            failures.append(f"{exporter} exporter: {exc}")
            last = exc
            continue
        except OSError as exc:  # the file system, not the exporter: the other exporter would fail alike
            raise SegkitError(f"{out}: cannot write the ONNX file ({exc.strerror or exc}); choose another --out "
                              "(a folder you can write to, with free space)") from None
        return ExportResult(Path(out), exporter, settings.opset, parity, time.perf_counter() - start, metadata,
                            "; ".join(failures))
    raise SegkitError(f"{out}: ONNX export failed ({'; '.join(failures)}); rerun with --debug for the exporter's "
                      "messages") from last
