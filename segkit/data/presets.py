"""Settings derived from the dataset fingerprint: ``data.spacing: auto`` and ``data.normalize: ct``.

They are resolved once when training starts and written into the run's config, so a checkpoint
carries concrete numbers and ``predict`` preprocesses exactly as training did. The fingerprint is that
of the training cases only (as in nnU-Net): held-out test cases never shape a training setting.
"""

from __future__ import annotations

from segkit.config import DataCfg
from segkit.data.fingerprint import Fingerprint
from segkit.errors import DataError


def resolve_from_fingerprint(cfg: DataCfg, fingerprint: Fingerprint | None) -> DataCfg:
    """``cfg`` with ``spacing: auto`` → the median spacing and ``ct_stats`` → foreground statistics, from the
    training cases' ``fingerprint``. 2D image files are not resampled, so their ``spacing`` stays as it is."""
    updates: dict = {}
    needs_stats = cfg.normalize == "ct" and cfg.ct_stats is None
    needs_spacing = cfg.spacing == "auto" and cfg.image_dims == 3
    if (needs_spacing or needs_stats) and fingerprint is None:
        raise DataError(f"{cfg.root}: no error-free training case to derive data.spacing/data.ct_stats from; "
                        "run 'segkit data check' and fix the dataset")
    if needs_spacing:
        updates["spacing"] = tuple(round(float(s), 4) for s in fingerprint.spacing_median)
    if needs_stats:
        per_channel = []
        for channel, stats in enumerate(fingerprint.intensity):  # nnU-Net: each channel its own statistics
            if stats.p0_5 is None or not stats.std:
                raise DataError(f"{cfg.root}: no foreground voxels in channel {channel} to derive data.ct_stats "
                                "from; give it explicitly")
            per_channel.append((stats.p0_5, stats.p99_5, stats.mean, stats.std))
        updates["ct_stats"] = per_channel[0] if len(per_channel) == 1 else tuple(per_channel)
    return cfg.model_copy(update=updates) if updates else cfg
