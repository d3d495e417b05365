"""The nnU-Net v2 ``dataset.json`` of a converted dataset, names carried over from the source's manifest.

nnU-Net v2 wants ``labels`` as name → value with ``background`` 0, and segkit's nnU-Net index wants the values
0..K-1 without gaps: a value the source leaves unnamed is named ``label_V``. Channels without a declared name
are ``channel_C`` (nnU-Net normalises any name other than its own keywords, e.g. ``CT``, by z-score).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segkit.data.msd import MANIFEST, read_manifest
from segkit.errors import DataError

CARRIED_KEYS = ("name", "description", "reference", "licence", "release")  # nnU-Net's descriptive keys
FILE_ENDING = ".nii.gz"


def source_manifest(root: Path) -> dict[str, Any]:
    """The source's dataset.json (already validated by its index), or an empty dict where it has none."""
    return read_manifest(root, "") if (root / MANIFEST).is_file() else {}


def declared_labels(layout: str, manifest: dict[str, Any], root: Path) -> dict[str, int] | None:
    """Label name → value as the source declares them (values 0..K-1, gaps named), or None (folder layout)."""
    labels = manifest.get("labels")
    if layout == "nnunet":  # the index has checked: one integer per name, 0..K-1
        return {str(name): int(value) for name, value in labels.items()}
    if layout != "msd" or not isinstance(labels, dict):
        return None
    by_value = {}
    for key, name in labels.items():
        if not str(key).isdigit():
            raise DataError(f"{root / MANIFEST}: 'labels' key {key!r} is not a label value; MSD labels map values to "
                            "names, e.g. {\"0\": \"background\", \"1\": \"organ\"}")
        by_value[int(key)] = str(name)
    return named_labels(by_value)


def named_labels(by_value: dict[int, str]) -> dict[str, int]:
    """Name → value for the values 0..max(by_value): value 0 is ``background`` (nnU-Net v2 needs that name), a value
    without a name is ``label_V``, a repeated name gets ``_V`` appended."""
    names: dict[str, int] = {}
    for value in range(max(by_value, default=0) + 1):
        name = "background" if value == 0 else by_value.get(value, f"label_{value}")
        names[name if name not in names else f"{name}_{value}"] = value
    return names


def channel_names(layout: str, manifest: dict[str, Any], channels: int) -> dict[str, str]:
    """Channel number → name: MSD ``modality`` or nnU-Net ``channel_names`` where they name every channel."""
    declared = manifest.get("channel_names" if layout == "nnunet" else "modality")
    if not isinstance(declared, dict) or len(declared) != channels:
        declared = {}
    return {str(c): str(declared.get(str(c), f"channel_{c}")) for c in range(channels)}


def nnunet_manifest(layout: str, manifest: dict[str, Any], channels: int, labels: dict[str, int],
                    num_training: int) -> dict[str, Any]:
    """The converted dataset's dataset.json."""
    carried = {key: manifest[key] for key in CARRIED_KEYS if isinstance(manifest.get(key), str)}
    return {**carried, "channel_names": channel_names(layout, manifest, channels), "labels": labels,
            "numTraining": num_training, "file_ending": FILE_ENDING}
