"""Patches per second from the training dataset with data.cache none vs disk (second epoch) vs memory.

    python benchmarks/data_cache.py [--cases 8] [--patches 64]

Writes seeded phantoms to a temp folder, builds the demo recipe's training transforms and draws
random patches; prints a table (median and min-max of three repeats) and JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from segkit.config import load_config
from segkit.data.index import load_dataset
from segkit.data.loaders import _records
from segkit.data.synth import write_dataset
from segkit.data.transforms import disk_cached_training_transforms, training_transforms


def _draw(transform, records: list[dict], patches: int) -> float:
    started = time.perf_counter()
    for i in range(patches):
        transform(records[i % len(records)])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--patches", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "data", Path(tmp) / "cache"
        write_dataset(root, args.cases + 1, seed=0, test_cases=1)
        cfg = load_config("demo_unet_resnet34.yaml", [f"data.root={root}"])
        records = _records(load_dataset(root, "msd").training)
        uncached = training_transforms(cfg)
        disk = disk_cached_training_transforms(cfg, cache)
        _draw(disk, records, len(records))  # first epoch fills the cache
        prepared = [_preprocess_once(cfg, r) for r in records]  # decoded once and kept, as CacheDataset does
        results = {}
        for name, transform, inputs in (("none", uncached, records), ("disk", disk, records),
                                        ("memory", _sampling_only(cfg), prepared)):
            times = [_draw(transform, inputs, args.patches) for _ in range(3)]
            results[name] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}
    base = results["none"]["median_s"]
    print(f"{args.patches} patches from {args.cases} demo phantoms (32x96x96), demo recipe transforms")
    print(f"{'cache':8} {'median s':>9} {'min-max s':>14} {'speed-up vs none':>17}")
    for name, r in results.items():
        print(f"{name:8} {r['median_s']:9.3f} {r['min_s']:6.3f}-{r['max_s']:<7.3f} {base / r['median_s']:16.1f}x")
    print(json.dumps(results))


def _preprocess_once(cfg, record: dict) -> dict:
    from monai.transforms import Compose

    from segkit.data.transforms import preprocessing

    return Compose(preprocessing(cfg.data, with_label=True))(record)


def _sampling_only(cfg):
    from monai.transforms import Compose

    from segkit.data.transforms import sampling

    return Compose(sampling(cfg))


if __name__ == "__main__":
    main()
