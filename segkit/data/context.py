"""Context around a training patch for its spatial augmentation, as nnU-Net draws patches.

Rotating or scaling a patch after it was cut samples voxels outside it; before, those came from the patch's
edges smeared outward (``padding_mode="border"``, on average 15 % of the voxels at ±15° and ±15 %). Here the
crop is larger by a margin that covers the rotation and scaling configured, the affine and elastic transforms
run on it, and the patch is its centre: every voxel comes from the image (or, beyond the volume's border, zeros
with label background, as nnU-Net pads). The patch centres are drawn exactly as before.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.transforms import CenterSpatialCropd, MapTransform, Randomizable
from monai.transforms.utils import create_rotate

ANGLE_STEPS = 9  # rotation angles tried per axis when bounding the rotated patch's extent
ELASTIC_MARGIN = 8  # voxels per side for the elastic deformation's displacements (σ 5–8, magnitude 50–150)


def rotated_extent(patch: Sequence[int], max_angle: float, axes: Sequence[int]) -> np.ndarray:
    """Per axis, the largest extent (voxels) of the region a ``patch``-sized output samples when rotated by up
    to ``max_angle`` radians about each of ``axes`` (2D: the one in-plane angle)."""
    dims = len(patch)
    angle = min(abs(max_angle), math.pi / 4)  # a square's extent is largest at 45°
    grid = np.linspace(-angle, angle, ANGLE_STEPS) if angle > 0 else np.zeros(1)
    rotating = [0] if dims == 2 else list(axes)
    extent = np.asarray(patch, dtype=np.float64)
    for values in itertools.product(grid, repeat=len(rotating)):
        angles = [0.0] * (1 if dims == 2 else 3)
        for axis, value in zip(rotating, values, strict=True):
            angles[axis] = value
        rotation = np.abs(create_rotate(dims, angles)[:dims, :dims])
        extent = np.maximum(extent, rotation @ np.asarray(patch, dtype=np.float64))
    return extent


def context_margin(patch: Sequence[int], affine: bool, rotate_deg: float, scale: float, rotation_axes: Sequence[int],
                   elastic: bool) -> tuple[int, ...]:
    """Voxels to add on each side of ``patch`` so that its affine (and in 3D elastic) augmentation samples the
    image only: the rotated extent, divided by the smallest scale factor, plus the elastic displacements."""
    needed = np.asarray(patch, dtype=np.float64)
    if affine:
        needed = rotated_extent(patch, math.radians(rotate_deg), rotation_axes) / (1.0 - scale)
    margin = np.ceil((needed - np.asarray(patch)) / 2.0)
    if elastic:
        margin += ELASTIC_MARGIN
    return tuple(int(m) for m in margin)


SPATIAL_KEY = "spatial_augmentation"  # (affine?, elastic?) drawn with the crop, read by ContextSpatiald


class ContextCropd(Randomizable, MapTransform):
    """A patch centre drawn by MONAI's class-balanced or pos/neg crop (``crop``, patch-sized) and whether the patch
    gets the affine and the elastic augmentation; then a cut around the centre: with ``margin`` more voxels on
    each side when it does (zeros outside the volume, label background), else the patch itself.

    The centre is exactly MONAI's, so patches reach the volume's borders as before. The volume is not padded (a
    cached CT keeps its size), and only the patches that are rotated or deformed pay for the larger cut. Returns
    a one-item list, as MONAI's croppers do; ``SPATIAL_KEY`` carries the decision to :class:`ContextSpatiald`.
    """

    def __init__(self, keys: Sequence[Hashable], crop: MapTransform, label_key: str, index_keys: Sequence[str],
                 margin: Sequence[int], affine_prob: float, elastic_prob: float) -> None:
        super().__init__(keys)
        self.crop, self.label_key, self.index_keys = crop, label_key, list(index_keys)
        self.margin = [int(m) for m in margin]
        self.affine_prob, self.elastic_prob = affine_prob, elastic_prob
        self._spatial = (False, False)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        """Seed this transform and, from it, the centre-drawing crop (MONAI's Compose calls this)."""
        super().set_random_state(seed, state)
        self.crop.set_random_state(seed=int(self.R.randint(2**31)))
        return self

    def randomize(self, data: dict) -> None:
        """Draw the centre with MONAI's crop (from the label and its class indices) and the spatial augmentation."""
        indices = [data.pop(key, None) for key in self.index_keys]
        self.crop.randomize(data.get(self.label_key), *indices, image=data.get(self.keys[0]))
        self._spatial = (bool(self.R.rand() < self.affine_prob), bool(self.R.rand() < self.elastic_prob))

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> list[dict]:
        """One cut around the drawn centre, with context when the patch will be rotated or deformed."""
        out = dict(data)
        self.randomize(out)
        centre = [int(c) for c in self.crop.cropper.centers[0]]
        margin = self.margin if any(self._spatial) else [0] * len(self.margin)
        size = [int(s) + 2 * m for s, m in zip(self.crop.cropper.spatial_size, margin, strict=True)]
        for key in self.key_iterator(out):
            out[key] = _cut(out[key], centre, size)
        out[SPATIAL_KEY] = self._spatial
        return [out]


def _cut(image: torch.Tensor, centre: Sequence[int], size: Sequence[int]) -> torch.Tensor:
    """``image[:, start:start + size]`` per axis with ``start = centre - size // 2`` (MONAI's rule), zeros outside."""
    starts = [c - s // 2 for c, s in zip(centre, size, strict=True)]
    shape = image.shape[1:]
    inside = tuple(slice(max(0, a), min(n, a + s)) for a, s, n in zip(starts, size, shape, strict=True))
    pad = []
    for a, s, n in reversed(list(zip(starts, size, shape, strict=True))):
        pad += [max(0, -a), max(0, a + s - n)]
    cut = image[(slice(None), *inside)]  # a view: only a cut reaching beyond the volume is copied (padded)
    return torch.nn.functional.pad(cut, pad) if any(pad) else cut


class ContextSpatiald(Randomizable, MapTransform):
    """The affine and elastic augmentations :class:`ContextCropd` chose for a cut with context, then the patch
    at its centre; a cut without them is the patch already. Both leave image and label float32.

    ``affine`` and ``elastic`` are MONAI transforms built with ``prob=1``. The affine writes the patch size
    directly, or the context size when an elastic deformation may follow (which writes the patch size).
    """

    def __init__(self, keys: Sequence[Hashable], patch: Sequence[int], affine: MapTransform | None,
                 elastic: MapTransform | None) -> None:
        super().__init__(keys)
        self.affine, self.elastic = affine, elastic
        self.crop = CenterSpatialCropd(keys, roi_size=list(patch))

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        """Seed the affine and elastic transforms (MONAI's Compose calls this)."""
        super().set_random_state(seed, state)
        for inner in (self.affine, self.elastic):
            if inner is not None:
                inner.set_random_state(seed=int(self.R.randint(2**31)))
        return self

    def randomize(self, data: object = None) -> None:
        """Nothing to draw here: :class:`ContextCropd` drew whether to augment, MONAI's transforms draw how."""

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        """The augmented patch of the cut ``data``."""
        out = dict(data)
        do_affine, do_elastic = out.pop(SPATIAL_KEY, (False, False))
        if do_affine and self.affine is not None:
            out = self.affine(out)
        if do_elastic and self.elastic is not None:
            out = self.elastic(out)
        out = self.crop(out)
        for key in self.key_iterator(out):  # float32 whether resampled or not, so patches of a batch collate
            out[key] = out[key].to(torch.float32)
        return out
