"""The disk cache: second epoch reads no image file; changed sources or settings are re-read."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel
import pytest
import torch

from segkit.config import load_config
from segkit.data.index import load_dataset
from segkit.data.loaders import _records
from segkit.data.transforms import disk_cached_training_transforms, validation_transforms


@pytest.fixture
def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    original = nibabel.load

    def counting(filename, *args, **kwargs):
        reads.append(str(filename))
        return original(filename, *args, **kwargs)

    monkeypatch.setattr(nibabel, "load", counting)
    return reads


def _config(root: Path, cache_dir: Path, *extra: str):
    return load_config("demo_unet_resnet34.yaml", [f"data.root={root}", "data.spacing=[1.2,1.2,2.5]",
                                                   "data.cache=disk", f"data.cache_dir={cache_dir}",
                                                   "train.patch_size=[32,32,16]", *extra])


def test_second_epoch_reads_no_image_and_arrays_match(tiny_dataset: Path, tmp_path: Path,
                                                      count_reads: list[str]) -> None:
    cfg = _config(tiny_dataset, tmp_path / "cache")
    records = _records(load_dataset(tiny_dataset, "msd").training[:2])
    cached = validation_transforms(cfg.data, tmp_path / "cache")
    first = [cached(r) for r in records]
    assert len(count_reads) == 4  # image + label of two cases
    second = [cached(r) for r in records]
    assert len(count_reads) == 4  # served from raw arrays
    fresh = validation_transforms(cfg.data)(records[0])  # uncached: reads the two files of case 0
    assert len(count_reads) == 6
    for key in ("image", "label"):
        torch.testing.assert_close(second[0][key].as_tensor(), fresh[key].as_tensor())
        torch.testing.assert_close(second[0][key].affine, fresh[key].affine.to(second[0][key].affine.dtype))
        torch.testing.assert_close(first[0][key].as_tensor(), second[0][key].as_tensor())
    patches = disk_cached_training_transforms(cfg, tmp_path / "cache")
    assert patches(records[0])[0]["image"].shape == (1, 32, 32, 16) and len(count_reads) == 6


def test_changed_source_or_settings_are_read_again(tiny_dataset: Path, tmp_path: Path,
                                                   count_reads: list[str]) -> None:
    copy = tmp_path / "data"
    copy.mkdir()
    case = load_dataset(tiny_dataset, "msd").training[0]
    image, label = copy / "image.nii.gz", copy / "label.nii.gz"
    image.write_bytes(case.image.read_bytes())
    label.write_bytes(case.label.read_bytes())
    record = {"image": str(image), "label": str(label), "case_id": "c"}
    cfg = _config(tiny_dataset, tmp_path / "cache")
    validation_transforms(cfg.data, tmp_path / "cache")(record)
    validation_transforms(cfg.data, tmp_path / "cache")(record)
    assert len(count_reads) == 2
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    validation_transforms(cfg.data, tmp_path / "cache")(record)
    assert len(count_reads) == 4
    other = _config(tiny_dataset, tmp_path / "cache", "data.window=[-100,200]")
    validation_transforms(other.data, tmp_path / "cache")(record)
    assert len(count_reads) == 6


def test_a_2d_reading_of_a_flat_volume_is_not_served_its_3d_cache(tmp_path: Path) -> None:
    """A NIfTI of shape (X, Y, 1) preprocessed as a volume (data.image_dims 3) and as a 2D image (2) gives arrays of
    different shapes; the cache used to key both alike and served the 4D array to 2D training."""
    import numpy as np

    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    rng = np.random.default_rng(0)
    image, label = tmp_path / "image.nii.gz", tmp_path / "label.nii.gz"
    nibabel.save(nibabel.Nifti1Image(rng.normal(0, 100, (12, 10, 1)).astype(np.float32), affine), image)
    nibabel.save(nibabel.Nifti1Image((rng.random((12, 10, 1)) > 0.5).astype(np.uint8), affine), label)
    record = {"image": str(image), "label": str(label), "case_id": "flat"}
    common = ["data.spacing=null", "data.cache=disk", f"data.cache_dir={tmp_path / 'cache'}"]
    volume = load_config("demo_unet_resnet34.yaml", common)
    flat = load_config("demo_unet_resnet34.yaml", [*common, "data.image_dims=2", "model.spatial_dims=2",
                                                   "train.patch_size=[32,32]", "infer.roi_size=[32,32]"])
    assert validation_transforms(volume.data, tmp_path / "cache")(record)["image"].shape == (1, 12, 10, 1)
    served = validation_transforms(flat.data, tmp_path / "cache")(record)
    assert served["image"].shape == (1, 12, 10) and served["label"].shape == (1, 12, 10)


def test_a_memory_cache_larger_than_the_memory_available_is_refused_with_the_disk_cache_named() -> None:
    """``data.cache: memory`` keeps every preprocessed training volume (float32 image, uint8 label) in each process:
    200 CT cases of 512×512×300 at 0.8 mm would fill over 70 GiB after an hour of silent decoding. The size is
    estimated from the fingerprint's shapes and spacings, printed, and refused where it passes 80% of the memory
    available."""
    from segkit.config import DataCfg
    from segkit.data.cache import memory_cache_plan, preprocessed_bytes
    from segkit.errors import ConfigError

    ct = [((512, 512, 300), (0.8, 0.8, 1.0))] * 200
    assert preprocessed_bytes(ct[:1], (1.6, 1.6, 2.0), 1) == 256 * 256 * 150 * 5  # resampled, 4 + 1 bytes a voxel
    assert preprocessed_bytes(ct[:1], None, 2) == 512 * 512 * 300 * 9
    data = DataCfg(spacing=(0.8, 0.8, 1.0), cache="memory")
    with pytest.raises(ConfigError, match=r"data\.cache: memory would keep about 73\.2 GiB .*200 cases.*"
                                          r"16\.0 GiB of memory is available — set data\.cache: disk"):
        memory_cache_plan(data, ct, 1, available=16 * 2**30)
    line = memory_cache_plan(data, ct[:4], 1, processes=2, available=16 * 2**30)
    assert line is not None and "about 2.9 GiB" in line and "× 2 processes" in line
    assert memory_cache_plan(data.model_copy(update={"cache": "disk"}), ct, 1, available=2**30) is None
    assert memory_cache_plan(data, ct, 1, available=None) is not None  # unknown memory: said, not refused
