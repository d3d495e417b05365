"""The files ``segkit predict`` writes beside a label map ``CASE.nii.gz``: ``CASE.probabilities.npz`` and
``CASE.preview.png``. Prediction names them; evaluation must not take them for predictions."""

from __future__ import annotations

from pathlib import Path

from segkit.io.atomic import full_suffix

PROBABILITIES_SUFFIX = ".probabilities.npz"
PREVIEW_SUFFIX = ".preview.png"


def beside(target: Path, suffix: str) -> Path:
    """The file named like the label map ``target`` with ``suffix`` in place of its image suffix."""
    return target.with_name(target.name[: len(target.name) - len(full_suffix(target))] + suffix)


def probabilities_path(target: Path) -> Path:
    """``CASE.probabilities.npz`` beside the label map."""
    return beside(target, PROBABILITIES_SUFFIX)


def preview_path(target: Path) -> Path:
    """``CASE.preview.png`` beside the label map."""
    return beside(target, PREVIEW_SUFFIX)
