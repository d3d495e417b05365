"""Dataset fingerprint (as nnU-Net computes one): spacing, shape, foreground intensities and class frequencies.

Per-case statistics (:class:`CaseStats`) are gathered by :mod:`segkit.data.check` while it reads each
file once; :func:`compute_fingerprint` only combines them. Axes are in SimpleITK order (x, y, z), or
(x, y) for 2D images. nnU-Net takes its fingerprint from the training cases only, and so does segkit for
the settings it derives (``data.spacing: auto``, ``data.normalize: ct``); held-out test cases get a
fingerprint of their own, for information.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

MAX_FOREGROUND_SAMPLES = 10_000  # per case: keeps the fingerprint cheap and the cache small
SAMPLE_SEED = 20240607
INTENSITY_PERCENTILES = (0.5, 50.0, 99.5)


@dataclass(frozen=True)
class CaseStats:
    """What one error-free case contributes to the fingerprint.

    ``foreground_sample`` holds one list of intensities per channel (empty lists when the case
    has no label); ``class_counts`` maps label value → voxel count (empty when there is no label).
    """

    case_id: str
    spacing: tuple[float, ...]  # (x, y, z), or (x, y) for 2D images
    shape: tuple[int, ...]
    foreground_sample: list[list[float]]
    class_counts: dict[int, int]

    def as_dict(self) -> dict:
        """Plain JSON-ready values."""
        return {"case_id": self.case_id, "spacing": list(self.spacing), "shape": list(self.shape),
                "foreground_sample": self.foreground_sample,
                "class_counts": {str(k): v for k, v in self.class_counts.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> CaseStats:
        """Inverse of :meth:`as_dict`."""
        return cls(str(data["case_id"]), tuple(float(v) for v in data["spacing"]),
                   tuple(int(v) for v in data["shape"]), [[float(v) for v in c] for c in data["foreground_sample"]],
                   {int(k): int(v) for k, v in data["class_counts"].items()})


def sample_foreground(image_cf: np.ndarray, label: np.ndarray, case_id: str) -> list[list[float]]:
    """Intensities of at most :data:`MAX_FOREGROUND_SAMPLES` foreground voxels, per channel.

    ``image_cf`` is channel-first (c, z, y, x) and ``label`` is (z, y, x) (2D: (c, y, x) and (y, x)). The
    voxels are drawn with an RNG seeded by the case id, so the same case always gives the same sample.
    """
    index = np.flatnonzero(label.ravel() > 0)
    if index.size > MAX_FOREGROUND_SAMPLES:
        rng = np.random.default_rng([SAMPLE_SEED, zlib.crc32(case_id.encode("utf-8"))])
        index = np.sort(rng.choice(index, MAX_FOREGROUND_SAMPLES, replace=False))
    coords = np.unravel_index(index, label.shape)
    return image_cf[(slice(None), *coords)].astype(np.float64).tolist()


@dataclass(frozen=True)
class IntensityStats:
    """Foreground intensity statistics of one channel (None where no foreground voxel was found)."""

    channel: int
    samples: int
    p0_5: float | None
    median: float | None
    p99_5: float | None
    mean: float | None
    std: float | None


@dataclass(frozen=True)
class Fingerprint:
    """Summary of a dataset; per-axis values are (x, y, z) lists ((x, y) for 2D images)."""

    num_cases: int
    spacing_median: list[float]
    spacing_p10: list[float]
    spacing_p90: list[float]
    shape_min: list[int]
    shape_median: list[float]
    shape_max: list[int]
    intensity: list[IntensityStats]
    class_frequency: dict[int, float]

    def as_dict(self) -> dict:
        """Plain floats, ints and lists, ready for ``json.dumps``."""
        return {
            "num_cases": self.num_cases, "axes": ["x", "y", "z"][: len(self.spacing_median)],
            "spacing": {"median": self.spacing_median, "p10": self.spacing_p10, "p90": self.spacing_p90},
            "shape": {"min": self.shape_min, "median": self.shape_median, "max": self.shape_max},
            "intensity": [vars(stats).copy() for stats in self.intensity],
            "class_frequency": {str(k): v for k, v in self.class_frequency.items()},
        }


def _intensity(channel: int, values: np.ndarray) -> IntensityStats:
    if values.size == 0:
        return IntensityStats(channel, 0, None, None, None, None, None)
    low, median, high = (float(v) for v in np.percentile(values, INTENSITY_PERCENTILES))
    return IntensityStats(channel, int(values.size), low, median, high, float(values.mean()), float(values.std()))


def _class_frequency(stats: list[CaseStats], num_classes: int | None) -> dict[int, float]:
    totals: dict[int, int] = {k: 0 for k in range(num_classes or 0)}
    for case in stats:
        for value, count in case.class_counts.items():
            totals[value] = totals.get(value, 0) + count
    voxels = sum(totals.values())
    return {k: (totals[k] / voxels if voxels else 0.0) for k in sorted(totals)}


def compute_fingerprint(stats: list[CaseStats], num_classes: int | None = None) -> Fingerprint:
    """Combine per-case statistics; ``num_classes`` lists classes that never occur with frequency 0."""
    if not stats:
        raise ValueError("a fingerprint needs at least one case")
    spacing = np.array([case.spacing for case in stats], dtype=np.float64)
    shape = np.array([case.shape for case in stats], dtype=np.int64)
    p10, median, p90 = np.percentile(spacing, [10, 50, 90], axis=0)
    channels = max(len(case.foreground_sample) for case in stats)
    intensity = [_intensity(c, np.concatenate([np.asarray(case.foreground_sample[c], dtype=np.float64)
                                               for case in stats if c < len(case.foreground_sample)]))
                 for c in range(channels)]
    return Fingerprint(
        num_cases=len(stats), spacing_median=median.tolist(), spacing_p10=p10.tolist(), spacing_p90=p90.tolist(),
        shape_min=shape.min(axis=0).tolist(), shape_median=np.median(shape, axis=0).tolist(),
        shape_max=shape.max(axis=0).tolist(), intensity=intensity,
        class_frequency=_class_frequency(stats, num_classes),
    )
