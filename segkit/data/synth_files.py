"""The files ``segkit data synth`` writes, and its record of them, so ``--overwrite`` removes exactly those.

The record (``segkit_synth.json`` in the dataset folder) lists every file synth writes, relative to
the folder. It is written before the cases, so an interrupted run still leaves a record of what it
may have written. ``--overwrite`` deletes only recorded files with names synth gives; a user's own
files in the folder stay, and a non-empty folder without a record is refused.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path, PurePosixPath

from segkit.data.check_report import FINGERPRINT_NAME, written_by_check
from segkit.errors import SegkitError
from segkit.io.atomic import atomic_write_text

RECORD = "segkit_synth.json"
WRITER = "segkit data synth"
FOLDERS = ("imagesTr", "labelsTr", "imagesTs", "labelsTs", "images", "labels")
# every name synth gives a file; a record listing anything else was not written by synth
_SYNTH_NAME = re.compile(r"dataset\.json|(images|labels)(Tr|Ts)?/phantom_\d{3,}(_\d{4})?\.(nii\.gz|png)")


def case_files(name: str, split: str, layout: str, channels: int) -> tuple[list[str], str]:
    """One case's image files (one per channel) and label file, relative to the dataset folder.

    ``split`` is ``Tr`` or ``Ts``; the folder layout (2D PNG) keeps training cases in ``images/``.
    """
    if layout == "folder":
        folder = "images" if split == "Tr" else "imagesTs"
        return [f"{folder}/{name}.png"], f"{folder.replace('images', 'labels')}/{name}.png"
    images = [f"images{split}/{name}_{c:04d}.nii.gz" if layout == "nnunet" else f"images{split}/{name}.nii.gz"
              for c in range(channels)]
    return images, f"labels{split}/{name}.nii.gz"


def planned_files(splits: list[tuple[str, str]], layout: str, channels: int) -> list[str]:
    """Every file synth writes for the cases ``(name, split)``, the manifest included (3D layouts)."""
    files = [] if layout == "folder" else ["dataset.json"]
    for name, split in splits:
        images, label = case_files(name, split, layout, channels)
        files += [*images, label]
    return sorted(files)


def write_record(out: Path, files: list[str]) -> None:
    """Record in ``out`` the files synth is about to write."""
    atomic_write_text(out / RECORD, json.dumps({"written_by": WRITER, "files": files}, indent=1) + "\n")


def _recorded(out: Path) -> list[str]:
    """The files an earlier synth recorded in ``out``; a folder without a valid record is refused."""
    path = out / RECORD
    refuse = (f"--overwrite only replaces a dataset that 'segkit data synth' wrote — choose an empty --out folder, "
              f"or empty {out} yourself")
    if not path.is_file():
        raise SegkitError(f"{out}: holds files but no {RECORD}, so not a dataset synth wrote (or one written before "
                          f"synth recorded its files); {refuse}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        valid = data["written_by"] == WRITER and all(isinstance(f, str) and _SYNTH_NAME.fullmatch(f) for f in files)
    except (OSError, ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise SegkitError(f"{path}: not a record 'segkit data synth' wrote; {refuse}")
    return files


def clear_previous(out: Path) -> None:
    """Remove what an earlier synth wrote to ``out``: its recorded files, then its folders if left empty, then
    the record, and a ``segkit data check`` report of those cases. Files synth did not write stay; a recorded name
    reached through a linked folder is left alone."""
    files = _recorded(out)
    root = out.resolve()
    for name in files:
        path = out / name
        if path.parent.resolve() == root.joinpath(*PurePosixPath(name).parent.parts) and path.is_file():
            path.unlink()
    for folder in FOLDERS:
        with contextlib.suppress(OSError):  # missing, not empty (user files stay), or not a folder
            if not (out / folder).is_symlink():
                (out / folder).rmdir()
    (out / RECORD).unlink()
    report = out / FINGERPRINT_NAME  # data check's report of the cases just removed would describe other cases
    if not report.is_symlink() and written_by_check(report):
        report.unlink()
