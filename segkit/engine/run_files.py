"""What a training run writes in its run directory, and how ``train --overwrite`` clears it.

``--overwrite`` deletes only these entries: anything else a user keeps in the folder (predictions, notes)
stays where it is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from segkit.engine.checkpoint import CHECKPOINT_STORE, remove_stale
from segkit.engine.run_log import CURVES, METRICS, TENSORBOARD

CONFIG_YAML, SPLITS = "config.yaml", "splits.json"
RUN_ENTRIES = frozenset({CONFIG_YAML, SPLITS, METRICS, CURVES, TENSORBOARD, CHECKPOINT_STORE, "best", "last"})


def clear_run(run_dir: Path) -> list[str]:
    """Delete the run's own entries in ``run_dir`` (and what killed writes left); returns the names of the
    other entries, which are kept."""
    remove_stale(run_dir)
    kept = []
    for entry in sorted(run_dir.iterdir()):
        if entry.name not in RUN_ENTRIES:
            kept.append(entry.name)
        elif entry.is_symlink() or not entry.is_dir():  # a link is removed, never followed
            entry.unlink()
        else:
            shutil.rmtree(entry)
    return kept
