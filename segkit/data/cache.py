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
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from segkit.config import DataCfg
from segkit.errors import ConfigError
from segkit.io.atomic import atomic_path, atomic_write_text

FORMAT_VERSION = 1
MEMORY_SHARE = 0.8  # of the memory available, what ``data.cache: memory`` may fill before it is refused
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


def preprocessed_bytes(sizes: Iterable[tuple[Sequence[int], Sequence[float]]], target: Sequence[float] | None,
                       channels: int) -> int:
    """Bytes that preprocessed volumes take in memory: float32 image channels and a uint8 label per voxel, after
    resampling each ``(shape, spacing)`` (in the same axis order as ``target``; None keeps the native grid)."""
    total = 0
    for shape, spacing in sizes:
        scale = [1.0] * len(shape) if target is None else [s / t for s, t in zip(spacing, target, strict=True)]
        total += int(np.prod([max(1, round(n * f)) for n, f in zip(shape, scale, strict=True)], dtype=np.float64))
    return total * (4 * channels + 1)


def available_memory_bytes() -> int | None:
    """The memory the kernel says can be allocated without swapping (``MemAvailable``); None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_cache_plan(data: DataCfg, sizes: list[tuple[Sequence[int], Sequence[float]]], channels: int,
                      processes: int = 1, available: int | None = None) -> str | None:
    """With ``data.cache: memory``, the line that says how much the cached training volumes take (each process on
    the machine keeps its own copy); a ConfigError naming ``data.cache: disk`` where that is more than
    ``MEMORY_SHARE`` of the ``available`` memory — the run would otherwise decode for minutes, then be killed.
    ``sizes`` are the cases' ``(shape, spacing)`` in reoriented x, y, z order (the fingerprint's). None without it."""
    if data.cache != "memory" or not sizes:
        return None
    target = data.spacing if isinstance(data.spacing, tuple) and data.image_dims == 3 else None
    need = preprocessed_bytes(sizes, target, channels) * processes
    grid = f"data.spacing {list(target)}" if target is not None else "their own grids"
    each = f", × {processes} processes on this machine" if processes > 1 else ""
    what = f"about {need / 2**30:.1f} GiB of preprocessed volumes ({len(sizes)} cases at {grid}{each})"
    if available is not None and need > MEMORY_SHARE * available:
        raise ConfigError(f"data.cache: memory would keep {what} but {available / 2**30:.1f} GiB of memory is "
                          "available — set data.cache: disk (volumes decoded once into data.cache_dir and read back "
                          "every epoch) or data.cache: none, or a coarser data.spacing")
    return f"caching {what} in memory before the first step"
