"""Predict label maps for image files, on each input's exact voxel grid.

Three stages, so that a pipeline can overlap them: :meth:`CaseLoader.load` (host, thread-safe: read and
preprocess like training; ``segkit.inference.case_loader``), :meth:`Predictor.infer` (device: sliding window,
optional mirroring TTA, logits resampled back to the input grid, softmax/argmax; only the label map — and, if
asked, float16 probabilities — cross to the host) and writing (see ``pipelines/predict``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.utils import ImageMetaKey

from segkit.config import Config
from segkit.errors import DataError
from segkit.inference.case_loader import CaseLoader
from segkit.inference.cuda_graph import GraphedForward
from segkit.inference.memory import case_too_large, is_out_of_memory
from segkit.inference.resample import resample_to_grid
from segkit.inference.slicewise import as_volume_model
from segkit.inference.sliding_window import WindowSettings, auto_sw_batch, logits_with_fallbacks
from segkit.inference.tta import mirrored_logits
from segkit.models.fast_instance_norm import use_channels_last_instance_norm
from segkit.models.fold_norm import fold_batch_norm
from segkit.models.packed_conv import pack_convolutions
from segkit.models.space_to_depth import use_phase_convolutions, use_space_to_depth_stems
from segkit.runtime import (
    ChannelsLastInput,
    autocast,
    autocast_dtype,
    class_indices,
    triton_kernels_usable,
    use_channels_last_inference,
)


@dataclass(frozen=True)
class Prediction:
    """One case's result on its input grid (voxel order as nibabel reads the first channel file)."""

    labels: np.ndarray  # uint8 (model.num_classes is at most 256); F-ordered (as NIfTI stores it)
    voxel_counts: np.ndarray  # voxels per class (int64, length num_classes), counted on the device
    probabilities: np.ndarray | None = None  # float16 (K, *spatial) when asked for


class Predictor:
    """Preprocess like training, run the sliding window, resample logits back, argmax.

    The predictor owns ``model`` and prepares it for inference in place (:func:`prepare_for_inference`); on a
    GPU each window batch's forward pass is then replayed from a CUDA graph (``infer.cuda_graphs``).
    """

    def __init__(self, model: torch.nn.Module, cfg: Config, device: torch.device, tta: bool = False,
                 probabilities: bool = False, device_preprocessing: bool | None = None,
                 loader: CaseLoader | None = None) -> None:
        self.amp_dtype = autocast_dtype(device, cfg.train.precision)
        model = prepare_for_inference(model, cfg, device, self.amp_dtype)
        self.model = as_volume_model(model, cfg).eval()
        self.cfg, self.device, self.tta, self.probabilities = cfg, device, tta, probabilities
        # on a GPU, resampling and normalisation run there (host threads only read and reorient);
        # on the CPU all of it stays in the reader threads, where it overlaps with the network
        self.loader = loader or CaseLoader(cfg, device, device_preprocessing)
        self.settings = WindowSettings.from_config(cfg)
        if cfg.infer.sw_batch_size == "auto":
            batch = self._windows_per_pass()
            self.settings = WindowSettings(self.settings.roi_size, self.settings.overlap, batch, self.settings.blend)
        if device.type == "cuda" and cfg.infer.cuda_graphs:  # after the probe above, which runs one window
            self.model = as_volume_model(GraphedForward(model), cfg).eval()

    def _windows_per_pass(self) -> int:
        """``infer.sw_batch_size: auto``: from one probe window; a window too large for the device is refused."""
        try:
            return auto_sw_batch(self.model, self.cfg.model.in_channels, self.settings, self.device, self.amp_dtype)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            window = "×".join(map(str, self.settings.roi_size))
            raise DataError(f"infer.roi_size {window}: a single window does not fit in the free memory of "
                            f"{self.device} — predict on a GPU with more free memory (or --device cpu)") from None

    @torch.no_grad()
    def warm_up(self) -> None:
        """On a GPU, one pass of a full window batch: cuDNN autotuning, Triton compilation and the CUDA graph's
        capture happen here (the batch pipeline calls it while the first cases are being read), not in the
        first case's sliding window. Volume models only (a 2D model's slice batches vary with the volume)."""
        if self.device.type != "cuda" or self.cfg.slices_volumes:
            return
        shape = (self.settings.sw_batch_size, self.cfg.model.in_channels, *self.settings.roi_size)
        try:
            with autocast(self.device, self.amp_dtype):
                self.model(torch.zeros(shape, device=self.device))
        except torch.OutOfMemoryError:  # left to the sliding window, which halves the windows per pass and retries
            torch.cuda.empty_cache()

    def load(self, paths: Sequence[Path]) -> torch.Tensor:
        """The preprocessed image of one case's channel files (:meth:`CaseLoader.load`)."""
        return self.loader.load(paths)

    def finish_preprocessing(self, image: torch.Tensor) -> torch.Tensor:
        """The device part of preprocessing for images loaded without it (:meth:`CaseLoader.finish_preprocessing`)."""
        return self.loader.finish_preprocessing(image)

    @torch.no_grad()
    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, *spatial)`` of a preprocessed image ``(C, *spatial)``, mirrored over ``infer.tta_axes``
        when TTA is on; windows per pass shrink on out-of-memory errors."""
        batch = torch.as_tensor(image)[None].to(self.device, non_blocking=True)

        def window(volume: torch.Tensor) -> torch.Tensor:
            out, self.settings = logits_with_fallbacks(self.model, volume, self.settings, self.amp_dtype)
            return out

        axes = [a for a in self.cfg.infer.tta_axes if a < batch.ndim - 2  # slices are predicted apart, so
                and not (self.cfg.slices_volumes and a == self.cfg.data.slice_axis)]  # flipping their order is moot
        return (mirrored_logits(window, batch, axes) if self.tta else window(batch))[0]

    def infer(self, image: torch.Tensor) -> Prediction:
        """The label map (and probabilities if asked) of a loaded image on its original grid; a case that does not
        fit in memory is a one-line DataError naming its file (the next case may fit)."""
        try:
            return self._infer(image)
        except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
            if not is_out_of_memory(exc):
                raise
            path = Path(image.meta.get(ImageMetaKey.FILENAME_OR_OBJ, "image"))
            raise case_too_large(path, self.device, self.settings.roi_size, exc) from None

    @torch.no_grad()
    def _infer(self, image: torch.Tensor) -> Prediction:
        image = self.finish_preprocessing(image)
        logits = self.logits(image).to(self.device)
        shape = [int(s) for s in image.meta["spatial_shape"]]
        if self.cfg.data.image_dims == 2 and len(shape) == 3 and shape[2] == 1 and logits.ndim == 3:
            logits = logits[..., None]  # a 2D image stored as (X, Y, 1): its prediction keeps that shape
        logits = resample_to_grid(logits, image.affine, image.meta["original_affine"], shape)
        probabilities = None
        if self.probabilities:
            probabilities = torch.softmax(logits, 0).to(torch.float16).cpu().numpy()
        labels = class_indices(logits, 0)
        counts = torch.bincount(labels.flatten(), minlength=self.cfg.model.num_classes).cpu().numpy()
        labels = _file_ordered(labels.to(torch.uint8)).cpu().numpy().T  # model.num_classes is at most 256
        return Prediction(labels, counts, probabilities)

    def predict(self, paths: Sequence[Path]) -> np.ndarray:
        """The label map of one case (its channel files) in the first file's voxel order (as nibabel reads it)."""
        return self.infer(self.load(paths)).labels


def prepare_for_inference(model: torch.nn.Module, cfg: Config, device: torch.device,
                          amp_dtype: torch.dtype | None) -> torch.nn.Module:
    """``model`` (changed in place) on ``device`` in eval mode, made faster there without changing its arithmetic
    beyond rounding: in fp32 batch norm folded into the convolution before it (``models.fold_norm``; not under
    bf16/fp16 autocast, where the folded weights round differently and, on an H100 (benchmarks/predict_e2e.py
    --norm batch), moved enough label borders to drop the Dice against the unfolded model's maps to 0.965) and,
    on the CPU, convolutions packed for oneDNN (``models.packed_conv``; in fp32, or with bf16 weights under bf16
    autocast, checked against oneDNN's faulty AMX kernels, the one-channel stem then over its input's phases:
    ``models.space_to_depth.PhaseConvolution``); on a GPU, the one-channel stem as a
    space-to-depth convolution (``models.space_to_depth``) and instance norm in segkit's layout-keeping Triton
    kernels (``models.fast_instance_norm``); channels-last where ``infer.memory_format`` chooses it."""
    model = model.to(device).eval()
    if amp_dtype is None:
        fold_batch_norm(model)
    if device.type == "cpu" and amp_dtype == torch.bfloat16:
        use_phase_convolutions(model)
    if device.type == "cpu" and amp_dtype in (None, torch.bfloat16):
        pack_convolutions(model, amp_dtype or torch.float32)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every pass has the window's shape: autotune once
        use_space_to_depth_stems(model)
    if use_channels_last_inference(cfg.infer.memory_format, cfg.model.norm, device):
        if triton_kernels_usable(device):
            use_channels_last_instance_norm(model)
        model = ChannelsLastInput(model, cfg.model.spatial_dims)
    return model


def _file_ordered(volume: torch.Tensor) -> torch.Tensor:
    """``volume`` with its axes reversed and made contiguous, i.e. laid out as NIfTI stores it (F order); its
    NumPy transpose indexes like ``volume`` and is written without a transposing copy on the host."""
    return volume.permute(*reversed(range(volume.ndim))).contiguous()


