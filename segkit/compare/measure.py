"""Per-run measurements on the held-out volumes with the product predictor: forward-pass seconds, peak
memory, the checkerboard index of the logits, and one slice of logits for the report's artefact panel.

Each volume is read and preprocessed exactly as ``segkit predict`` does (``Predictor.load`` and
``finish_preprocessing``); the timed part is ``Predictor.logits``: the sliding window over the whole
preprocessed volume on the device, i.e. the part that depends on the network. The first volume is run once
untimed before (cuDNN autotuning and first allocations would otherwise be charged to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from segkit.compare.checkerboard import checkerboard_index
from segkit.compare.memory import Probe
from segkit.compare.slices import Centre, display_plane, index_on_grid, network_axes, slice_axis
from segkit.data.cases import Case
from segkit.engine.checkpoint import load_checkpoint, load_weights
from segkit.inference.predictor import Predictor
from segkit.io.atomic import atomic_path
from segkit.models import build_model

PANEL = "panel.npz"


@dataclass(frozen=True)
class CaseMeasurement:
    """One held-out volume."""

    case_id: str
    seconds: float
    peak_mib: float
    checkerboard: float


@dataclass(frozen=True)
class PanelSlice:
    """Logits ``(K, rows, cols)`` of one slice of the panel case on the network's grid: slice ``index`` across the
    grid's ``axis``, turned into the preview's display order when ``view`` names it (``"axial"``, …); ``view`` is
    None for a 2D image, a grid whose axes cannot be told apart, and panels saved before segkit turned them."""

    case_id: str
    logits: np.ndarray
    axis: int | None  # None: a 2D image, the whole map
    index: int | None
    view: str | None = None


def load_predictor(checkpoint: Path, device: torch.device) -> Predictor:
    """The product predictor for a checkpoint (or run directory), as ``segkit predict`` builds it."""
    ckpt = load_checkpoint(checkpoint)
    model = build_model(ckpt.config.model, initialise=False)
    load_weights(model, ckpt)
    return Predictor(model, ckpt.config, device)


def cut_panel(logits: torch.Tensor, image: torch.Tensor, case_id: str, centre: Centre,
              predictor: Predictor) -> PanelSlice:
    """The slice of ``logits`` through the reference foreground's centre (all of a 2D map)."""
    axis = slice_axis(predictor.cfg)
    if axis is None or logits.ndim != 4:
        return PanelSlice(case_id, logits.float().cpu().numpy(), None, None)
    affine = torch.as_tensor(image.affine).detach().cpu().double().numpy()  # may live on the GPU
    index = index_on_grid(centre.world, affine, axis, logits.shape[axis + 1])
    plane = logits.narrow(axis + 1, index, 1).float().cpu().numpy()
    shown, view = display_plane(plane, affine, axis, 0)
    return PanelSlice(case_id, shown, axis, index, view)


def measure_cases(predictor: Predictor, cases: list[Case], panel: tuple[Case, Centre] | None = None
                  ) -> tuple[list[CaseMeasurement], str, PanelSlice | None]:
    """Time, peak memory and checkerboard index of every case; the probe's memory method; the panel slice."""
    axes, out, cut = network_axes(predictor.cfg), [], None
    method = ""
    for i, case in enumerate(cases):
        image = predictor.finish_preprocessing(predictor.load(case.images))
        if i == 0:
            predictor.logits(image)
        with Probe(predictor.device) as probe:
            logits = predictor.logits(image)
        method = probe.method
        out.append(CaseMeasurement(case.case_id, probe.seconds, probe.peak_mib, checkerboard_index(logits, axes)))
        if panel is not None and panel[0].case_id == case.case_id:
            cut = cut_panel(logits, image, case.case_id, panel[1], predictor)
        del logits, image
    return out, method, cut


def save_panel(path: Path, panel: PanelSlice) -> None:
    """The panel slice as ``.npz`` (float16 logits, case id, axis and index: -1 for none, view: "" for none),
    written atomically."""
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.savez_compressed(handle, logits=panel.logits.astype(np.float16), case_id=np.array(panel.case_id),
                            axis=np.array(-1 if panel.axis is None else panel.axis),
                            index=np.array(-1 if panel.index is None else panel.index),
                            view=np.array(panel.view or ""))


def load_panel(path: Path) -> PanelSlice | None:
    """A saved panel slice, or None when the file is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            axis, index = int(data["axis"]), int(data["index"])
            view = str(data["view"]) if "view" in data.files else ""  # panels saved before they were turned
            return PanelSlice(str(data["case_id"]), data["logits"].astype(np.float32),
                              None if axis < 0 else axis, None if index < 0 else index, view or None)
    except (OSError, ValueError, KeyError):
        return None
