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


class Albumentationsd(MapTransform, Randomizable):
    """Apply an albumentations pipeline to a channel-first 2D image and its label."""

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
        out = dict(data)
        image = np.ascontiguousarray(np.moveaxis(np.asarray(out[self.image_key], dtype=np.float32), 0, -1))
        label = np.asarray(out[self.label_key])[0].astype(np.uint8)
        result = self.pipeline(image=image, mask=label)
        out[self.image_key] = torch.from_numpy(np.ascontiguousarray(np.moveaxis(result["image"], -1, 0)))
        out[self.label_key] = torch.from_numpy(np.ascontiguousarray(result["mask"]))[None]
        return out
