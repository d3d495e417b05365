"""One entry point for every dataset layout (``data.format``)."""

from __future__ import annotations

import json
from pathlib import Path

from segkit.data.cases import DatasetIndex
from segkit.data.folder import index_folder
from segkit.data.msd import index_msd
from segkit.data.nnunet import index_nnunet
from segkit.errors import DataError

LAYOUTS = {"msd": index_msd, "nnunet": index_nnunet, "folder": index_folder}


def load_dataset(root: Path, layout: str, given_as: str = "data.root") -> DatasetIndex:
    """Index the dataset at ``root`` in ``layout`` (msd, nnunet or folder); ``given_as`` names where the user gave
    ``root`` in the errors (a config key, a flag, or "" for a command's positional argument)."""
    where = f"{given_as} {root}".strip()
    if Path(root).is_file():
        raise DataError(f"{where}: a file, not a dataset folder — give the folder that holds it (for MSD, the one "
                        "with dataset.json)")
    if not Path(root).is_dir():
        raise DataError(f"{where}: no such folder (create demo data with 'segkit data synth --out DIR')")
    return LAYOUTS[layout](Path(root))


def detect_layout(root: Path) -> str:
    """The layout of the dataset at ``root``: ``nnunet`` for a dataset.json with ``channel_names`` or
    ``file_ending``, ``msd`` for another dataset.json, ``folder`` for a ``dataset.csv`` or an ``images/`` folder;
    ``msd`` when nothing tells (its error then says what is missing)."""
    root = Path(root)
    manifest = root / "dataset.json"
    if manifest.is_file():
        try:
            declared = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return "msd"  # reading it as MSD reports the problem with the file
        return "nnunet" if isinstance(declared, dict) and {"channel_names", "file_ending"} & declared.keys() else "msd"
    if (root / "dataset.csv").is_file() or (root / "images").is_dir():
        return "folder"
    return "msd"
