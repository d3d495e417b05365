"""The fast NIfTI path (ISA-L gzip, layout-keeping loading) against nibabel and MONAI as oracles."""

from __future__ import annotations

import gzip
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import NibabelReader
from monai.transforms import EnsureChannelFirst, LoadImage

from segkit.data.host_loading import ToDeviceAsFloatd, load_channel_first
from segkit.io.gzip_codec import gunzip, gzip_compress
from segkit.io.image_io import write_like
from segkit.io.nifti_reader import NiftiReader, nifti_array


def _save(path: Path, array: np.ndarray, affine: np.ndarray | None = None, **header: float) -> Path:
    image = nib.Nifti1Image(array, np.diag([-0.8, -0.9, 2.5, 1.0]) if affine is None else affine)
    for key, value in header.items():
        image.header[key] = value
    nib.save(image, str(path))
    return path


def _volumes() -> dict[str, tuple[np.ndarray, dict]]:
    rng = np.random.default_rng(3)
    ct = rng.integers(-1024, 3000, (23, 17, 11), dtype=np.int16)
    return {
        "int16": (ct, {}),
        "float32 with NaN": (np.where(rng.random((9, 8, 7)) < 0.1, np.nan, rng.random((9, 8, 7))).astype(np.float32),
                             {}),
        "scaled int16": (ct, {"scl_slope": 0.5, "scl_inter": -1024.0}),
        "big-endian": (ct.astype(">i2"), {}),
        "uint16": (rng.integers(0, 60000, (12, 10, 6), dtype=np.uint16), {}),
        "4D": (rng.random((6, 5, 4, 2)).astype(np.float32), {}),
        "uint8 labels": (rng.integers(0, 4, (10, 10, 10), dtype=np.uint8), {}),
    }


@pytest.mark.parametrize("name", list(_volumes()))
def test_reader_equals_nibabel_value_for_value(tmp_path: Path, name: str) -> None:
    array, header = _volumes()[name]
    path = _save(tmp_path / "image.nii.gz", array, **header)
    expected = LoadImage(reader=NibabelReader(), image_only=True, dtype=None)(str(path))
    got = LoadImage(reader=NiftiReader(), image_only=True, dtype=None)(str(path))
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert torch.equal(torch.nan_to_num(got, nan=-7.0), torch.nan_to_num(expected, nan=-7.0))
    assert torch.equal(got.affine, expected.affine)
    assert sorted(got.meta) == sorted(expected.meta)
    direct = nifti_array(nib.load(str(path)))  # what evaluate and data check read
    assert direct.dtype == np.asanyarray(nib.load(str(path)).dataobj).dtype
    assert np.array_equal(direct, np.asanyarray(nib.load(str(path)).dataobj), equal_nan=True)


def test_reader_refuses_truncated_and_short_files(tmp_path: Path) -> None:
    path = _save(tmp_path / "image.nii.gz", np.arange(4000, dtype=np.int16).reshape(20, 20, 10))
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # the gzip stream ends early
    reader = NiftiReader()
    with pytest.raises(EOFError, match="end-of-stream"):
        reader.get_data(reader.read(str(path)))
    header = nib.Nifti1Image(np.zeros((20, 20, 10), np.int16), np.eye(4)).to_bytes()[:352 + 100]
    path.write_bytes(gzip.compress(header))  # a complete stream that holds too few voxels
    with pytest.raises(OSError, match="Expected 8000 bytes, got 100"):
        reader.get_data(reader.read(str(path)))


def test_a_reader_shared_between_threads_reads_each_threads_own_file(tmp_path: Path) -> None:
    paths = [_save(tmp_path / f"case{i}.nii.gz", np.full((64, 64, 32), i, np.int16)) for i in range(8)]
    loader = LoadImage(reader=NiftiReader(), image_only=True, dtype=None)  # one reader, as in MONAI datasets
    with ThreadPoolExecutor(4) as pool:
        values = list(pool.map(lambda p: int(loader(str(p)).unique().item()), paths * 3))
    assert values == list(range(8)) * 3


def test_gzip_codec_round_trips_through_the_standard_library(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 3, 200_000, dtype=np.uint8).tobytes()
    for level in (0, 1, 3, 6, 9):
        packed = gzip_compress(data, level)
        assert gzip.decompress(packed) == data and gunzip(packed) == data
    assert len(gzip_compress(data, 0)) > len(data)  # level 0 stores, as gzip's level 0 does
    two_members = gzip.compress(data[:1000]) + gzip.compress(data[1000:]) + b"\0" * 8
    assert gunzip(two_members) == data
    with pytest.raises(OSError, match="damaged"):
        gunzip(b"\x1f\x8b\x08\x00" + b"\xff" * 40)
    with pytest.raises(ValueError, match="0-9"):
        gzip_compress(data, 10)
    assert zlib.decompress(gzip_compress(data, 1), 31) == data


def test_layout_keeping_load_matches_monai_and_moves_to_float(tmp_path: Path) -> None:
    array = np.random.default_rng(1).integers(-1000, 1000, (21, 13, 9), dtype=np.int16)
    path = _save(tmp_path / "image.nii.gz", array)
    expected = EnsureChannelFirst()(LoadImage(reader=NibabelReader(), image_only=True)(str(path)))
    got = load_channel_first(str(path), [NiftiReader()])
    assert got.dtype == torch.int16 and not got.is_contiguous()  # file layout kept: no transposing copy
    assert torch.equal(got.float(), expected) and torch.equal(got.affine, expected.affine)
    assert got.meta["filename_or_obj"] == str(path) and list(got.meta["spatial_shape"]) == [21, 13, 9]
    moved = ToDeviceAsFloatd("image", torch.device("cpu"))({"image": got})["image"]
    assert moved.dtype == torch.float32 and moved.is_contiguous() and torch.equal(moved, expected)
    assert torch.equal(moved.affine, expected.affine)


def test_written_label_map_is_identical_from_c_and_f_ordered_arrays(tmp_path: Path) -> None:
    reference = _save(tmp_path / "ref.nii.gz", np.zeros((15, 12, 7), np.int16),
                      affine=np.array([[0, -0.9, 0, 5], [-0.8, 0, 0.1, 7], [0, 0, 2.5, -30], [0, 0, 0, 1]]))
    labels = np.random.default_rng(2).integers(0, 3, (15, 12, 7), dtype=np.uint8)
    write_like(labels, reference, tmp_path / "c.nii.gz")
    write_like(np.asfortranarray(labels), reference, tmp_path / "f.nii.gz")
    assert (tmp_path / "c.nii.gz").read_bytes() == (tmp_path / "f.nii.gz").read_bytes()
    back = nib.load(str(tmp_path / "f.nii.gz"))
    assert np.array_equal(np.asanyarray(back.dataobj), labels) and np.allclose(back.affine, nib.load(reference).affine)
