"""``segkit data convert``: the cases of any dataset segkit reads, written as an nnU-Net v2 raw dataset.

Each case becomes ``images{Tr,Ts}/{case}_{c:04d}.nii.gz`` (one file per channel: a 4D image is split along its
last axis, a colour image by component) and ``labels{Tr,Ts}/{case}.nii.gz`` (uint8, uint16 above 255), each
with the source's exact voxel values and geometry (see :mod:`segkit.data.convert_volume`). A case is read and
checked whole before any of its files is written, and a case that fails while writing has its files removed,
so the output never holds half a case.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from segkit.data.cases import Case, DatasetIndex
from segkit.data.check import DIRECTION_ATOL, ORIGIN_ATOL_MM, SPACING_RTOL
from segkit.data.convert_manifest import FILE_ENDING
from segkit.data.convert_volume import NiftiSource, SitkSource, read_source
from segkit.errors import DataError
from segkit.io.atomic import full_suffix
from segkit.io.image_io import NIFTI_SUFFIXES

Source = NiftiSource | SitkSource


@dataclass(frozen=True)
class ConvertPlan:
    """Where cases go and what each must match: its channel count and the declared label values (None: any)."""

    output: Path
    channels: int
    num_classes: int | None


@dataclass(frozen=True)
class CaseOutcome:
    """One case's result: the largest label value written (None without a label), or the error that skipped it."""

    case_id: str
    split: str  # "Tr" or "Ts"
    label_max: int | None = None
    error: str | None = None


def check_output(source: Path, output: Path) -> None:
    """Refuse an ``output`` inside ``source`` or one that already holds anything (nothing is ever overwritten)."""
    if output.resolve() == source.resolve() or output.resolve().is_relative_to(source.resolve()):
        raise DataError(f"--output {output} lies inside --input {source}; choose a folder outside the dataset")
    if output.exists() and not output.is_dir():
        raise DataError(f"--output {output} is a file; choose a new or empty folder")
    if output.is_dir() and any(output.iterdir()):
        raise DataError(f"--output {output} is not empty; choose a new or empty folder (convert never replaces files)")


def _file_channels(path: Path) -> int:
    """Channels of one image file, from its header only."""
    if full_suffix(path).lower() in NIFTI_SUFFIXES:
        shape = nib.load(str(path)).shape
        return shape[3] if len(shape) == 4 else 1
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return reader.GetNumberOfComponents()


def expected_channels(index: DatasetIndex, layout: str) -> int:
    """The channels every case must have: as declared (MSD ``modality``, nnU-Net ``channel_names``), else those of
    the first training case whose headers read."""
    if layout != "folder" and index.channels:
        return index.channels
    for case in index.training:
        try:
            return sum(_file_channels(path) for path in case.images)
        except Exception:  # readers raise many types; that case fails with its own message when converted
            continue
    return len(index.training[0].images)


def label_map(values: np.ndarray, path: Path, num_classes: int | None) -> np.ndarray:
    """``values`` as uint8 (uint16 above 255); a DataError for values that are not whole, negative, above 65535 or
    beyond the declared labels."""
    if not np.issubdtype(values.dtype, np.integer):
        rounded = np.rint(values)
        if not np.array_equal(rounded, values):
            raise DataError(f"{path}: label holds values that are not whole numbers (or NaN); labels must be 0..K")
        values = rounded
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if low < 0:
        raise DataError(f"{path}: label holds the negative value {low}; labels must be 0..K")
    if num_classes is not None and high >= num_classes:
        raise DataError(f"{path}: label holds the value {high} but dataset.json declares labels 0..{num_classes - 1}"
                        " — add it to 'labels' or remap the label map")
    if high > np.iinfo(np.uint16).max:
        raise DataError(f"{path}: label holds the value {high}, above 65535; remap the label map")
    return values.astype(np.uint8 if high <= np.iinfo(np.uint8).max else np.uint16)


def _grid_difference(reference: Source, other: Source) -> str | None:
    """What differs between two grids (shape, spacing, origin, direction; data check's tolerances), or None."""
    if other.shape != reference.shape:
        return f"shape {other.shape} vs {reference.shape}"
    (a_columns, a_origin), (b_columns, b_origin) = ((s.affine[:3, :3], s.affine[:3, 3]) for s in (reference, other))
    a_spacing, b_spacing = np.linalg.norm(a_columns, axis=0), np.linalg.norm(b_columns, axis=0)
    if not np.allclose(b_spacing, a_spacing, rtol=SPACING_RTOL, atol=0.0):
        return f"spacing {np.round(b_spacing, 4).tolist()} vs {np.round(a_spacing, 4).tolist()}"
    if not np.allclose(b_origin, a_origin, rtol=0.0, atol=ORIGIN_ATOL_MM):
        return f"origin {np.round(b_origin, 3).tolist()} vs {np.round(a_origin, 3).tolist()}"
    if not np.allclose(b_columns / b_spacing, a_columns / a_spacing, rtol=0.0, atol=DIRECTION_ATOL):
        return "direction"
    return None


def _check_case(case: Case, sources: list[Source], label: Source | None, channels: int) -> None:
    found = sum(source.channels for source in sources)
    if found != channels:
        raise DataError(f"{case.image}: case has {found} channel(s) but the dataset has {channels} (as declared, or "
                        "as its first training case) — give every case the same channels")
    others = [(source, "channel file") for source in sources[1:]] + ([(label, "label")] if label is not None else [])
    for other, role in others:
        difference = _grid_difference(sources[0], other)
        if difference is not None:
            raise DataError(f"{other.path}: {role} grid differs from its image {sources[0].path.name} ({difference}) "
                            "— resample it onto the image's grid")
    if label is not None and label.channels != 1:
        raise DataError(f"{label.path}: label has {label.channels} channels; a label map has one")


def _write_case(case: Case, split: str, sources: list[Source], label: tuple[Source, np.ndarray] | None,
                plan: ConvertPlan) -> None:
    """The case's files (the label on its own file's header and grid); on any failure the ones already written are
    removed."""
    images, labels = plan.output / f"images{split}", plan.output / f"labels{split}"
    targets = [(source, c) for source in sources for c in range(source.channels)]
    written: list[Path] = []
    try:
        for number, (source, channel) in enumerate(targets):
            written.append(images / f"{case.case_id}_{number:04d}{FILE_ENDING}")
            source.write_channel(channel, written[-1])
        if label is not None:
            written.append(labels / f"{case.case_id}{FILE_ENDING}")
            label[0].write_label(label[1], written[-1])
    except BaseException as exc:
        for path in written:
            path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            reason = exc.strerror or exc
            raise DataError(f"{written[-1]}: cannot write ({reason}); the case's files are removed") from None
        raise


def convert_case(case: Case, split: str, plan: ConvertPlan) -> CaseOutcome:
    """Read, check and write one case (``split`` ``Tr`` or ``Ts``); a DataError becomes the outcome's error."""
    try:
        sources = [read_source(path) for path in case.images]
        label_source = read_source(case.label) if case.label is not None else None
        _check_case(case, sources, label_source, plan.channels)
        label = None
        if label_source is not None:
            label = label_map(label_source.label_values(), case.label, plan.num_classes)
        _write_case(case, split, sources, (label_source, label) if label is not None else None, plan)
    except DataError as exc:
        return CaseOutcome(case.case_id, split, error=str(exc))
    except Exception as exc:  # a failure no check foresaw stays this case's, the others go on
        first = (str(exc).strip().splitlines() or [""])[0]
        return CaseOutcome(case.case_id, split, error=f"{case.image}: unexpected {type(exc).__name__}: {first}")
    return CaseOutcome(case.case_id, split, int(label.max()) if label is not None and label.size else None)
