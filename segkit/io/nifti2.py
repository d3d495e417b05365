"""NIfTI-2 files as SimpleITK images.

SimpleITK's NIfTI reader understands only NIfTI-1 ("Unable to determine ImageIO reader" for a NIfTI-2 file), while
nibabel, and so ``segkit train`` and ``segkit predict``, read both. ``segkit data check`` works on SimpleITK images,
so for NIfTI-2 it reads the file with nibabel and builds the image SimpleITK would have given: the same voxels,
and nibabel's (RAS) affine turned into ITK's LPS spacing, origin and direction.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from segkit.io.nifti_reader import nifti_array

NIFTI2_HEADER_BYTES = 540
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def is_nifti2(path: Path) -> bool:
    """Whether ``path`` (``.nii`` or ``.nii.gz``) starts with a NIfTI-2 header (``sizeof_hdr`` 540, either byte
    order); False for anything else, unreadable files included."""
    name = str(path).lower()
    if not name.endswith((".nii", ".nii.gz")):
        return False
    try:
        with (gzip.open if name.endswith(".gz") else open)(path, "rb") as stream:
            head = stream.read(4)
    except (OSError, EOFError):
        return False
    return len(head) == 4 and NIFTI2_HEADER_BYTES in (int.from_bytes(head, "little"), int.from_bytes(head, "big"))


def read_nifti2_as_sitk(path: Path) -> sitk.Image:
    """The NIfTI-2 image at ``path`` as a SimpleITK image (LPS geometry; extra axes beyond the third get spacing
    1 and an identity direction). Raises nibabel's or numpy's errors for a damaged file."""
    image = nib.load(str(path))
    array = nifti_array(image)
    # nibabel's (x, y, z, …) → ITK's (…, z, y, x); isVector=False keeps a 4th axis an axis, as ITK's reader does
    result = sitk.GetImageFromArray(np.ascontiguousarray(array.T), isVector=False)
    lps = _RAS_TO_LPS @ np.asarray(image.affine, dtype=np.float64)[:3]
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    dims = array.ndim
    spatial = min(dims, 3)
    direction = np.eye(dims)
    direction[:spatial, :spatial] = (lps[:, :3] / spacing)[:spatial, :spatial]
    origin = np.zeros(dims)
    origin[:spatial] = lps[:spatial, 3]
    result.SetSpacing([*spacing[:spatial].tolist(), *[1.0] * (dims - spatial)])
    result.SetOrigin(origin.tolist())
    result.SetDirection(direction.ravel().tolist())
    return result
