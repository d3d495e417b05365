"""Persistent cache of preprocessed volumes (``data.cache: disk``): no gzip decoding after the first read.

Each case's preprocessed image and label are stored as raw ``.npy`` arrays (memory-mapped on
read) plus a JSON sidecar with the affines, under a key made of the source files' paths, sizes
and modification times and of the preprocessing settings. A changed source file or setting gives
a new key, so stale arrays are never used. Writes are atomic; nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from segkit.io.atomic import atomic_path, atomic_write_text

FORMAT_VERSION = 1
META_KEYS = ("affine", "original_affine", "spatial_shape")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/segkit`` (``~/.cache/segkit``): shared by runs, keyed by source files and settings."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "segkit"


def _sources(record: Mapping[str, Any], keys: list[str]) -> list[str]:
    files = []
    for key in keys:
        value = record[key]
        files += [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
    return files


def cache_key(record: Mapping[str, Any], keys: list[str], settings: str) -> str:
    """A digest of the source files (path, size, mtime) and the preprocessing settings."""
    parts = [f"v{FORMAT_VERSION}", settings]
    for name in _sources(record, keys):
        stat = Path(name).stat()
        parts.append(f"{Path(name).resolve()}|{stat.st_size}|{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _save_array(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.save(handle, array, allow_pickle=False)


def _meta_of(tensor: MetaTensor) -> dict[str, Any]:
    meta = {"affine": np.asarray(tensor.affine).tolist()}
    for key in META_KEYS[1:]:
        if key in tensor.meta:
            meta[key] = np.asarray(tensor.meta[key]).tolist()
    return meta


class DiskCached(MapTransform):
    """Preprocess a record once, then serve its arrays from ``cache_dir`` (a drop-in first transform)."""

    def __init__(self, preprocess: Callable[[dict], dict], keys: list[str], cache_dir: Path, settings: str) -> None:
        super().__init__(keys)
        self.preprocess = preprocess
        self.cache_dir = Path(cache_dir)
        self.settings = settings

    def _paths(self, stem: str, key: Hashable) -> tuple[Path, Path]:
        return self.cache_dir / f"{stem}.{key}.npy", self.cache_dir / f"{stem}.{key}.json"

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        record = dict(data)
        stem = f"{record.get('case_id', 'case')}-{cache_key(record, list(self.keys), self.settings)}"
        if all(self._paths(stem, k)[1].is_file() for k in self.keys):
            return {**record, **{k: self._load(*self._paths(stem, k)) for k in self.keys}}
        processed = self.preprocess(record)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        for key in self.keys:
            array_path, meta_path = self._paths(stem, key)
            _save_array(array_path, np.asarray(processed[key].detach().cpu().numpy()))
            atomic_write_text(meta_path, json.dumps(_meta_of(processed[key])))  # written last: marks completion
        return processed

    @staticmethod
    def _load(array_path: Path, meta_path: Path) -> MetaTensor:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        array = np.load(array_path, mmap_mode="r", allow_pickle=False)
        extra = {k: np.asarray(meta[k]) for k in META_KEYS[1:] if k in meta}
        return MetaTensor(torch.from_numpy(np.array(array)), affine=torch.tensor(meta["affine"]), meta=extra)
