"""Which channel file of a multi-channel case lies on another grid than the first (for the error message)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

GRID_TOLERANCE = 1e-4  # mm and direction cosines: MONAI's concatenation refuses larger differences


def _grid(path: Path) -> dict[str, np.ndarray] | None:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:  # e.g. NIfTI-2, which SimpleITK cannot read: no more precise message then
        return None
    return {"size": np.asarray(reader.GetSize()), "spacing": np.asarray(reader.GetSpacing()),
            "origin": np.asarray(reader.GetOrigin()), "direction": np.asarray(reader.GetDirection())}


def channel_grid_mismatch(paths: Sequence[Path]) -> str | None:
    """One line naming the first channel file whose size, spacing, origin or direction differs from the first
    channel file's, with both values and the fix; None when the headers agree (or cannot be read here)."""
    first = _grid(paths[0])
    for path in paths[1:]:
        grid = _grid(path)
        if first is None or grid is None:
            return None
        for key, reference in first.items():
            value = grid[key]
            same = value.shape == reference.shape and (
                np.array_equal(value, reference) if key == "size" else np.allclose(value, reference,
                                                                                   atol=GRID_TOLERANCE))
            if not same:
                shown = [v.tolist() if key == "size" else (np.round(v, 4) + 0.0).tolist()  # + 0.0: no -0.0
                         for v in (value, reference)]
                return (f"{path}: channel file with {key} {shown[0]}, but the first channel {Path(paths[0]).name} has "
                        f"{shown[1]} — save every channel file of a case on the first channel's grid (resample it, "
                        "e.g. with SimpleITK)")
    return None
