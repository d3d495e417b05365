"""NIfTI headers whose qform and sform describe different grids: readers disagree on where such an image lies.

nibabel, and so segkit's loaders and predictor, use the sform when its code is set; SimpleITK (and tools built on
ITK, e.g. nnU-Net) may use the qform. An image and its label map can then line up for one reader and not for the
other, so ``segkit data check`` refuses such a file rather than train on pairs that might be misaligned.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from segkit.io.atomic import full_suffix

XFORM_ATOL = 1e-3  # mm for the translation, and for the (spacing-scaled) rotation columns


def qform_sform_conflict(path: Path) -> str | None:
    """Why ``path``'s qform and sform disagree (both codes set, matrices differing), or None (also for a
    file that is not NIfTI, or whose header nibabel cannot read: the other checks report that)."""
    if full_suffix(path).lower() not in (".nii", ".nii.gz"):
        return None
    try:
        header = nib.load(str(path)).header
        qform_code, sform_code = int(header["qform_code"]), int(header["sform_code"])
        qform, sform = header.get_qform(), header.get_sform()
    except Exception:  # nibabel raises many types for broken headers
        return None
    if qform_code <= 0 or sform_code <= 0 or np.allclose(qform, sform, rtol=0.0, atol=XFORM_ATOL):
        return None
    return (f"qform and sform describe different grids (qform origin {_origin(qform)}, sform origin "
            f"{_origin(sform)}, largest difference {np.abs(qform - sform).max():.4g}) — readers differ on which to "
            "use (segkit and nibabel: the sform; SimpleITK: possibly the qform); save the image with both equal, "
            "e.g. in nibabel img.set_qform(img.get_sform()) before saving")


def _origin(affine: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in affine[:3, 3]) + ")"
