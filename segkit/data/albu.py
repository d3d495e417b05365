"""2D augmentation with an albumentations pipeline declared in YAML (``train.albumentations``).

Transform names resolve through an allow-list, never through imports of arbitrary names; wrong
names or parameters are one-line config errors naming the entry.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping
from typing import Any

import albumentations as A
import numpy as np
import torch
from monai.transforms import MapTransform, Randomizable

from segkit.errors import ConfigError

ALLOWED = (
    "HorizontalFlip", "VerticalFlip", "RandomRotate90", "Transpose", "Affine", "ElasticTransform",
    "GridDistortion", "RandomGamma", "RandomBrightnessContrast", "GaussNoise", "GaussianBlur", "MotionBlur",
    "CLAHE", "Sharpen",
)


def build_pipeline(specs: list[Any]) -> A.Compose:
    """An ``A.Compose`` from ``[{name, p, params}, ...]`` entries; errors name ``train.albumentations[i]``."""
    transforms = []
    for index, spec in enumerate(specs):
        key = f"train.albumentations[{index}]"
        if spec.name not in ALLOWED:
            raise ConfigError(f"{key}: unknown transform '{spec.name}'; valid: {', '.join(ALLOWED)}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", UserWarning)  # albumentations only warns about unknown arguments
                transforms.append(getattr(A, spec.name)(p=spec.p, **spec.params))
        except (TypeError, ValueError, UserWarning) as exc:
            raise ConfigError(f"{key} ({spec.name}): {str(exc).splitlines()[0]}") from None
    return A.Compose(transforms)


def to_unit_range(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A channel-last float32 ``image`` mapped per channel onto [0, 1], albumentations' range for float images
    (its noise, blur, brightness and sharpening clip their output to it), with the ``low`` and ``span`` that map
    it back. The range mapped is ``[min(channel min, 0), max(channel max, 1)]``: an image already within [0, 1]
    (``data.normalize: window``) is left as it is; a z-scored one (``ct``, ``mri``) is scaled onto it."""
    axes = tuple(range(image.ndim - 1))
    low = np.minimum(image.min(axis=axes), 0.0).astype(np.float32)
    span = (np.maximum(image.max(axis=axes), 1.0) - low).astype(np.float32)
    return (image - low) / span, low, span


class Albumentationsd(MapTransform, Randomizable):
    """Apply an albumentations pipeline to a channel-first 2D image and its label.

    The image passes through the pipeline mapped onto [0, 1] per channel (:func:`to_unit_range`) and is mapped
    back after it, so normalised intensities (negative, or above 1) keep their values instead of being clipped.
    """

    def __init__(self, image_key: str, label_key: str, pipeline: A.Compose) -> None:
        super().__init__([image_key, label_key])
        self.image_key, self.label_key, self.pipeline = image_key, label_key, pipeline

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        """Seed the albumentations pipeline (MONAI's Compose calls this with the run's seed)."""
        self.pipeline.set_random_seed(seed if seed is not None else int(state.randint(2**31)))
        return self

    def randomize(self, data: Any = None) -> None:  # albumentations draws its own parameters
        return None

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """``data`` with its image and label transformed together by the pipeline."""
        out = dict(data)
        image = np.moveaxis(np.asarray(out[self.image_key], dtype=np.float32), 0, -1)
        unit, low, span = to_unit_range(image)
        label = np.asarray(out[self.label_key])[0].astype(np.uint8)
        result = self.pipeline(image=np.ascontiguousarray(unit), mask=label)
        restored = np.asarray(result["image"], dtype=np.float32) * span + low
        out[self.image_key] = torch.from_numpy(np.ascontiguousarray(np.moveaxis(restored, -1, 0)))
        out[self.label_key] = torch.from_numpy(np.ascontiguousarray(result["mask"]))[None]
        return out


def check_on_a_patch(specs: list[Any], channels: int, patch_size: tuple[int, ...], seed: int = 0) -> None:
    """Apply each transform (always) to a random float32 patch of the model's channels holding negative values,
    as normalised images do (``data.normalize`` ct/mri, or window after ``train.augment.noise``), mapped onto
    [0, 1] as :class:`Albumentationsd` maps it. A transform that fails there, or returns NaN or infinite values,
    is a :class:`ConfigError` naming its entry — before training starts, not mid-run."""
    build_pipeline(specs)  # names and parameters first, each error naming its entry
    rng = np.random.default_rng(seed)
    image, _, _ = to_unit_range(rng.standard_normal((*patch_size, channels)).astype(np.float32))
    mask = (rng.random(patch_size) > 0.5).astype(np.uint8)
    for index, spec in enumerate(specs):
        key = f"train.albumentations[{index}] ({spec.name})"
        transform = A.Compose([getattr(A, spec.name)(p=1.0, **spec.params)])
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = transform(image=image.copy(), mask=mask.copy())["image"]
        except Exception as exc:  # albumentations raises many types; the reason is reported, not lost
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"{key}: fails on a {channels}-channel float32 patch ({reason[:160]}); remove it or "
                              "use a transform that takes such images") from None
        if not np.isfinite(result).all():
            raise ConfigError(f"{key}: gives NaN or infinite values on a normalised patch; remove it or change its "
                              "params")
