"""Predict's writer stage: label maps (and the probabilities and preview asked for) written on each input's grid."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from segkit.pipelines.predict_jobs import Job, PredictOptions

from segkit.config import Config
from segkit.data.check_2d import PLANAR_SUFFIXES
from segkit.engine.metrics import label_measures
from segkit.errors import DataError, SegkitError
from segkit.inference.manifest import Manifest
from segkit.inference.postprocess import keep_largest_components
from segkit.inference.predictor import Prediction
from segkit.io.atomic import full_suffix
from segkit.io.image_io import read_image_array, write_like, write_probabilities
from segkit.io.side_files import preview_path, probabilities_path

Write = Callable[[Job, tuple[Prediction, np.ndarray]], dict[str, Any]]


def write_case_preview(job: Job, labels: np.ndarray, affine: np.ndarray, class_names: list[str] | None = None) -> str:
    """Draw three orthogonal slices through the largest predicted structure (one panel for a 2D image), with the
    overlay (``--preview``). Returns ``""``, or one line saying why the preview could not be drawn: the label map
    is written by then, so a preview's failure leaves the case written, with this warning."""
    from segkit.report.preview import write_preview

    target = preview_path(job.target)
    try:
        image, _ = read_image_array(job.case.image)
        affine = np.asarray(affine, dtype=np.float64)
        spacing = np.linalg.norm(affine[:-1, :-1], axis=0)  # 4×4 in 3D, 3×3 in 2D
        write_preview(target, image, labels, spacing, class_names, title=job.case.case_id,
                      affine=affine if labels.ndim == 3 else None)
        return ""
    except Exception as exc:  # matplotlib, numpy and the file system raise many types
        reason = (exc.strerror if isinstance(exc, OSError) and exc.strerror else " ".join(str(exc).split())[:200]
                  ) or type(exc).__name__
        return (f"{target}: cannot draw the preview ({type(exc).__name__}: {reason}); the label map "
                f"{job.target.name} was written — run again to retry the preview (the case is redone)")


def _stored_order(job: Job, probabilities: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and affine as saved: voxel order (i, j, k) for volumes; for a PNG or TIFF input (rows,
    columns), as imaging libraries (PIL, imageio, scikit-image) read the file, and the affine's index columns
    swapped to match."""
    if probabilities.ndim != 3 or full_suffix(job.case.image).lower() not in PLANAR_SUFFIXES:
        return probabilities, affine
    return probabilities.transpose(0, 2, 1), np.asarray(affine)[:, [1, 0, *range(2, np.asarray(affine).shape[1])]]


def _remove_stale_side_files(job: Job, probabilities: bool, preview: bool) -> None:
    """An earlier run's probabilities or preview that this run did not write would no longer match the label map."""
    for path, written in ((probabilities_path(job.target), probabilities), (preview_path(job.target), preview)):
        if not written:
            path.unlink(missing_ok=True)


def _write_failure(job: Job, exc: Exception) -> DataError:
    """One line for a case whose files could not be written: a full disk or permissions, or a library's refusal."""
    if isinstance(exc, OSError):
        return DataError(f"{job.target}: cannot write the prediction ({exc.strerror or exc}) — free disk space or fix "
                         "the permissions of --output, then run again (finished cases are skipped)")
    reason = " ".join(str(exc).split())[:200] or type(exc).__name__
    fix = ("check its header against the image's data (e.g. with nibabel)" if job.target.name.endswith(".nii.gz")
           else "save it as NIfTI (.nii.gz) and predict that copy")
    return DataError(f"{job.target}: cannot write the prediction on the grid of {job.case.image.name} "
                     f"({type(exc).__name__}: {reason}) — {fix}")


def postprocessed_counts(prediction: Prediction, keep: tuple[int, ...] | None) -> np.ndarray:
    """Voxels per label after ``infer.keep_largest`` (on the host, in a writer thread: scipy's labelling)."""
    counts = prediction.voxel_counts
    if keep:
        counts = counts.copy()
        for label, removed in keep_largest_components(prediction.labels, keep).items():
            counts[label] -= removed
            counts[0] += removed
    return counts


def _write_files(job: Job, prediction: Prediction, affine: np.ndarray, level: int, preview: bool,
                 class_names: list[str] | None) -> str:
    """The label map, then the side files; every file atomically. Returns the preview's warning, if any."""
    write_like(prediction.labels, job.case.image, job.target, level)
    if prediction.probabilities is not None:
        write_probabilities(probabilities_path(job.target), *_stored_order(job, prediction.probabilities, affine))
    warning = write_case_preview(job, prediction.labels, affine, class_names) if preview else ""
    if job.redo:
        _remove_stale_side_files(job, prediction.probabilities is not None, preview and not warning)
    return warning


def make_writer(manifest: Manifest, options: PredictOptions, cfg: Config, class_names: list[str] | None = None
                ) -> Write:
    """The write stage: files for one case, and what the manifest records of it (label measures, and
    ``preview_error`` when the preview could not be drawn). ``class_names`` (background first) label the
    preview's legend."""
    level, keep = cfg.infer.compression_level, cfg.infer.keep_largest

    def write(job: Job, computed: tuple[Prediction, np.ndarray]) -> dict[str, Any]:
        prediction, affine = computed
        counts = postprocessed_counts(prediction, keep)
        manifest.append({"case_id": job.case.case_id, "output": str(job.target), "status": "started"})
        try:  # a failed write leaves no partial file under a final name
            warning = _write_files(job, prediction, affine, level, options.preview, class_names)
        except SegkitError:
            raise
        except Exception as exc:  # SimpleITK's writers raise RuntimeError, nibabel its own types: this case only
            raise _write_failure(job, exc) from None
        return {**label_measures(counts, affine), **({"preview_error": warning} if warning else {})}

    return write
