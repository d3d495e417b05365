"""One entry point for every dataset layout (``data.format``)."""

from __future__ import annotations

from pathlib import Path

from segkit.data.cases import DatasetIndex
from segkit.data.folder import index_folder
from segkit.data.msd import index_msd
from segkit.data.nnunet import index_nnunet
from segkit.errors import DataError

LAYOUTS = {"msd": index_msd, "nnunet": index_nnunet, "folder": index_folder}


def load_dataset(root: Path, layout: str) -> DatasetIndex:
    """Index the dataset at ``root`` in ``layout`` (msd, nnunet or folder)."""
    if Path(root).is_file():
        raise DataError(f"data.root {root}: a file, not a dataset folder — give the folder that holds it (for MSD, "
                        "the one with dataset.json)")
    if not Path(root).is_dir():
        raise DataError(f"data.root {root}: no such folder (create demo data with 'segkit data synth --out DIR')")
    return LAYOUTS[layout](Path(root))
