"""``segkit predict`` from Python: one checkpoint (or an ensemble) applied to files or to images in memory.

The counterpart of nnU-Net's ``nnUNetPredictor`` for notebooks and other programs::

    from segkit.pipelines.predict_api import load_predictor

    predictor = load_predictor("runs/liver", device="cpu")
    prediction = predictor.predict_files(["ct_001.nii.gz"])      # labels on the file's grid
    image = LoadImage(image_only=True, ensure_channel_first=True)("ct_001.nii.gz")  # MONAI
    prediction = predictor.predict_image(image)                   # the same label map

Preprocessing, the sliding window, resampling back and ``infer.keep_largest`` are those of ``segkit predict`` with
the same options; nothing is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import ImageMetaKey
from segkit.pipelines.predict import load_models
from segkit.pipelines.predict_jobs import PredictOptions, config_for
from segkit.pipelines.predict_writer import postprocessed_counts

from segkit.config import Config
from segkit.errors import DataError
from segkit.inference.predictor import Prediction, Predictor
from segkit.runtime import resolve_device


@dataclass(frozen=True)
class CheckpointPredictor:
    """A checkpoint's predictor with its config and class names (background first, when the run recorded them)."""

    predictor: Predictor
    config: Config
    class_names: list[str] | None

    @property
    def device(self) -> torch.device:
        """Where the network runs."""
        return self.predictor.device

    def predict_files(self, paths: str | Path | Sequence[str | Path]) -> Prediction:
        """One case from its image file, or its channel files in channel order (``CASE_0000``, ``CASE_0001``, …):
        labels (uint8) in voxel index order (i, j, k), as nibabel and MONAI's ``LoadImage`` read the first file (for
        a PNG or TIFF: (column, row), the transpose of PIL's array), voxel counts per class, and float16
        probabilities ``(K, *spatial)`` when the predictor was loaded with ``probabilities=True``."""
        paths = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
        return self._postprocessed(self.predictor.infer(self.predictor.load(paths)))

    def predict_image(self, image: torch.Tensor | np.ndarray, affine: np.ndarray | torch.Tensor | None = None,
                      name: str | None = None) -> Prediction:
        """One case already in memory, channel first ``(C, *spatial)``: a MONAI ``MetaTensor`` as
        ``LoadImage(ensure_channel_first=True)`` returns it, or an array with its 4×4 (3×3 in 2D) voxel-to-world
        ``affine`` in nibabel's RAS convention (``nib.load(f).affine``). The labels have the image's spatial shape
        and voxel order. ``name`` stands for the image in errors (default: the MetaTensor's file name, or "image")."""
        if name is None:
            meta = image.meta if isinstance(image, MetaTensor) else {}
            name = str(meta.get(ImageMetaKey.FILENAME_OR_OBJ, "image"))
        tensor = _as_meta_tensor(image, affine, name, self.config)
        return self._postprocessed(self.predictor.infer(self.predictor.loader.prepare(tensor, name)))

    def _postprocessed(self, prediction: Prediction) -> Prediction:
        """``infer.keep_largest`` applied as ``segkit predict``'s writer applies it (labels and counts)."""
        keep = self.config.infer.keep_largest
        return replace(prediction, voxel_counts=postprocessed_counts(prediction, keep)) if keep else prediction


def load_predictor(checkpoint: str | Path | Sequence[str | Path], device: str = "auto", *, tta: bool = False,
                   probabilities: bool = False, precision: str | None = None, overlap: float | None = None,
                   sw_batch_size: int | str | None = None, keep_largest: Sequence[int] | None = None
                   ) -> CheckpointPredictor:
    """The predictor ``segkit predict --checkpoint CHECKPOINT`` would use, with its options of the same names
    (several checkpoints predict as an ensemble). Raises :class:`~segkit.errors.SegkitError` subclasses with
    one-line messages for a missing or damaged checkpoint or an unavailable device."""
    paths = [checkpoint] if isinstance(checkpoint, str | Path) else list(checkpoint)
    ckpts, cfg, model = load_models([Path(p) for p in paths])
    options = PredictOptions(device=device, tta=tta, probabilities=probabilities, precision=precision,
                             overlap=overlap, sw_batch_size=sw_batch_size,
                             keep_largest=tuple(keep_largest) if keep_largest else None)
    cfg = config_for(cfg, options)
    predictor = Predictor(model, cfg, resolve_device(device, "device="), tta, probabilities)
    return CheckpointPredictor(predictor, cfg, ckpts[0].class_names)


def _as_meta_tensor(image: torch.Tensor | np.ndarray, affine: np.ndarray | torch.Tensor | None, name: str,
                    cfg: Config) -> MetaTensor:
    """``image`` as a MetaTensor with the metadata a file read gives (original affine, spatial shape), after
    checking its channels and dimensions against the model."""
    if affine is None and not isinstance(image, MetaTensor):
        raise DataError(f"{name}: an array has no geometry — pass affine= (the 4×4 voxel-to-world matrix, e.g. "
                        "nib.load(file).affine), or a MetaTensor from MONAI's LoadImage(ensure_channel_first=True)")
    if isinstance(image, MetaTensor | torch.Tensor):
        tensor = image.as_tensor() if isinstance(image, MetaTensor) else image
    else:
        array = np.asarray(image)
        tensor = torch.from_numpy(array.copy() if any(step < 0 for step in array.strides) else array)  # a[::-1]
    channels, dims = cfg.model.in_channels, cfg.data.image_dims
    flat_2d = dims == 2 and tensor.ndim == 4 and tensor.shape[-1] == 1  # (C, X, Y, 1), as a 2D NIfTI reads
    if (tensor.ndim != dims + 1 and not flat_2d) or tensor.shape[0] != channels:
        raise DataError(f"{name}: image has shape {tuple(tensor.shape)} but the model takes (channels, *spatial) "
                        f"with {channels} channel(s) and {dims} spatial axes — put the channels first "
                        "(LoadImage(ensure_channel_first=True))")
    if affine is None:
        affine = image.affine
    affine = torch.as_tensor(np.asarray(affine, dtype=np.float64))
    spatial = np.asarray(tensor.shape[1:])
    meta = {k: v for k, v in image.meta.items() if k != "affine"} if isinstance(image, MetaTensor) else {}
    meta.setdefault("original_affine", affine.numpy().copy())
    meta.setdefault("spatial_shape", spatial)
    meta[ImageMetaKey.FILENAME_OR_OBJ] = name
    return MetaTensor(tensor, affine=affine, meta=meta)
