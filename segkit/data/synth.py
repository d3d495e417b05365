"""Seeded synthetic CT-like phantoms written as a Medical Segmentation Decathlon dataset.

Each case: a body with fat rim, a spine (posterior) and smooth background texture; a large
deformed organ (label 1, right anterior), a thin tortuous vessel (label 2, left, in front of the
spine) and a few small hypodense lesions inside the organ (label 3); Gaussian noise and a smooth
bias field; anisotropic spacing; identity (LPS), RAS-flipped or oblique directions.

The anatomy is drawn once in a canonical patient frame (voxel axes along L, P, S) and then stored in
the case's voxel order, so every case shows the same anatomy in patient (world) space whatever its
direction; an oblique case is right up to its small rotation. Same seed → byte-identical files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import zoom

from segkit.data.synth_files import case_files, clear_previous, planned_files, write_record
from segkit.errors import SegkitError
from segkit.io.atomic import atomic_write_text, own_folder
from segkit.io.image_io import write_sitk_image

LABELS = {"0": "background", "1": "organ", "2": "vessel", "3": "lesion"}
MAX_CASES = 10_000  # a list of 10**11 planned files alone would fill the memory
MAX_VOXELS = 2**27  # per phantom (e.g. 512×512×512): generating one takes ~34 bytes a voxel, ~4.5 GB here
HU = {"air": -1000.0, "fat": -90.0, "tissue": 40.0, "bone": 650.0, "organ": 110.0, "vessel": 210.0, "lesion": -10.0}


@dataclass(frozen=True)
class Style:
    """Which structures are labelled (``classes``: 1 organ, 2 + vessel, 3 + lesions) and how hard the
    images are: ``difficulty`` 0..1 raises noise and bias field and lowers the organ's and lesions'
    contrast to the surrounding tissue (0 gives the demo phantoms)."""

    classes: int = 3
    difficulty: float = 0.0

    @property
    def hu(self) -> dict[str, float]:
        """Tissue intensities at this difficulty."""
        d = self.difficulty
        return {**HU, "organ": HU["organ"] - 45.0 * d, "vessel": HU["vessel"] - 90.0 * d,
                "lesion": HU["lesion"] + 60.0 * d}

    @property
    def noise_sd(self) -> float:
        """Gaussian noise (HU)."""
        return 12.0 + 28.0 * self.difficulty

    @property
    def bias_amplitude(self) -> float:
        """Relative amplitude of the smooth multiplicative bias field."""
        return 0.03 + 0.02 * self.difficulty

    @property
    def labels(self) -> dict[str, str]:
        """MSD label names for the labelled structures."""
        return {k: v for k, v in LABELS.items() if int(k) <= self.classes}


@dataclass(frozen=True)
class Geometry:
    """Physical grid of one case (SimpleITK conventions: LPS, x-y-z order)."""

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], nodes: int = 4) -> np.ndarray:
    """A smooth random field in about [-1, 1] (cubic interpolation of a coarse grid)."""
    coarse = rng.uniform(-1.0, 1.0, size=(nodes,) * len(shape))
    return zoom(coarse, [s / nodes for s in shape], order=3, mode="nearest")


def _rotation(ax: float, az: float) -> np.ndarray:
    cx, sx, cz, sz = np.cos(ax), np.sin(ax), np.cos(az), np.sin(az)
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rot_z @ rot_x


def _geometry(rng: np.random.Generator, index: int, size_dhw: tuple[int, int, int]) -> Geometry:
    in_plane = round(float(rng.uniform(0.75, 0.95)), 3)
    spacing = (in_plane, in_plane, round(float(rng.uniform(2.0, 3.0)), 2))
    kind = index % 3
    direction = np.eye(3) if kind == 0 else np.diag([-1.0, -1.0, 1.0])  # LPS, RAS
    if kind == 2:
        direction = _rotation(np.radians(rng.uniform(5, 12)), np.radians(rng.uniform(10, 25))) @ direction
    extent = np.array(spacing) * np.array(size_dhw[::-1])
    origin = -direction @ (extent / 2) + rng.uniform(-30, 30, size=3)
    return Geometry(spacing, tuple(np.round(origin, 3)), tuple(np.round(direction.ravel(), 9)))


def _stored_axes(direction: tuple[float, ...]) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """For each stored voxel axis (x, y, z), the canonical (L, P, S) axis nearest to it and whether it runs
    the other way: the stored array is the canonical one permuted and flipped to match."""
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)  # column j: world direction of voxel axis j
    axes = tuple(int(np.argmax(np.abs(matrix[:, j]))) for j in range(3))
    if sorted(axes) != [0, 1, 2]:
        raise ValueError(f"direction {direction} has no nearest axis order")
    return axes, tuple(bool(matrix[axes[j], j] < 0) for j in range(3))


def _to_stored(canonical: np.ndarray, direction: tuple[float, ...]) -> np.ndarray:
    """The canonical (z, y, x) = (S, P, L) array in the stored voxel order of ``direction``."""
    axes, flips = _stored_axes(direction)
    # numpy axis n holds voxel axis 2 - n
    stored = np.transpose(canonical, [2 - axes[2 - n] for n in range(3)])
    return np.flip(stored, [n for n in range(3) if flips[2 - n]])


def _canonical_grid(size_dhw: tuple[int, int, int], spacing_xyz: tuple[float, ...],
                    direction: tuple[float, ...]) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Size (z, y, x) and spacing (x, y, z) of the canonical grid that ``_to_stored`` turns into the stored one."""
    axes, _ = _stored_axes(direction)
    size_xyz, spacing = [0, 0, 0], [0.0, 0.0, 0.0]
    for j, axis in enumerate(axes):
        size_xyz[axis], spacing[axis] = size_dhw[2 - j], spacing_xyz[j]
    return (size_xyz[2], size_xyz[1], size_xyz[0]), (spacing[0], spacing[1], spacing[2])


def _grid_mm(size_dhw: tuple[int, int, int], spacing_xyz: tuple[float, float, float]) -> tuple[np.ndarray, ...]:
    """Centred voxel coordinates in mm, broadcastable as (z, y, x)."""
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(size_dhw, spacing_xyz[::-1], strict=True)]
    return tuple(np.ix_(*axes))


def _anatomy(rng: np.random.Generator, size_dhw, spacing, style: Style) -> tuple[np.ndarray, np.ndarray]:
    """Image and label in the canonical frame: voxel +x is patient left, +y posterior, +z superior (LPS)."""
    hu = style.hu
    z, y, x = _grid_mm(size_dhw, spacing)
    half = np.array(size_dhw) * np.array(spacing[::-1]) / 2  # z, y, x half-extents in mm
    image = np.full(size_dhw, hu["air"], dtype=np.float32)
    label = np.zeros(size_dhw, dtype=np.uint8)
    body_r = np.sqrt((x / (0.92 * half[2])) ** 2 + (y / (0.80 * half[1])) ** 2) + 0 * z
    image[body_r < 1.0] = hu["fat"]
    image[body_r < 0.9] = hu["tissue"]
    image += np.where(body_r < 0.9, 18.0 * _smooth_field(rng, size_dhw, 5), 0.0)
    spine = np.sqrt(x**2 + (y - 0.55 * half[1]) ** 2) + 0 * z < 0.12 * half[2]  # posterior
    image[spine] = hu["bone"]

    centre = rng.uniform([-0.15, -0.25, -0.30], [0.15, -0.10, -0.15]) * half  # right anterior (z, y, x)
    radii = half * rng.uniform([0.55, 0.35, 0.35], [0.75, 0.45, 0.45])
    organ_r = np.sqrt(((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
                      + ((x - centre[2]) / radii[2]) ** 2)
    organ = (organ_r + 0.15 * _smooth_field(rng, size_dhw) < 1.0) & (body_r < 0.9)
    image[organ] = hu["organ"] + 8.0 * _smooth_field(rng, size_dhw, 6)[organ]
    label[organ] = 1
    _add_lesions(rng, image, label, (z, y, x), organ, spacing, hu["lesion"], style.classes >= 3)
    _add_vessel(rng, image, label, (z, y, x), half, hu["vessel"], style.classes >= 2)
    return image, label


def _add_vessel(rng, image, label, grid, half, intensity: float, paint: bool) -> None:
    """A tube along z, left of the midline in front of the spine, meandering about that mean course."""
    z, y, x = grid
    radius = rng.uniform(2.5, 3.5)
    phase, period = rng.uniform(0, 2 * np.pi, size=2), rng.uniform(1.2, 2.0, size=2) * half[0] * 2
    wave_x = np.sin(2 * np.pi * z / period[0] + phase[0])
    wave_y = np.cos(2 * np.pi * z / period[1] + phase[1])
    cx = rng.uniform(0.15, 0.30) * half[2] + 0.25 * half[2] * (wave_x - wave_x.mean())
    cy = rng.uniform(0.10, 0.20) * half[1] + 0.25 * half[1] * (wave_y - wave_y.mean())
    vessel = (x - cx) ** 2 + (y - cy) ** 2 < radius**2
    if paint:  # the random draws above happen either way, so other structures stay the same
        image[vessel] = intensity
        label[vessel] = 2


def _add_lesions(rng, image, label, grid, organ, spacing, intensity: float, paint: bool) -> None:
    z, y, x = grid
    # centres in the organ's right anterior part (about 10-45 degrees anterior of the patient's right), so the
    # lesions stay right of and anterior to the body's centre also when an oblique direction rotates them
    candidates = np.argwhere(organ & (x < 0) & (-y > -0.2 * x) & (-y < -x))
    if not len(candidates):  # a grid too coarse to hold the organ (an axis of 2 voxels) holds no lesion either
        return
    wanted = int(rng.integers(2, 5))
    placed: list[tuple[np.ndarray, float]] = []
    for _ in range(200):
        if len(placed) == wanted:
            break
        idx = candidates[rng.integers(len(candidates))]
        centre = np.array([z.ravel()[idx[0]], y.ravel()[idx[1]], x.ravel()[idx[2]]])
        radius = float(rng.uniform(4.0, 7.0))
        if any(np.linalg.norm(centre - c) < radius + r + 3 for c, r in placed):
            continue
        ball = ((z - centre[0]) / max(radius, spacing[2])) ** 2 + ((y - centre[1]) / radius) ** 2 \
            + ((x - centre[2]) / radius) ** 2 < 1.0
        if np.count_nonzero(ball & ~organ) > 0:
            continue  # lesions stay inside the organ
        placed.append((centre, radius))
        shift = 5.0 * rng.standard_normal()
        if paint:
            image[ball] = intensity + shift
            label[ball] = 3


def make_case(seed: int, index: int, size_dhw: tuple[int, int, int],
              style: Style = Style()) -> tuple[sitk.Image, sitk.Image]:
    """One phantom: an int16 CT-like image and its uint8 label map, with geometry set."""
    rng = np.random.default_rng([seed, index])
    geometry = _geometry(rng, index, size_dhw)
    shape, spacing = _canonical_grid(size_dhw, geometry.spacing, geometry.direction)
    image, label = _anatomy(rng, shape, spacing, style)
    bias = 1.0 + style.bias_amplitude * _smooth_field(rng, shape, 3)
    image = (image - HU["air"]) * bias + HU["air"] + rng.normal(0.0, style.noise_sd, size=shape)
    image = np.clip(np.rint(image), -1024, 3071).astype(np.int16)
    out = []
    for array in (image, label):  # the same reordering for both, so the label stays on the image
        itk_image = sitk.GetImageFromArray(np.ascontiguousarray(_to_stored(array, geometry.direction)))
        itk_image.SetSpacing(geometry.spacing)
        itk_image.SetOrigin(geometry.origin)
        itk_image.SetDirection(geometry.direction)
        out.append(itk_image)
    return out[0], out[1]


def extra_channel(image: sitk.Image, seed: int, index: int, channel: int) -> sitk.Image:
    """A second modality of the same anatomy: a different intensity mapping and its own noise."""
    rng = np.random.default_rng([seed, index, channel])
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    remapped = 400.0 - 0.8 * array + rng.normal(0.0, 15.0, size=array.shape)  # inverted contrast
    out = sitk.GetImageFromArray(np.clip(np.rint(remapped), -1024, 3071).astype(np.int16))
    out.CopyInformation(image)
    return out


def _manifest(layout: str, seed: int, channels: int, labels: dict[str, str], training: list, test: list) -> dict:
    common = {"name": "segkit-phantoms", "description": f"synthetic CT-like phantoms, seed {seed}"}
    if layout == "nnunet":
        names = {str(c): "CT" if c == 0 else f"CT_inverted_{c}" for c in range(channels)}
        return {**common, "channel_names": names, "labels": {v: int(k) for k, v in labels.items()},
                "numTraining": len(training), "file_ending": ".nii.gz"}
    return {**common, "tensorImageSize": "3D", "modality": {"0": "CT"}, "labels": labels,
            "numTraining": len(training), "numTest": len(test), "training": training, "test": test}


def _write_case(out: Path, split: str, name: str, images: list[sitk.Image], label: sitk.Image, layout: str) -> None:
    image_files, label_file = case_files(name, split, layout, len(images))
    for image, file_name in zip(images, image_files, strict=True):
        write_sitk_image(image, out / file_name)
    write_sitk_image(label, out / label_file)


def slice_2d(image: sitk.Image, label: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """A 2D case: the axial slice with the most lesion voxels, intensities windowed to uint8 (-200..300 HU).

    The slice is taken in the nearest LPS voxel order, i.e. the radiological view (patient's right on the
    image's left, anterior at the top), so every case shows its anatomy the same way up whatever its
    stored direction."""
    image, label = sitk.DICOMOrient(image, "LPS"), sitk.DICOMOrient(label, "LPS")
    array, labels = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(label)
    z = int(np.argmax((labels == labels.max()).sum(axis=(1, 2))))
    grey = np.clip(np.rint((array[z].astype(np.float32) + 200.0) * 255.0 / 500.0), 0, 255).astype(np.uint8)
    return sitk.GetImageFromArray(grey), sitk.GetImageFromArray(labels[z])


def _write_2d(out: Path, split: str, name: str, image: sitk.Image, label: sitk.Image) -> None:
    (image_file,), label_file = case_files(name, split, "folder", 1)
    image_2d, label_2d = slice_2d(image, label)
    write_sitk_image(image_2d, out / image_file)
    write_sitk_image(label_2d, out / label_file)


def write_2d_dataset(out: Path, splits: list[tuple[str, str]], seed: int, size_dhw: tuple[int, int, int],
                     style: Style) -> dict:
    """2D phantoms as PNG in the folder layout (images/, labels/; held-out in imagesTs/, labelsTs/)."""
    for sub in ("images", "labels", "imagesTs", "labelsTs"):
        own_folder(out / sub)  # a link planted in its place is removed, never written through
    for index, (name, split) in enumerate(splits):
        image, label = make_case(seed, index, size_dhw, style)
        _write_2d(out, split, name, image, label)
    n_test = sum(split == "Ts" for _, split in splits)
    return {"numTraining": len(splits) - n_test, "numTest": n_test, "labels": style.labels}


def _write_3d_dataset(out: Path, splits: list[tuple[str, str]], seed: int, size_dhw: tuple[int, int, int],
                      layout: str, channels: int, style: Style) -> dict:
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        own_folder(out / sub)  # a link planted in its place is removed, never written through
    training, test = [], []
    for index, (name, split) in enumerate(splits):
        image, label = make_case(seed, index, size_dhw, style)
        images = [image] + [extra_channel(image, seed, index, c) for c in range(1, channels)]
        _write_case(out, split, name, images, label, layout)
        if split == "Tr":
            training.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
        else:
            test.append(f"./imagesTs/{name}.nii.gz")
    manifest = _manifest(layout, seed, channels, style.labels, training, test)
    atomic_write_text(out / "dataset.json", json.dumps(manifest, indent=2) + "\n")
    return {"numTraining": len(training), "numTest": len(test), **manifest}


def _refuse_bad_size(cases: int, size_dhw: tuple[int, int, int]) -> None:
    """Refuse more cases or larger phantoms than synth can plan and hold in memory, before any file is written."""
    if cases > MAX_CASES:
        raise SegkitError(f"--cases {cases}: at most {MAX_CASES} phantoms; choose fewer")
    voxels = int(np.prod([int(n) for n in size_dhw], dtype=object))
    if voxels > MAX_VOXELS:
        shown = " ".join(str(n) for n in size_dhw)
        raise SegkitError(f"--size {shown}: {voxels:.3g} voxels per phantom, over synth's limit of 2**27 (e.g. "
                          "512 512 512); choose a smaller --size")


def _refuse_bad_options(cases: int, layout: str, channels: int, dims: int) -> None:
    if cases < 2:
        raise SegkitError(f"--cases {cases}: need at least 2 cases (one to train, one held out)")
    if dims == 2 and (layout != "folder" or channels > 1):
        raise SegkitError("--dims 2 writes single-channel PNG files in the folder layout; use --format folder")
    if dims == 3 and layout == "folder":
        raise SegkitError("--format folder is for --dims 2; 3D phantoms are written as msd or nnunet")
    if channels > 1 and layout != "nnunet":
        raise SegkitError(f"--channels {channels}: several channels need --format nnunet (one file per channel)")


def _prepare_out(out: Path, overwrite: bool, files: list[str]) -> None:
    """An empty ``out`` (an earlier synth's files removed with ``overwrite``) holding the record of ``files``."""
    if out.exists() and not out.is_dir():
        raise SegkitError(f"--out {out}: a file, not a folder; choose a new or empty folder for the dataset")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise SegkitError(f"{out} is not empty; choose an empty --out folder or pass --overwrite")
        clear_previous(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a file where a parent folder should be
        raise SegkitError(f"--out {out}: cannot create the folder ({exc.strerror}); choose another path") from None
    write_record(out, files)


def write_dataset(out: Path, cases: int, seed: int, size_dhw: tuple[int, int, int] = (32, 96, 96),
                  test_cases: int | None = None, overwrite: bool = False, layout: str = "msd",
                  channels: int = 1, style: Style = Style(), dims: int = 3) -> dict:
    """Write a phantom dataset in the MSD or nnU-Net v2 raw layout (held-out cases in imagesTs/labelsTs), or
    with ``dims`` 2 as PNG in the folder layout.

    A non-empty ``out`` is refused unless ``overwrite``, so no user file is replaced by accident; with
    ``overwrite`` the files an earlier synth recorded there are removed first (other files stay, and a
    folder without synth's record is refused). Several channels need the nnU-Net layout (one file per
    channel).
    """
    _refuse_bad_options(cases, layout, channels, dims)
    _refuse_bad_size(cases, size_dhw)
    n_test = min(max(test_cases if test_cases is not None else cases // 4, 1), cases - 1)
    splits = [(f"phantom_{i:03d}", "Ts" if i >= cases - n_test else "Tr") for i in range(cases)]
    _prepare_out(out, overwrite, planned_files(splits, layout, channels))
    if dims == 2:
        return write_2d_dataset(out, splits, seed, size_dhw, style)
    return _write_3d_dataset(out, splits, seed, size_dhw, layout, channels, style)
