"""What ``segkit predict`` predicts: input files found, grouped into cases, and each case's output path.

A case that cannot be predicted as given (a missing channel, a broken link, an id shared with another input) is
returned as a failure with its reason, so that the rest of the batch still runs. Inputs keep the names they are
given: a symbolic link is a case under the link's name (a folder of links is how many MSD and nnU-Net trees are
built), and its output is named after the link.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from segkit.data.cases import Case, case_id_of
from segkit.data.nnunet import CHANNEL_FILE
from segkit.errors import DataError
from segkit.io.atomic import IMAGE_SUFFIXES, full_suffix
from segkit.io.image_io import header_shape, is_image_file


@dataclass(frozen=True)
class InputProblem:
    """An input that cannot become a case, and why."""

    case_id: str
    source: Path
    message: str


def collect_inputs(items: list[str]) -> list[Path]:
    """Image files from directories, files and glob patterns, in a stable order without repeats. Paths are made
    absolute but symbolic links are not followed, so each link stays an input of its own (a broken one too: it
    fails as a case, with its reason)."""
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if (p.is_file() or p.is_symlink()) and is_image_file(p))
        elif path.is_file():
            found.append(path)
        else:
            matches = sorted(Path(m) for m in glob.glob(item) if Path(m).is_file() or Path(m).is_symlink())
            if not matches:
                raise DataError(f"{item}: no such file or directory, and no file matches it as a pattern")
            found += matches
    unique = list(dict.fromkeys(Path(os.path.abspath(p)) for p in found))
    if not unique:
        raise DataError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found in {', '.join(items)}")
    return unique


def single_channel_id(path: Path) -> str:
    """The case id of a one-channel input: its name without the suffix and, as nnU-Net names inputs, without a
    ``_0000`` channel number (so ``case_0000.nii.gz`` is predicted as ``case.nii.gz``, the reference's name)."""
    name = case_id_of(path)
    match = CHANNEL_FILE.match(name)
    return match["case"] if match is not None and match["channel"] == "0000" else name


def group_channels(files: list[Path], channels: int, image_dims: int = 3) -> tuple[list[Case], list[InputProblem]]:
    """The cases, and the inputs that cannot be predicted. One file per case for one-channel models; for
    multi-channel models nnU-Net style ``CASE_XXXX`` files grouped per case, or one file holding every channel
    on a last axis (a 4D volume, MSD style; for ``image_dims`` 2, a colour image such as an RGB PNG). Broken
    links and case ids that more than one input would produce are problems too."""
    cases, problems, grouped = [], [], {}
    for path in files:
        if path.is_symlink() and not path.exists():
            problems.append(InputProblem(case_id_of(path), path, f"{path}: broken symbolic link (to "
                                         f"{os.readlink(path)}) — fix the link or remove it"))
        elif channels == 1:
            cases.append(Case(single_channel_id(path), path))
        elif (match := CHANNEL_FILE.match(case_id_of(path))) is not None:
            grouped.setdefault(match["case"], {})[int(match["channel"])] = path
        else:
            case, problem = _all_channels_in_one_file(path, channels, image_dims)
            cases += [case] if case else []
            problems += [problem] if problem else []
    for case_id, by_channel in grouped.items():
        paths = [by_channel[c] for c in sorted(by_channel)]
        if sorted(by_channel) != list(range(channels)):
            problems.append(InputProblem(case_id, paths[0], f"{paths[0].parent / case_id}: found channel file(s) "
                                         f"{_channel_list(by_channel)}, the model needs _0000 to _{channels - 1:04d}"
                                         f" — {_channel_fix(by_channel, channels)}"))
        else:
            cases.append(Case(case_id, paths[0], None, tuple(paths[1:])))
    kept, clashes = _unique_ids(cases)
    return kept, problems + clashes


def _all_channels_in_one_file(path: Path, channels: int, image_dims: int = 3
                              ) -> tuple[Case | None, InputProblem | None]:
    try:
        shape = header_shape(path)
    except DataError as exc:
        return None, InputProblem(case_id_of(path), path, str(exc))
    if len(shape) == image_dims + 1 and shape[image_dims] == channels:
        return Case(case_id_of(path), path), None
    one_file = f"one {image_dims + 1}D file" if image_dims == 3 else "one image with that many components (RGB: 3)"
    return None, InputProblem(case_id_of(path), path, f"{path}: the model takes {channels} channels — name inputs "
                              f"CASE_0000 … CASE_{channels - 1:04d}, one file per channel, or give {one_file} with "
                              f"{channels} channels (this one is {'×'.join(map(str, shape))})")


def _channel_list(by_channel: dict[int, Path] | list[int]) -> str:
    return ", ".join(f"_{c:04d}" for c in sorted(by_channel))


def _channel_fix(by_channel: dict[int, Path], channels: int) -> str:
    """What to do about a case whose channel files are not ``_0000`` … ``_{channels - 1}``: add the missing ones,
    remove the extra ones (or both)."""
    missing = [c for c in range(channels) if c not in by_channel]
    extra = [c for c in by_channel if c >= channels]
    steps = ([f"add the missing {_channel_list(missing)}"] if missing else []) + (
        [f"remove {_channel_list(extra)} (the model takes {channels} channel(s))"] if extra else [])
    return " and ".join(steps) + ", or remove the case from the input"


def _unique_ids(cases: list[Case]) -> tuple[list[Case], list[InputProblem]]:
    """Cases whose id no other input shares, and a problem for each that shares one (their outputs would be one
    file: ``a/case.nii.gz`` and ``b/case.nii.gz``, ``case.nrrd`` and ``case.mha``, ``case.nii`` and ``case.nii.gz``)."""
    by_id: dict[str, list[Case]] = {}
    for case in cases:
        by_id.setdefault(case.case_id, []).append(case)
    kept, problems = [], []
    for case in cases:
        same = by_id[case.case_id]
        if len(same) == 1:
            kept.append(case)
            continue
        others = ", ".join(str(c.image) for c in same if c is not case)
        problems.append(InputProblem(case.case_id, case.image, f"{case.image}: case id '{case.case_id}' also comes "
                                     f"from {others} — their predictions would be one file; rename one, or predict "
                                     "them into separate --output folders"))
    return kept, problems


# a header with a separate pixel-data file: the written header would name the temp data file that the atomic write
# renames from, so such inputs are predicted into the one-file form of the same format
ONE_FILE_FORM = {".mhd": ".mha", ".nhdr": ".nrrd"}


def output_path_for(case: Case, output_dir: Path) -> Path:
    """The output file for ``case``: its id plus the input's suffix (``.mhd`` → ``.mha``, ``.nhdr`` → ``.nrrd``),
    inside ``output_dir``; never an input."""
    suffix = full_suffix(case.image)
    target = (output_dir / f"{case.case_id}{ONE_FILE_FORM.get(suffix.lower(), suffix)}").resolve()
    if target.parent != output_dir.resolve():
        raise DataError(f"{case.image}: output name escapes the output directory")
    if target in {p.resolve() for p in case.images}:
        raise DataError(f"{case.image}: output would overwrite the input; choose an --output outside the input folder")
    return target
