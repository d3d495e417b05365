"""Keeping the largest connected component of two labels of a CT-sized label map: segkit against MONAI.

    python benchmarks/postprocess.py                      # 512x512x300, 3 repeats
    python benchmarks/postprocess.py --size 256 256 120 --json postprocess.json

The map (uint8, F-ordered as the predictor hands it to the writers) holds two organs — a large box-shaped label 1
with label 2 inside it — plus false-positive islands of both labels scattered over the whole volume (0.1% of the
voxels, seeded), so that each label's bounding box is the whole volume: the worst case for segkit's cropping.
segkit: ``keep_largest_components`` (scipy.ndimage.label within each label's bounding box); MONAI:
``KeepLargestConnectedComponent(applied_labels=[1, 2], independent=True)`` on a channel-first tensor (scikit-image's
label; the bench extra installs it). Each side gets the map in its own pipeline's layout, made once before timing:
segkit the F-ordered array, MONAI a C-contiguous one (MONAI's tensors are C-contiguous), and each times only a plain
copy of it (both work in place) and its labelling — not, as before 2026-12-07, a transposing F -> C copy charged to
MONAI alone. Both results are checked equal; round-robin over the repeats after one untimed call each.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import monai
import numpy as np
import torch
from machine import device_name
from monai.transforms import KeepLargestConnectedComponent

from segkit.inference.postprocess import keep_largest_components

LABELS = (1, 2)


def label_map(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Two nested organs and scattered islands of both labels, F-ordered."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint8)
    x, y, z = shape
    labels[x // 5: 4 * x // 5, y // 5: 4 * y // 5, z // 6: 5 * z // 6] = 1
    labels[2 * x // 5: 3 * x // 5, 2 * y // 5: 3 * y // 5, z // 3: 2 * z // 3] = 2
    islands = rng.random(shape) < 0.001
    labels[islands] = rng.integers(1, 3, int(islands.sum()), dtype=np.uint8)
    return np.asfortranarray(labels)


def segkit_keep(labels: np.ndarray) -> np.ndarray:
    out = labels.copy(order="K")
    keep_largest_components(out, LABELS)
    return out


def monai_keep(labels: np.ndarray) -> np.ndarray:
    """``labels``: C-contiguous, as a label map is in MONAI's pipeline; copied first because MONAI works in place."""
    transform = KeepLargestConnectedComponent(applied_labels=list(LABELS), independent=True)
    return transform(torch.from_numpy(labels.copy(order="K"))[None])[0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=(512, 512, 300), metavar=("X", "Y", "Z"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    labels = label_map(tuple(args.size), seed=0)
    inputs = {"segkit keep_largest_components": labels,  # F-ordered, as the predictor hands it to the writers
              "MONAI KeepLargestConnectedComponent": np.ascontiguousarray(labels)}  # MONAI's layout, made untimed
    contenders = {"segkit keep_largest_components": segkit_keep, "MONAI KeepLargestConnectedComponent": monai_keep}
    results = {name: fn(inputs[name]) for name, fn in contenders.items()}
    if not np.array_equal(*results.values()):
        raise SystemExit("segkit's and MONAI's results differ")
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn(inputs[name])
            seconds[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(v) for name, v in seconds.items()}
    base = medians["MONAI KeepLargestConnectedComponent"]
    for name, values in seconds.items():
        print(f"{name:38s} median {medians[name]:.3f} s  (min {min(values):.3f}, max {max(values):.3f})  "
              f"MONAI / this {base / medians[name]:.2f}")
    removed = int((labels != results["segkit keep_largest_components"]).sum())
    print(f"{'x'.join(map(str, args.size))} map, {removed} island voxels removed; results equal")
    print(shlex.join(sys.orig_argv))
    if args.json:
        args.json.write_text(json.dumps({
            "seconds": seconds, "median": medians,
            "monai_over_segkit": base / medians["segkit keep_largest_components"],
            "size": list(args.size), "removed_voxels": removed, "machine": device_name(torch.device("cpu")),
            "numpy": np.__version__, "monai": monai.__version__, "python": platform.python_version(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": shlex.join(sys.orig_argv)}, indent=1))


if __name__ == "__main__":
    main()
