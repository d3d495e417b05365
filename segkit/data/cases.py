"""Cases and dataset indexes shared by every dataset layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from segkit.errors import DataError
from segkit.io.atomic import full_suffix


@dataclass(frozen=True)
class Case:
    """One case: an id, its image file (first channel), its label file when known, further channels."""

    case_id: str
    image: Path
    label: Path | None = None
    extra_channels: tuple[Path, ...] = ()

    @property
    def images(self) -> tuple[Path, ...]:
        """Every channel's file, in channel order."""
        return (self.image, *self.extra_channels)


@dataclass(frozen=True)
class DatasetIndex:
    """The cases of a dataset and what its manifest declares."""

    training: list[Case]
    test: list[Case] = field(default_factory=list)
    num_classes: int | None = None  # including background, when declared
    channels: int | None = None  # when declared
    skipped: list[tuple[str, Path, str]] = field(default_factory=list)  # held-out files that make no case: (case
    # id, file, what is wrong); they never block training, and `segkit data check` lists them


def case_id_of(path: Path) -> str:
    """The case id of an image path: its file name without the image suffix."""
    return path.name[: len(path.name) - len(full_suffix(path))]


def check_unique(source: Path, cases: list[Case]) -> None:
    """Case ids must be unique within a dataset, and plain names: they become parts of file names
    (predictions, caches), so an id with a folder part could write outside its folder."""
    seen: set[str] = set()
    for case in cases:
        if case.case_id in {"", ".", ".."} or any(c in case.case_id for c in "/\\\0"):
            raise DataError(f"{source}: case id {case.case_id!r} is not a plain name (no '/', '\\', '..' or "
                            "absolute path); rename the case")
        if case.case_id in seen:
            raise DataError(f"{source}: case id '{case.case_id}' appears twice; case ids must be unique — rename or "
                            "remove one of the entries")
        seen.add(case.case_id)


def inside(root: Path, relative: object, source: Path, where: str) -> Path:
    """``root / relative`` as an existing file that stays inside ``root``."""
    if not isinstance(relative, str) or not relative:
        raise DataError(f"{source}: {where} must be a relative file path, got {relative!r}")
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise DataError(f"{source}: {where} '{relative}' points outside the dataset folder {root} — move the file "
                        "into it and give its path relative to the folder")
    if not path.is_file():
        raise DataError(f"{source}: {where} '{relative}' does not exist; fix the path or add the file")
    return path
