"""Inflating one CT-sized .nii.gz: ISA-L in one call (segkit's reader today) against rapidgzip's parallel inflate.

    python benchmarks/inflate.py --data /tmp/ct                  # 512x512x300 int16, gzip level 6
    python benchmarks/inflate.py --data /tmp/ct --concurrent 4 --json inflate.json

Why: in batch prediction on a GPU the first case's read is not overlapped with anything — the device waits
for one gzip stream to be inflated on one core (about 0.5 s of the 3.05 s that four 512x512x300 cases took on
an H100, docs/BENCHMARKS.md). A gzip stream has no index, so only speculative decoding (rapidgzip) can spread
one stream over several cores. This measures whether it pays on the machine at hand, in two situations:

- latency: one file alone (the first read), each contender with every parallelisation up to the core count;
- throughput: ``--concurrent`` files at once in as many threads (the reader threads in steady state), rapidgzip
  with the cores shared out between them.

The compressed bytes are in memory (the reader's ``read_bytes`` is not timed); each inflate is checked equal to
ISA-L's. Contenders run round-robin over ``--repeats`` after one untimed call each. rapidgzip comes with the
``bench`` extra; without it only ISA-L and zlib are timed.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import shlex
import sys
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from machine import device_name
from predict_e2e import ensure_volumes
from rich.console import Console
from timing_table import timing_summary, timing_table

from segkit.io.gzip_codec import GZIP_WBITS, gunzip

try:
    import rapidgzip
except ImportError:  # the bench extra is not installed
    rapidgzip = None


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=(512, 512, 300), metavar=("X", "Y", "Z"))
    parser.add_argument("--data", type=Path, required=True, help="folder for the volume (reused when present)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=4, help="files inflated at once in the throughput test")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args()


def parallelisations(cores: int) -> list[int]:
    """1, 2, 4, … up to ``cores``, and ``cores`` itself."""
    counts, p = [], 1
    while p < cores:
        counts.append(p)
        p *= 2
    return [*counts, cores]


def rapidgzip_inflate(data: bytes, parallelization: int) -> bytes:
    """The whole stream through rapidgzip with ``parallelization`` threads."""
    with rapidgzip.open(io.BytesIO(data), parallelization=parallelization) as stream:
        return stream.read()


def contenders(cores: int) -> dict[str, Callable[[bytes], bytes]]:
    """Each inflate, by name, for one file alone."""
    found: dict[str, Callable[[bytes], bytes]] = {
        "ISA-L, one call (segkit)": gunzip,
        "zlib, one call": lambda data: zlib.decompress(data, GZIP_WBITS),
    }
    if rapidgzip is not None:
        for p in parallelisations(cores):
            found[f"rapidgzip, {p} thread(s)"] = lambda data, p=p: rapidgzip_inflate(data, p)
    return found


def _round_robin(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    for fn in fns.values():
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def _concurrent(inflate: Callable[[bytes], bytes], data: bytes, files: int) -> Callable[[], None]:
    def run() -> None:
        with ThreadPoolExecutor(files) as pool:
            list(pool.map(inflate, [data] * files))
    return run


def main() -> None:
    args = _parse_args()
    paths, _ = ensure_volumes(args.data, 1, tuple(args.size), 0)
    data = paths[0].read_bytes()
    cores = os.cpu_count() or 1
    alone = contenders(cores)
    expected = gunzip(data)
    for name, inflate in alone.items():
        if inflate(data) != expected:
            raise SystemExit(f"{name}: inflated bytes differ from ISA-L's")
    latency = _round_robin({name: lambda fn=fn: fn(data) for name, fn in alone.items()}, args.repeats)
    share = max(1, cores // args.concurrent)
    together = {"ISA-L, one call (segkit)": gunzip}
    if rapidgzip is not None:
        together[f"rapidgzip, {share} thread(s) each"] = lambda d: rapidgzip_inflate(d, share)
    throughput = _round_robin({name: _concurrent(fn, data, args.concurrent) for name, fn in together.items()},
                              args.repeats)
    console = Console(width=120)
    size = "x".join(map(str, args.size))
    console.print(f"{paths[0]}: {len(data) / 1e6:.1f} MB gzip -> {len(expected) / 1e6:.1f} MB; {cores} cores")
    console.print(timing_table(f"one {size} file alone, {args.repeats} repeats", latency,
                               "ISA-L, one call (segkit)", "time / ISA-L", invert=True))
    console.print(timing_table(f"{args.concurrent} files at once, {args.repeats} repeats", throughput,
                               "ISA-L, one call (segkit)", "time / ISA-L", invert=True))
    print(shlex.join(sys.orig_argv))
    if args.json:
        args.json.write_text(json.dumps({
            "alone": timing_summary(latency), "concurrent": timing_summary(throughput),
            "files_at_once": args.concurrent,
            "cores": cores, "compressed_mb": len(data) / 1e6, "size": list(args.size), "repeats": args.repeats,
            "rapidgzip": rapidgzip.__version__ if rapidgzip else None, "python": platform.python_version(),
            "machine": device_name(torch.device("cpu")),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": shlex.join(sys.orig_argv)}, indent=1))


if __name__ == "__main__":
    main()
