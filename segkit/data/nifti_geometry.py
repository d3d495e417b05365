"""NIfTI headers whose qform and sform describe different grids: readers disagree on where such an image lies.

nibabel, and so segkit's loaders and predictor, use the sform when its code is set; SimpleITK (and tools built on
ITK, e.g. nnU-Net) may use the qform. An image and its label map can then line up for one reader and not for the
other, so ``segkit data check`` refuses such a file rather than train on pairs that might be misaligned. The same
holds for an sform whose voxel sizes differ from the header's ``pixdim`` (a tool that filled in only the sform):
ITK then takes its spacing from ``pixdim`` (and may fall back to the qform), nibabel from the sform.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from segkit.io.atomic import full_suffix

XFORM_ATOL = 1e-3  # mm for the translation, and for the (spacing-scaled) rotation columns
SHEAR_TOLERANCE = 1e-4  # cosine of the angle between two voxel axes


def qform_sform_conflict(path: Path) -> str | None:
    """Why ``path``'s qform and sform disagree (both codes set, matrices differing), or None (also for a
    file that is not NIfTI, or whose header nibabel cannot read: the other checks report that)."""
    if full_suffix(path).lower() not in (".nii", ".nii.gz"):
        return None
    try:
        header = nib.load(str(path)).header
        qform_code, sform_code = int(header["qform_code"]), int(header["sform_code"])
        qform, sform = header.get_qform(), header.get_sform()
        zooms = np.asarray(header.get_zooms()[:3], dtype=np.float64)
    except Exception:  # nibabel raises many types for broken headers
        return None
    if sform_code > 0 and qform_code <= 0:
        return _pixdim_conflict(sform, zooms)
    if qform_code <= 0 or sform_code <= 0 or np.allclose(qform, sform, rtol=0.0, atol=XFORM_ATOL):
        return None
    return (f"qform and sform describe different grids (qform origin {_origin(qform)}, sform origin "
            f"{_origin(sform)}, largest difference {np.abs(qform - sform).max():.4g}) — readers differ on which to "
            "use (segkit and nibabel: the sform; SimpleITK: possibly the qform); save the image with both equal, "
            "e.g. in nibabel img.set_qform(img.get_sform()) before saving")


def sheared_axes(path: Path) -> str | None:
    """Why ``path``'s affine (as nibabel reads it) is not a rotation times voxel sizes — its voxel axes are not
    perpendicular, which ITK refuses to read — or None (also for other formats and unreadable headers)."""
    if full_suffix(path).lower() not in (".nii", ".nii.gz"):
        return None
    try:
        linear = np.asarray(nib.load(str(path)).affine, dtype=np.float64)[:3, :3]
    except Exception:  # nibabel raises many types for broken headers
        return None
    axes = linear / np.linalg.norm(linear, axis=0)
    cosines = np.abs(axes.T @ axes - np.eye(3))
    if cosines.max() <= SHEAR_TOLERANCE:
        return None
    i, j = np.unravel_index(np.argmax(cosines), cosines.shape)
    angle = np.degrees(np.arccos(np.clip(axes[:, i] @ axes[:, j], -1.0, 1.0)))
    return (f"the affine is sheared (voxel axes {i} and {j} meet at {angle:.2f}°, not 90°), which ITK and so "
            "SimpleITK cannot read — resample the image onto a grid with perpendicular axes, e.g. with nibabel's "
            "nibabel.processing.resample_from_to")


def _pixdim_conflict(sform: np.ndarray, zooms: np.ndarray) -> str | None:
    """Why an sform (the only coded transform) and ``pixdim`` give different voxel sizes, or None."""
    sizes = np.linalg.norm(sform[:3, : len(zooms)], axis=0)
    if np.allclose(sizes, zooms, rtol=0.0, atol=XFORM_ATOL):
        return None
    shown = ["(" + ", ".join(f"{v:.4g}" for v in values) + ")" for values in (sizes, zooms)]
    return (f"the sform's voxel size {shown[0]} differs from pixdim {shown[1]} — readers differ on which to use "
            "(segkit and nibabel: the sform; SimpleITK: pixdim); save the image with a consistent header, e.g. in "
            "nibabel img.set_qform(img.get_sform()) before saving")


def _origin(affine: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in affine[:3, 3]) + ")"
