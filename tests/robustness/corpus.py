"""Generators of bad inputs for the robustness corpus: one small function per case.

Four families, each a dict from case name to generator:

* ``IMAGES``: ``make(target, good) -> Path`` writes one broken image file at ``target`` (derived from the
  good phantom ``good`` where useful) and returns the file an error message must name;
* ``DATASETS``: ``make(root) -> Path`` breaks case ``phantom_000`` of a copied MSD phantom dataset in place
  (or its ``dataset.json``) and returns the file an error message must name;
* ``CONFIGS``: ``make(path, base) -> Path`` writes a config file at ``path`` from the valid config dict
  ``base`` with one thing wrong, and returns it;
* ``CHECKPOINTS``: ``make(checkpoint, sentinel) -> Path`` damages a copied checkpoint directory in place and
  returns the path ``segkit predict --checkpoint`` is given. Files are replaced, never written through, so a
  copy made with hard links leaves the original intact. Pickle payloads create ``sentinel`` if ever
  unpickled, so a test can prove they never were.

Every generator is deterministic and writes only inside the folder it is given.
"""

from __future__ import annotations

import csv
import gzip
import json
import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
import torch
import yaml
from safetensors.torch import load_file, save_file

CASE = "phantom_000"
IMAGE_TR, LABEL_TR = f"imagesTr/{CASE}.nii.gz", f"labelsTr/{CASE}.nii.gz"
HUGE_DIMS = (100_000, 100_000, 100_000)


# ---------------------------------------------------------------------------------------------- helpers


def _nifti(good: Path) -> nib.Nifti1Image:
    return nib.load(str(good))


def _save_array(target: Path, array: np.ndarray, good: Path) -> Path:
    """``array`` saved as NIfTI with ``good``'s affine (header shape and type follow the array)."""
    nib.save(nib.Nifti1Image(array, _nifti(good).affine), str(target))
    return target


def _rewrite(path: Path, change: Callable[[sitk.Image], sitk.Image]) -> Path:
    sitk.WriteImage(change(sitk.ReadImage(str(path))), str(path), True)
    return path


def _with_voxels(dtype: type, values: list[float]) -> Callable[[sitk.Image], sitk.Image]:
    """Change: the first voxels set to ``values``, pixel type ``dtype``, geometry kept."""
    def change(image: sitk.Image) -> sitk.Image:
        array = sitk.GetArrayFromImage(image).astype(dtype)
        array.ravel()[: len(values)] = values
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(image)
        return out
    return change


def _manifest_edit(root: Path, change: Callable[[dict], None]) -> Path:
    path = root / "dataset.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return path


class Payload:
    """Pickles to a call of ``open(sentinel, "w")``: unpickling it creates the sentinel file."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


# ----------------------------------------------------------------------------------------------- images


def zero_bytes(target: Path, good: Path) -> Path:
    """An empty ``.nii.gz`` (a copy that never got its data)."""
    target.write_bytes(b"")
    return target


def truncated_gzip(target: Path, good: Path) -> Path:
    """The first half of a good ``.nii.gz``: the gzip stream ends early."""
    data = good.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def short_payload(target: Path, good: Path) -> Path:
    """A complete gzip stream whose NIfTI holds fewer pixel bytes than its header declares."""
    target.write_bytes(gzip.compress(gzip.decompress(good.read_bytes())[:2000]))
    return target


def not_an_image(target: Path, good: Path) -> Path:
    """A text file named ``.nii.gz``."""
    target.write_text("patient notes, not an image\n", encoding="utf-8")
    return target


def image_2d(target: Path, good: Path) -> Path:
    """One axial slice saved as a 2D NIfTI, for a 3D model."""
    array = np.asarray(_nifti(good).dataobj)
    return _save_array(target, np.ascontiguousarray(array[:, :, array.shape[2] // 2]), good)


def image_4d(target: Path, good: Path) -> Path:
    """Two volumes stacked on a 4th axis: two channels for a one-channel model."""
    array = np.asarray(_nifti(good).dataobj)
    return _save_array(target, np.stack([array, array], axis=-1), good)


def image_5d(target: Path, good: Path) -> Path:
    """A 5D NIfTI (x, y, z, 2, 2)."""
    array = np.asarray(_nifti(good).dataobj)
    return _save_array(target, np.stack([np.stack([array, array], -1)] * 2, -1), good)


def nan_inf(target: Path, good: Path) -> Path:
    """Float intensities with two NaN and one +Inf voxel."""
    array = np.asarray(_nifti(good).dataobj, dtype=np.float32).copy()
    array.ravel()[:3] = [np.nan, np.nan, np.inf]
    return _save_array(target, array, good)


def huge_header(target: Path, good: Path) -> Path:
    """A 2×2×2 NIfTI whose header claims 100000×100000×100000 voxels (a 2 PB volume) in a tiny file."""
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), dtype=np.int16), np.eye(4)), str(target))
    raw = bytearray(gzip.decompress(target.read_bytes()))
    dims = [min(d, 32767) for d in HUGE_DIMS]  # NIfTI-1 dims are int16: the largest it can declare per axis
    struct.pack_into("<8h", raw, 40, 3, *dims, 1, 1, 1, 1)  # dim[0..7] sits at byte 40 of the header
    target.write_bytes(gzip.compress(bytes(raw)))
    return target


def huge_header_nifti2(target: Path, good: Path) -> Path:
    """A NIfTI-2 file (int64 dims) claiming exactly ``HUGE_DIMS`` voxels, with 8 voxels of data."""
    nib.save(nib.Nifti2Image(np.zeros((2, 2, 2), dtype=np.int16), np.eye(4)), str(target))
    raw = bytearray(gzip.decompress(target.read_bytes()))
    struct.pack_into("<8q", raw, 16, 3, *HUGE_DIMS, 1, 1, 1, 1)  # NIfTI-2 dim[0..7]: int64 at byte 16
    target.write_bytes(gzip.compress(bytes(raw)))
    return target


IMAGES: dict[str, Callable[[Path, Path], Path]] = {
    "zero bytes": zero_bytes, "truncated gzip": truncated_gzip, "short payload": short_payload,
    "not an image": not_an_image, "2D image": image_2d, "4D image": image_4d, "5D image": image_5d,
    "NaN and Inf": nan_inf, "huge header": huge_header, "huge header nifti2": huge_header_nifti2,
}


# --------------------------------------------------------------------------------------------- datasets


def label_shape_mismatch(root: Path) -> Path:
    """The label loses 8 columns: 32×40×16 against the image's 40×40×16."""
    return _rewrite(root / LABEL_TR, lambda im: im[:32, :, :])


def label_spacing_mismatch(root: Path) -> Path:
    """The label's slice spacing is 0.5 mm larger than the image's."""
    def change(image: sitk.Image) -> sitk.Image:
        image.SetSpacing(tuple(np.add(image.GetSpacing(), (0, 0, 0.5))))
        return image
    return _rewrite(root / LABEL_TR, change)


def label_direction_mismatch(root: Path) -> Path:
    """The label's axes are rotated 0.01 rad about z against the image's."""
    def change(image: sitk.Image) -> sitk.Image:
        c, s = np.cos(0.01), np.sin(0.01)
        rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        image.SetDirection(tuple((rotation @ np.reshape(image.GetDirection(), (3, 3))).ravel()))
        return image
    return _rewrite(root / LABEL_TR, change)


def image_nan_inf(root: Path) -> Path:
    """The training image holds NaN and Inf intensities."""
    return _rewrite(root / IMAGE_TR, _with_voxels(np.float32, [np.nan, np.nan, np.inf]))


def float_label_fractions(root: Path) -> Path:
    """A float32 label holding 0.5 and 1.25."""
    return _rewrite(root / LABEL_TR, _with_voxels(np.float32, [0.5, 1.25]))


def label_outside_set(root: Path) -> Path:
    """Label values 7 and 9 where dataset.json declares 0..3."""
    return _rewrite(root / LABEL_TR, _with_voxels(np.uint8, [7, 9]))


def label_negative(root: Path) -> Path:
    """A signed label holding -1."""
    return _rewrite(root / LABEL_TR, _with_voxels(np.int16, [-1]))


def label_empty(root: Path) -> Path:
    """A label map of background only (a warning, not an error)."""
    return _rewrite(root / LABEL_TR, lambda image: image * 0)


def label_missing(root: Path) -> Path:
    """The label file listed in dataset.json is deleted."""
    (root / LABEL_TR).unlink()
    return root / "dataset.json"


def duplicate_case_id(root: Path) -> Path:
    """dataset.json lists the first training case twice."""
    return _manifest_edit(root, lambda m: m["training"].append(dict(m["training"][0])))


def escaping_image_path(root: Path) -> Path:
    """A training image given as ``../outside/phantom_000.nii.gz``, a real file outside the dataset folder."""
    outside = root.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / f"{CASE}.nii.gz").write_bytes((root / IMAGE_TR).read_bytes())
    return _manifest_edit(root, lambda m: m["training"][0].update(image=f"../outside/{CASE}.nii.gz"))


def absolute_label_path(root: Path) -> Path:
    """A training label given as an absolute path to a real file outside the dataset folder."""
    outside = root.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / f"{CASE}.nii.gz").write_bytes((root / LABEL_TR).read_bytes())
    return _manifest_edit(root, lambda m: m["training"][0].update(label=str(outside / f"{CASE}.nii.gz")))


DATASETS: dict[str, Callable[[Path], Path]] = {
    "label shape mismatch": label_shape_mismatch, "label spacing mismatch": label_spacing_mismatch,
    "label direction mismatch": label_direction_mismatch, "image NaN and Inf": image_nan_inf,
    "float label fractions": float_label_fractions, "label outside declared set": label_outside_set,
    "negative label": label_negative, "missing label file": label_missing, "duplicate case id": duplicate_case_id,
    "image path ../": escaping_image_path, "absolute label path": absolute_label_path,
}


def folder_csv(root: Path, msd: Path, case_ids: list[str]) -> Path:
    """A folder-layout dataset at ``root`` from the MSD phantoms at ``msd``: files copied under images/ and
    labels/ and a ``dataset.csv`` naming the cases ``case_ids`` (one row per training case, in order)."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rows = []
    for i, case_id in enumerate(case_ids):
        name = f"phantom_{i:03d}.nii.gz"
        (root / "images" / name).write_bytes((msd / "imagesTr" / name).read_bytes())
        (root / "labels" / name).write_bytes((msd / "labelsTr" / name).read_bytes())
        rows.append({"case_id": case_id, "image": f"images/{name}", "label": f"labels/{name}"})
    with (root / "dataset.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["case_id", "image", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return root / "dataset.csv"


# ---------------------------------------------------------------------------------------------- configs


def _yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _with(base: dict, section: str, key: str, value: object) -> dict:
    return {**base, section: {**base.get(section, {}), key: value}}


def unknown_key(path: Path, base: dict) -> Path:
    """``train.epoch`` (a typo of ``train.epochs``)."""
    return _yaml(path, _with(base, "train", "epoch", 3))


def wrong_type(path: Path, base: dict) -> Path:
    """``train.batch_size: many``."""
    return _yaml(path, _with(base, "train", "batch_size", "many"))


def negative_patch(path: Path, base: dict) -> Path:
    """``train.patch_size: [32, -32, 32]``."""
    return _yaml(path, _with(base, "train", "patch_size", [32, -32, 32]))


def zero_patch(path: Path, base: dict) -> Path:
    """``train.patch_size: [0, 32, 32]``."""
    return _yaml(path, _with(base, "train", "patch_size", [0, 32, 32]))


def unknown_encoder(path: Path, base: dict) -> Path:
    """``model.encoder: resnet35``."""
    return _yaml(path, _with(base, "model", "encoder", "resnet35"))


def python_tag(path: Path, base: dict, sentinel: Path | None = None) -> Path:
    """A ``!!python/object/apply:os.system`` tag that would create ``sentinel`` (if given) under yaml.load."""
    command = f"touch {sentinel}" if sentinel is not None else "true"
    path.write_text(yaml.safe_dump(base, sort_keys=False)
                    + f"seed: !!python/object/apply:os.system ['{command}']\n", encoding="utf-8")
    return path


CONFIGS: dict[str, Callable[[Path, dict], Path]] = {
    "unknown key": unknown_key, "wrong type": wrong_type, "negative patch size": negative_patch,
    "zero patch size": zero_patch, "unknown encoder": unknown_encoder,
}


# ------------------------------------------------------------------------------------------ checkpoints


def _config_edit(checkpoint: Path, section: str, key: str, value: object) -> Path:
    path = checkpoint / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config[section][key] = value
    path.unlink()  # a new file: the copy may share the original's inode (hard link)
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return checkpoint


def two_channel_checkpoint(checkpoint: Path, sentinel: Path) -> Path:
    """A sound two-channel checkpoint (config and stem weights), for one-channel inputs."""
    weights_path = checkpoint / "weights.safetensors"
    weights = load_file(str(weights_path))
    stem = next(name for name, tensor in weights.items() if tensor.ndim == 5 and tensor.shape[1] == 1)
    weights[stem] = torch.cat([weights[stem], weights[stem]], dim=1)
    weights_path.unlink()  # a new file: the copy may share the original's inode (hard link)
    save_file(weights, str(weights_path))
    return _config_edit(checkpoint, "model", "in_channels", 2)


def other_architecture(checkpoint: Path, sentinel: Path) -> Path:
    """The config names resnet34, the weights are resnet18's."""
    return _config_edit(checkpoint, "model", "encoder", "resnet34")


def unknown_encoder_checkpoint(checkpoint: Path, sentinel: Path) -> Path:
    """The config names an encoder no registry knows."""
    return _config_edit(checkpoint, "model", "encoder", "resnet9000")


def pickled_safetensors(checkpoint: Path, sentinel: Path) -> Path:
    """``weights.safetensors`` is really a torch pickle carrying a payload."""
    (checkpoint / "weights.safetensors").unlink()  # a new file, as in _config_edit
    torch.save({"encoder.conv1.weight": Payload(sentinel)}, checkpoint / "weights.safetensors")
    return checkpoint


def pickle_pth(checkpoint: Path, sentinel: Path) -> Path:
    """A bare ``model.pth`` pickle with a payload, given in place of a checkpoint directory."""
    path = checkpoint.parent / "model.pth"
    with path.open("wb") as handle:
        pickle.dump({"state_dict": Payload(sentinel)}, handle)
    return path


CHECKPOINTS: dict[str, Callable[[Path, Path], Path]] = {
    "two-channel checkpoint": two_channel_checkpoint, "other architecture": other_architecture,
    "unknown encoder in checkpoint": unknown_encoder_checkpoint, "pickled weights.safetensors": pickled_safetensors,
    "pickle .pth": pickle_pth,
}


def pickled_resume(last: Path, sentinel: Path) -> Path:
    """``resume.pt`` of a run's ``last/`` checkpoint (a link) replaced by a torch pickle with a payload."""
    target = last.resolve() / "resume.pt"
    target.unlink()
    torch.save({"optimizer": Payload(sentinel), "step": 1}, target)
    return last / "resume.pt"
