"""Atomic file writes: write to a temp name in the same directory, fsync, ``os.replace``.

A reader never sees a half-written file under a final name, and an interrupted
write leaves the previous file (if any) untouched.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".png", ".tif", ".tiff")


def full_suffix(path: Path) -> str:
    """The file type suffix, keeping double suffixes such as ``.nii.gz``."""
    name = path.name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return path.name[-len(suffix):]
    return path.suffix


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # some filesystems refuse to open directories; the rename is still atomic
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path_for(final: Path) -> Path:
    """A fresh hidden temp name beside ``final`` (same suffix), of the form :func:`remove_stale_temps` removes."""
    suffix = full_suffix(final)
    return final.with_name(f".{final.name[: len(final.name) - len(suffix)]}.{uuid.uuid4().hex[:8]}.tmp{suffix}")


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temp path beside ``final`` (same suffix); on success it replaces ``final``."""
    final = Path(final)
    tmp = temp_path_for(final)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp(\.[A-Za-z0-9.]+)?$")


def remove_stale_temps(directory: Path) -> int:
    """Delete temp files left in ``directory`` by writes that were killed (only names :func:`atomic_path`
    makes); returns how many."""
    removed = 0
    for path in Path(directory).iterdir():
        if path.is_file() and _TEMP_NAME.match(path.name):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def prove_writable(folder: Path) -> None:
    """Create ``folder`` and show that files can be written there the way segkit writes them (a temp file renamed
    into place), before any work; leaves nothing behind (both names are temp names, so a killed probe is cleaned
    like other temps). Raises OSError."""
    first, second = (temp_path_for(folder / ".segkit-write-probe") for _ in range(2))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        first.write_bytes(b"")
        os.replace(first, second)
    finally:
        for probe in (first, second):
            with contextlib.suppress(OSError):  # e.g. NotADirectoryError when the folder is a file
                probe.unlink(missing_ok=True)


def own_folder(folder: Path) -> Path:
    """``folder`` as a real directory that segkit owns: a symbolic link in its place (planted in an output folder
    shared with others) is removed, never written through; then the directory is created if missing."""
    folder = Path(folder)
    if folder.is_symlink():
        folder.unlink()  # the link only: its target is left as it is
    folder.mkdir(parents=True, exist_ok=True)
    return folder
