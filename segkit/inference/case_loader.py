"""The host half of prediction: read one case's channel files and preprocess them like training.

Kept apart from the device half (:class:`segkit.inference.predictor.Predictor`) so that the batch pipeline's
reader threads can start on the first cases while the model is still being moved to and prepared on the device.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from monai.utils import ImageMetaKey

from segkit.config import Config
from segkit.data.transforms import IMAGE, split_prediction_transforms
from segkit.errors import DataError
from segkit.io.channel_grids import channel_grid_mismatch
from segkit.io.image_io import REEXPORT, header_components, header_shape


class CaseLoader:
    """Reads and preprocesses cases for a model trained with ``cfg``; thread-safe (one transform chain per thread).

    With ``device_preprocessing`` (the default on a GPU) the host threads only read and reorient, and
    resampling and normalisation are left to :meth:`finish_preprocessing` on ``device``; otherwise all of it runs
    in the calling thread on the host, where it overlaps with the network.
    """

    def __init__(self, cfg: Config, device: torch.device, device_preprocessing: bool | None = None) -> None:
        self.cfg, self.device = cfg, device
        self.device_preprocessing = device.type == "cuda" if device_preprocessing is None else device_preprocessing
        self._local = threading.local()
        self._device_chain = None

    def load(self, paths: Sequence[Path]) -> torch.Tensor:
        """The preprocessed image of one case's channel files (a MetaTensor with the original affine and shape).

        Headers are checked first (size, dimensions, one channel per file), so a corrupt or unsuitable
        file is refused before its pixels are read; NaN/Inf voxels are refused before normalisation.
        With ``device_preprocessing`` the resampling and normalisation are left to :meth:`finish_preprocessing`.
        """
        for path in paths:
            self._check_header(path, holds_every_channel=len(paths) == 1)
        chains = self._chains()
        try:
            image = _apply(chains[0], [str(p) for p in paths] if len(paths) > 1 else str(paths[0]), paths[0])
        except DataError:
            mismatch = channel_grid_mismatch(paths) if len(paths) > 1 else None  # name the channel at fault
            if mismatch is not None:
                raise DataError(mismatch) from None
            raise
        return self._after_reading(image, chains, paths[0])

    def prepare(self, image: torch.Tensor, name: str = "image") -> torch.Tensor:
        """Preprocess an image already in memory as :meth:`load` does a file's: channel first, with the metadata
        MONAI's ``LoadImage(ensure_channel_first=True)`` gives it (``affine``, ``original_affine``,
        ``spatial_shape``). ``name`` stands for the file in errors."""
        return self._after_reading(image, self._chains(), Path(name))

    def _chains(self) -> tuple:
        """This thread's transform chains: the host part (read, channel first), then the rest on the host or the
        device."""
        chains = getattr(self._local, "chains", None)
        if chains is None:
            rest_device = self.device if self.device_preprocessing else torch.device("cpu")
            chains = self._local.chains = split_prediction_transforms(self.cfg.data, rest_device)
        return chains

    def _after_reading(self, image: torch.Tensor, chains: tuple, path: Path) -> torch.Tensor:
        """The host part of preprocessing after reading (all of it without ``device_preprocessing``), then the
        check that the image has the model's channels and dimensions."""
        if not self.device_preprocessing:
            image = _prepare(image, chains[1:], path)
        expected, dims = self.cfg.model.in_channels, self.cfg.data.image_dims
        stored_flat = dims == 2 and self.device_preprocessing and image.ndim == 4 and image.shape[3] == 1
        if image.shape[0] != expected or (image.ndim != dims + 1 and not stored_flat):  # (X, Y, 1): squeezed later
            raise DataError(f"{path}: image has shape {tuple(image.shape)} (channels first) but the model "
                            f"expects {expected} channel(s) and a {dims}D image")
        return image

    def _check_header(self, path: Path, holds_every_channel: bool) -> None:
        """One ``data.image_dims``-D image per file (a trailing axis of length 1 allowed) or, when one file holds a
        multi-channel case (MSD style), the channels along a trailing axis; of a sane size (a DICOM series folder
        is left to its reader)."""
        if Path(path).is_dir():
            return
        shape, dims, channels = header_shape(path), self.cfg.data.image_dims, self.cfg.model.in_channels
        extra = tuple(shape[dims:])
        if len(shape) >= dims and (extra in ((), (1,)) or (holds_every_channel and extra == (channels,))):
            return
        size = "×".join(map(str, shape))
        # a volume: its third axis is no colour (a header SimpleITK cannot read, e.g. NIfTI-2, holds no colour)
        if dims == 2 and len(shape) == 3 and (header_components(path) or 1) == 1:
            raise DataError(f"{path}: image is a 3D volume (size {size}) but the model was trained on 2D image files "
                            "(data.image_dims: 2) — predict 2D images, or train a 2D model on slices of volumes "
                            "(data.image_dims: 3, data.slice_axis)")
        if dims == 2 and len(shape) == 3 and holds_every_channel:  # e.g. an RGB PNG for a model of other channels
            raise DataError(f"{path}: image has {shape[2]} components per pixel (size {size}; colour, e.g. RGB) but "
                            f"the model takes {channels} channel(s) — convert it to "
                            + ("grey" if channels == 1 else f"{channels} components, or one grey file per channel "
                               f"(CASE_0000 … CASE_{channels - 1:04d})"))
        if channels > 1:
            raise DataError(f"{path}: image is {len(shape)}D (size {size}) but the model takes {channels} channels of "
                            f"a {dims}D image — one file per channel (CASE_0000, CASE_0001, …) or one file with "
                            f"the {channels} channels along a last axis")
        raise DataError(f"{path}: image is {len(shape)}D (size {size}) but the model takes one {dims}D image per "
                        f"file — save a {dims}D image (several channels: one file each, CASE_0000, CASE_0001, …)")

    def finish_preprocessing(self, image: torch.Tensor) -> torch.Tensor:
        """The device part of preprocessing (resampling, normalisation) for images loaded without it."""
        if not self.device_preprocessing:
            return image
        if self._device_chain is None:
            self._device_chain = split_prediction_transforms(self.cfg.data, self.device)[1:]
        return _prepare(image, self._device_chain, Path(image.meta.get(ImageMetaKey.FILENAME_OR_OBJ, "image")))


def _apply(step: Callable, image, path: Path) -> torch.Tensor:
    """``step(image)``; a failure becomes one line naming ``path`` and the innermost cause."""
    try:
        return step(image)
    except Exception as exc:  # MONAI wraps reader errors in RuntimeError("applying transform ...")
        cause = exc
        while cause.__cause__ is not None or (cause.__context__ is not None and not cause.__suppress_context__):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, DataError):  # already one line naming the file and the fix
            raise DataError(str(cause)) from None
        text = " ".join(line.strip() for line in str(cause).splitlines() if line.strip())
        reason = f"{type(cause).__name__}: {text[:200]}" if text else type(cause).__name__
        if isinstance(cause, EOFError | OSError | zlib.error):
            raise DataError(f"{path}: pixel data is truncated or damaged ({reason}) — {REEXPORT}") from None
        raise DataError(f"{path}: cannot read or preprocess image ({reason})") from None


def _prepare(image: torch.Tensor, steps: tuple, path: Path) -> torch.Tensor:
    """The image as contiguous float32 where ``steps[0]`` puts it, checked for NaN/Inf, then ``steps[1]``
    (reorientation, resampling, normalisation) there."""
    to_float, rest = steps
    image = _apply(lambda data: to_float({IMAGE: data})[IMAGE], image, path)
    _check_finite(path, image)
    return _apply(lambda data: rest({IMAGE: data})[IMAGE], image, path)


def _check_finite(path: Path, image: torch.Tensor) -> None:
    """Refuse NaN/Inf voxels: the network would turn them into a meaningless label map."""
    if image.is_floating_point() and not bool(torch.isfinite(image).all()):
        nan, inf = int(torch.isnan(image).sum()), int(torch.isinf(image).sum())
        raise DataError(f"{path}: image holds {nan} NaN and {inf} infinite voxel(s) — replace them (e.g. with the "
                        "lowest valid intensity) and save the image again")
