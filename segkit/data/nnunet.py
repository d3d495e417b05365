"""nnU-Net v2 raw layout: ``imagesTr/{case}_{XXXX}{ending}`` per channel, ``labelsTr/{case}{ending}``.

``dataset.json`` declares ``channel_names`` ({"0": "CT", ...}), ``labels`` ({"background": 0, ...})
and ``file_ending`` (e.g. ".nii.gz").
"""

from __future__ import annotations

import re
from pathlib import Path

from segkit.data.cases import Case, DatasetIndex, check_unique
from segkit.data.msd import MANIFEST, read_manifest
from segkit.errors import DataError

CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _channel_files(folder: Path, ending: str, channels: int, source: Path
                   ) -> tuple[dict[str, tuple[Path, ...]], list[tuple[str, Path, str]]]:
    """Case id → its channel files in order, for the cases with exactly ``channels`` of them; and (case id, file,
    message) for every file or case that is not one."""
    found: dict[str, dict[int, Path]] = {}
    problems: list[tuple[str, Path, str]] = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not path.name.endswith(ending) or path.name.startswith("."):
            continue
        match = CHANNEL_FILE.match(path.name[: -len(ending)])
        if match is None:
            problems.append((path.name[: -len(ending)], path,
                             f"nnU-Net image names end in _XXXX{ending} (channel number); rename it"))
            continue
        found.setdefault(match["case"], {})[int(match["channel"])] = path
    cases = {}
    for case_id, by_channel in found.items():
        if sorted(by_channel) != list(range(channels)):
            problems.append((case_id, folder / case_id, f"has channels {sorted(by_channel)} but {source} "
                                                        f"declares {channels} (_0000 to _{channels - 1:04d}); add or "
                                                        "remove files"))
            continue
        cases[case_id] = tuple(by_channel[c] for c in range(channels))
    return cases, problems


def _all_at_once(problems: list[tuple[str, Path, str]]) -> DataError:
    """One error naming every problem (up to ten), so that a dataset is fixed in one round, not one per run."""
    listed = "; ".join(f"{path}: {message}" for _, path, message in problems[:10])
    more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
    return DataError((f"{len(problems)} problems: " if len(problems) > 1 else "") + listed + more)


def _declared(manifest: dict, source: Path) -> tuple[int, int, str]:
    channel_names, labels = manifest.get("channel_names"), manifest.get("labels")
    ending = manifest.get("file_ending")
    if not isinstance(channel_names, dict) or not channel_names:
        raise DataError(f"{source}: 'channel_names' must map channel numbers to names, e.g. {{\"0\": \"CT\"}}")
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{source}: 'labels' must map names to values, e.g. {{\"background\": 0, \"organ\": 1}}")
    if not isinstance(ending, str) or not ending.startswith("."):
        raise DataError(f"{source}: 'file_ending' must be a suffix such as \".nii.gz\"")
    if "ignore" in labels:  # nnU-Net v2 leaves these voxels out of the loss; segkit would train them as a class
        raise DataError(f"{source}: label 'ignore' ({labels['ignore']!r}) marks voxels nnU-Net leaves out of "
                        "training, which segkit does not support — set those voxels to a class (e.g. background 0) "
                        "in the label maps and remove 'ignore' from 'labels'")
    values = sorted(v for v in labels.values() if isinstance(v, int) and not isinstance(v, bool))
    if len(values) != len(labels):
        region = next(name for name, v in labels.items() if not isinstance(v, int) or isinstance(v, bool))
        raise DataError(f"{source}: label '{region}' is {labels[region]!r}, not one integer — segkit trains one class "
                        "per label value, not nnU-Net regions; declare each label value once, e.g. "
                        "{\"background\": 0, \"organ\": 1}")
    if values != list(range(len(values))):
        raise DataError(f"{source}: 'labels' values are {values}; they must be 0, 1, … {len(values) - 1} (background "
                        "0) — remap the label maps or fix dataset.json")
    return len(channel_names), len(labels), ending


def _check_count(manifest: dict, found: int, source: Path) -> None:
    """``numTraining``, where given, must count the training cases: nnU-Net's integrity check refuses a dataset
    whose count differs, so a dataset segkit accepts also works as nnU-Net's baseline."""
    declared = manifest.get("numTraining")
    if declared is not None and declared != found:
        raise DataError(f"{source}: numTraining is {declared!r} but imagesTr/labelsTr hold {found} case(s) — "
                        f"nnU-Net refuses this; set numTraining to {found}")


def index_nnunet(root: Path) -> DatasetIndex:
    """The nnU-Net v2 raw dataset at ``root`` (multi-channel cases supported)."""
    source = root / MANIFEST
    manifest = read_manifest(root, "an nnU-Net raw dataset needs dataset.json with channel_names, labels and "
                                   "file_ending")
    channels, num_classes, ending = _declared(manifest, source)
    files, problems = _channel_files(root / "imagesTr", ending, channels, source)
    training = []
    for case_id, images in files.items():
        label = root / "labelsTr" / f"{case_id}{ending}"
        if not label.is_file():
            problems.append((case_id, label, f"missing label for training case '{case_id}'; add it or remove the "
                                             "images"))
        training.append(Case(case_id, images[0], label, images[1:]))
    if problems:
        raise _all_at_once(problems)
    if not training:
        raise DataError(f"{root / 'imagesTr'}: no training cases: no images named CASE_0000{ending}; add cases to "
                        "imagesTr/labelsTr")
    _check_count(manifest, len(training), source)
    files, skipped = _channel_files(root / "imagesTs", ending, channels, source)  # never blocks training
    test = []
    for case_id, images in files.items():
        label = root / "labelsTs" / f"{case_id}{ending}"
        test.append(Case(case_id, images[0], label if label.is_file() else None, images[1:]))
    check_unique(source, training + test)
    return DatasetIndex(training, test, num_classes, channels, skipped)
