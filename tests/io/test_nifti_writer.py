"""Label maps written from a header and a view of the voxels are the files nibabel's ``to_bytes`` gives."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from segkit.io.gzip_codec import gunzip, gzip_compress, gzip_compress_parts
from segkit.io.image_io import write_like
from segkit.io.nifti_writer import nifti_parts

_c, _s = np.cos(0.3), np.sin(0.3)
OBLIQUE = np.eye(4)
OBLIQUE[:3, :3] = np.array([[_c, -_s, 0], [_s, _c, 0], [0, 0, 1]]) @ np.diag([0.76, 0.81, 2.4])
OBLIQUE[:3, 3] = [-120.0, 80.5, 33.0]
REFERENCES = {  # affine, qform code, sform code, header dtype and byte order, with an extension
    "ras": (np.diag([0.8, 0.9, 2.5, 1.0]), 1, 1, "<i2", False),
    "lps, sform only": (np.diag([-0.7, -0.7, 3.0, 1.0]), 0, 2, "<i2", False),
    "oblique, qform only": (OBLIQUE, 1, 0, "<f4", False),
    "big-endian": (np.diag([1.2, 1.2, 5.0, 1.0]), 1, 1, ">i2", False),
    "with an extension": (OBLIQUE, 2, 4, "<i2", True),
    "no transform coded": (np.diag([0.9, 0.9, 2.0, 1.0]), 0, 0, "<i2", False),  # nibabel codes one on writing
}
SHAPE = (13, 11, 6)


def _reference(path: Path, name: str) -> Path:
    affine, qform_code, sform_code, dtype, extension = REFERENCES[name]
    image = nib.Nifti1Image(np.zeros(SHAPE, dtype), affine)
    image.set_qform(affine, code=qform_code)
    image.set_sform(affine, code=sform_code)
    if extension:
        image.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"segkit test extension"))
    nib.save(image, str(path))
    return path


@pytest.mark.parametrize("name", list(REFERENCES))
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_written_file_is_nibabels_to_bytes_of_the_same_image(tmp_path: Path, name: str, dtype: type,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    reference = _reference(tmp_path / "ref.nii.gz", name)
    labels = np.asfortranarray(np.random.default_rng(1).integers(0, 300 if dtype == np.uint16 else 4, SHAPE)
                               .astype(dtype))
    with monkeypatch.context() as patch:  # an F-ordered label map (as the predictor gives) is never copied
        patch.setattr(nib.Nifti1Image, "to_bytes", lambda self: pytest.fail("copied through to_bytes"))
        write_like(labels, reference, tmp_path / "fast.nii.gz")
        write_like(labels, reference, tmp_path / "fast.nii")
    # a C-ordered copy cannot go out as it lies in memory: that file is nibabel's own to_bytes
    write_like(np.ascontiguousarray(labels), reference, tmp_path / "nibabel.nii.gz")
    expected = gunzip((tmp_path / "nibabel.nii.gz").read_bytes())
    assert gunzip((tmp_path / "fast.nii.gz").read_bytes()) == expected
    assert (tmp_path / "fast.nii").read_bytes() == expected
    back = nib.load(str(tmp_path / "fast.nii.gz"))
    assert np.array_equal(np.asanyarray(back.dataobj), labels) and back.get_data_dtype() == dtype
    assert (back.dataobj.slope, back.dataobj.inter) == (1.0, 0.0)  # nibabel moves them from the header to here
    assert len(back.header.extensions) == int(REFERENCES[name][4])


def test_parts_join_to_to_bytes_and_fall_back_where_nibabel_converts() -> None:
    labels = np.asfortranarray(np.random.default_rng(2).integers(0, 3, SHAPE).astype(np.uint8))
    image = nib.Nifti1Image(labels, OBLIQUE)
    image.header["scl_slope"], image.header["scl_inter"] = 1.0, 0.0
    parts = nifti_parts(image, labels)
    assert len(parts) == 2 and isinstance(parts[1], memoryview)
    assert b"".join(parts) == image.to_bytes()
    image.header.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)  # the header no longer holds the image's affine:
    assert b"".join(nifti_parts(image, labels)) == image.to_bytes()  # nibabel puts it back on writing
    scaled = nib.Nifti1Image(labels, OBLIQUE)  # slope and intercept unset: nibabel works out the scaling
    assert nifti_parts(scaled, labels) == [scaled.to_bytes()]
    swapped = nib.Nifti1Image(labels.astype(">u2"), OBLIQUE)
    swapped.set_data_dtype("<u2")
    swapped.header["scl_slope"], swapped.header["scl_inter"] = 1.0, 0.0
    assert len(nifti_parts(swapped, np.asfortranarray(labels.astype(">u2")))) == 1  # byte order differs


@pytest.mark.parametrize("level", [0, 1, 3, 6, 9])
def test_compressing_parts_gives_the_bytes_of_their_concatenation(level: int) -> None:
    data = np.random.default_rng(3).integers(0, 3, 200_000, dtype=np.uint8).tobytes()
    parts = [data[:352], memoryview(data)[352:]]
    assert gunzip(gzip_compress_parts(parts, level)) == data == gunzip(gzip_compress(data, level))
    with pytest.raises(ValueError, match="0-9"):
        gzip_compress_parts(parts, 10)


def test_a_nifti2_reference_gives_a_nifti2_label_map(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A prediction keeps its input's NIfTI version; converting a NIfTI-2 header to NIfTI-1 also made nibabel log
    'sizeof_hdr should be 348' on stderr."""
    image = nib.Nifti2Image(np.zeros(SHAPE, "<i2"), OBLIQUE)
    image.set_qform(OBLIQUE, code=1)
    image.set_sform(OBLIQUE, code=2)
    nib.save(image, str(tmp_path / "ref.nii.gz"))
    labels = np.asfortranarray(np.random.default_rng(2).integers(0, 4, SHAPE).astype(np.uint8))
    with caplog.at_level("DEBUG"):
        write_like(labels, tmp_path / "ref.nii.gz", tmp_path / "labels.nii.gz")
    assert not caplog.records
    back = nib.load(str(tmp_path / "labels.nii.gz"))
    assert isinstance(back, nib.Nifti2Image) and np.array_equal(np.asanyarray(back.dataobj), labels)
    assert np.allclose(back.affine, OBLIQUE, atol=1e-6)
    assert (int(back.header["qform_code"]), int(back.header["sform_code"])) == (1, 2)
    write_like(np.ascontiguousarray(labels), tmp_path / "ref.nii.gz", tmp_path / "nibabel.nii.gz")
    assert gunzip((tmp_path / "labels.nii.gz").read_bytes()) == gunzip((tmp_path / "nibabel.nii.gz").read_bytes())
