"""Predict label maps for image files, on each input's exact voxel grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from segkit.config import Config
from segkit.data.transforms import IMAGE, prediction_transforms
from segkit.errors import DataError
from segkit.inference.resample import resample_to_grid
from segkit.inference.slicewise import as_volume_model
from segkit.inference.sliding_window import WindowSettings, sliding_window_logits
from segkit.runtime import autocast_dtype


class Predictor:
    """Preprocess like training, run the sliding window, resample logits back, argmax."""

    def __init__(self, model: torch.nn.Module, cfg: Config, device: torch.device) -> None:
        self.model = as_volume_model(model, cfg).to(device).eval()
        self.cfg = cfg
        self.device = device
        self.settings = WindowSettings.from_config(cfg)
        self.amp_dtype = autocast_dtype(device, cfg.train.precision)
        self.transforms = prediction_transforms(cfg.data)

    def load(self, paths: Sequence[Path]) -> torch.Tensor:
        """The preprocessed image of one case's channel files (a MetaTensor with the original affine and shape)."""
        path = paths[0]
        try:
            image = self.transforms({IMAGE: [str(p) for p in paths] if len(paths) > 1 else str(path)})[IMAGE]
        except Exception as exc:  # MONAI wraps reader errors in several exception types
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise DataError(f"{path}: cannot read or preprocess image ({reason[:200]})") from None
        expected = self.cfg.model.in_channels
        dims = self.cfg.data.image_dims
        if image.shape[0] != expected or image.ndim != dims + 1:
            raise DataError(f"{path}: image has shape {tuple(image.shape)} (channels first) but the model expects "
                            f"{expected} channel(s) and a {dims}D image")
        return image

    def predict(self, paths: Sequence[Path]) -> np.ndarray:
        """The label map of one case (its channel files) in the first file's voxel order (as nibabel reads it)."""
        image = self.load(paths)
        logits = sliding_window_logits(self.model, image.as_tensor()[None].to(self.device), self.settings,
                                       self.amp_dtype)[0]
        logits = resample_to_grid(logits, image.affine, image.meta["original_affine"], image.meta["spatial_shape"])
        labels = logits.argmax(0)
        dtype = torch.uint8 if self.cfg.model.num_classes <= 256 else torch.int16
        return labels.to(dtype).cpu().numpy()
