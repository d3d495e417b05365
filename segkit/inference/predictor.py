"""Predict label maps for image files, on each input's exact voxel grid.

Three stages, so that a pipeline can overlap them: :meth:`Predictor.load` (host, thread-safe:
read and preprocess like training), :meth:`Predictor.infer` (device: sliding window, optional
mirroring TTA, logits resampled back to the input grid, softmax/argmax; only the label map —
and, if asked, float16 probabilities — cross to the host) and writing (see ``pipelines/predict``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from segkit.config import Config
from segkit.data.transforms import IMAGE, prediction_transforms, split_prediction_transforms
from segkit.errors import DataError
from segkit.inference.resample import resample_to_grid
from segkit.inference.slicewise import as_volume_model
from segkit.inference.sliding_window import WindowSettings, auto_sw_batch, logits_with_fallbacks
from segkit.inference.tta import mirrored_logits
from segkit.runtime import ChannelsLastInput, autocast_dtype, use_channels_last_inference


@dataclass(frozen=True)
class Prediction:
    """One case's result on its input grid (voxel order as nibabel reads the first channel file)."""

    labels: np.ndarray  # uint8, or uint16 beyond 256 classes
    probabilities: np.ndarray | None = None  # float16 (K, *spatial) when asked for


class Predictor:
    """Preprocess like training, run the sliding window, resample logits back, argmax."""

    def __init__(self, model: torch.nn.Module, cfg: Config, device: torch.device, tta: bool = False,
                 probabilities: bool = False, device_preprocessing: bool | None = None) -> None:
        model = model.to(device).eval()
        if use_channels_last_inference(cfg.infer.memory_format, cfg.model.norm):
            model = ChannelsLastInput(model, cfg.model.spatial_dims)
        self.model = as_volume_model(model, cfg).eval()
        self.cfg, self.device, self.tta, self.probabilities = cfg, device, tta, probabilities
        # on a GPU, resampling and normalisation run there (host threads only read and reorient);
        # on the CPU all of it stays in the reader threads, where it overlaps with the network
        self.device_preprocessing = device.type == "cuda" if device_preprocessing is None else device_preprocessing
        self.amp_dtype = autocast_dtype(device, cfg.train.precision)
        self.settings = WindowSettings.from_config(cfg)
        if cfg.infer.sw_batch_size == "auto":
            batch = auto_sw_batch(self.model, cfg.model.in_channels, self.settings, device, self.amp_dtype)
            self.settings = WindowSettings(self.settings.roi_size, self.settings.overlap, batch, self.settings.blend)
        self._local = threading.local()  # one MONAI transform chain per reader thread
        self._device_chain = None

    def load(self, paths: Sequence[Path]) -> torch.Tensor:
        """The preprocessed image of one case's channel files (a MetaTensor with the original affine and shape)."""
        path = paths[0]
        transforms = getattr(self._local, "transforms", None)
        if transforms is None:
            transforms = self._local.transforms = (
                split_prediction_transforms(self.cfg.data, self.device)[0] if self.device_preprocessing
                else prediction_transforms(self.cfg.data))
        try:
            image = transforms({IMAGE: [str(p) for p in paths] if len(paths) > 1 else str(path)})[IMAGE]
        except Exception as exc:  # MONAI wraps reader errors in several exception types
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise DataError(f"{path}: cannot read or preprocess image ({reason[:200]})") from None
        expected, dims = self.cfg.model.in_channels, self.cfg.data.image_dims
        if image.shape[0] != expected or image.ndim != dims + 1:
            raise DataError(f"{path}: image has shape {tuple(image.shape)} (channels first) but the model expects "
                            f"{expected} channel(s) and a {dims}D image")
        return image

    def finish_preprocessing(self, image: torch.Tensor) -> torch.Tensor:
        """The device part of preprocessing (resampling, normalisation) for images loaded without it."""
        if not self.device_preprocessing:
            return image
        if self._device_chain is None:
            self._device_chain = split_prediction_transforms(self.cfg.data, self.device)[1]
        return self._device_chain({IMAGE: image})[IMAGE]

    @torch.no_grad()
    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, *spatial)`` of a preprocessed image ``(C, *spatial)``, mirrored over ``infer.tta_axes``
        when TTA is on; windows per pass shrink on out-of-memory errors."""
        batch = torch.as_tensor(image)[None].to(self.device, non_blocking=True)

        def window(volume: torch.Tensor) -> torch.Tensor:
            out, self.settings = logits_with_fallbacks(self.model, volume, self.settings, self.amp_dtype)
            return out

        axes = [a for a in self.cfg.infer.tta_axes if a < batch.ndim - 2]
        return (mirrored_logits(window, batch, axes) if self.tta else window(batch))[0]

    @torch.no_grad()
    def infer(self, image: torch.Tensor) -> Prediction:
        """The label map (and probabilities if asked) of a loaded image on its original grid."""
        image = self.finish_preprocessing(image)
        logits = self.logits(image).to(self.device)
        logits = resample_to_grid(logits, image.affine, image.meta["original_affine"], image.meta["spatial_shape"])
        probabilities = None
        if self.probabilities:
            probabilities = torch.softmax(logits, 0).to(torch.float16).cpu().numpy()
        dtype = torch.uint8 if self.cfg.model.num_classes <= 256 else torch.int32
        labels = logits.argmax(0).to(dtype).cpu().numpy()
        return Prediction(labels if dtype == torch.uint8 else labels.astype(np.uint16), probabilities)

    def predict(self, paths: Sequence[Path]) -> np.ndarray:
        """The label map of one case (its channel files) in the first file's voxel order (as nibabel reads it)."""
        return self.infer(self.load(paths)).labels
