"""Running the comparison's runs: one at a time in this process, or one per GPU at a time in subprocesses.

With several GPUs each run is a ``segkit compare --worker RUN_FOLDER`` subprocess that sees exactly one GPU
(``CUDA_VISIBLE_DEVICES``); as soon as one finishes, the next run starts on the GPU it freed. Each
subprocess writes its output to ``RUN_FOLDER/log.txt``.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from segkit.errors import SegkitError

LOG = "log.txt"


def gpu_ids(request: str) -> list[str]:
    """The GPUs to spread runs over: ``auto`` (every visible GPU) or a count; an empty list means in-process."""
    visible = torch.cuda.device_count()
    if request == "auto":
        count = visible
    else:
        try:
            count = int(request)
        except ValueError:
            count = -1
        if count < 0:
            raise SegkitError(f"--gpus {request}: give auto or a number of GPUs (0 runs in this process)")
        if count > visible:
            raise SegkitError(f"--gpus {request}: only {visible} GPU(s) visible; use --gpus {visible} or auto")
    if count <= 1:
        return []  # one GPU or the CPU: runs go one after another in this process
    listed = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return (listed or [str(i) for i in range(visible)])[:count]


@dataclass(frozen=True)
class Job:
    """A subprocess command for one run."""

    name: str
    folder: Path


def worker_command(folder: Path) -> list[str]:
    """The command that executes the run prepared in ``folder``."""
    return [sys.executable, "-m", "segkit", "compare", "--worker", str(folder)]


def run_on_gpus(jobs: list[Job], gpus: list[str], started: Callable[[Job, str], None],
                finished: Callable[[Job, int], None], command: Callable[[Path], list[str]] = worker_command) -> None:
    """Run every job, at most one per GPU at a time; ``started``/``finished`` report progress (from threads)."""
    free: queue.Queue[str] = queue.Queue()
    for gpu in gpus:
        free.put(gpu)

    def one(job: Job) -> None:
        gpu = free.get()
        try:
            started(job, gpu)
            with (job.folder / LOG).open("ab") as log:
                code = subprocess.call(command(job.folder), stdout=log, stderr=subprocess.STDOUT,
                                       env={**os.environ, "CUDA_VISIBLE_DEVICES": gpu})
        finally:
            free.put(gpu)
        finished(job, code)

    with ThreadPoolExecutor(max_workers=len(gpus)) as pool:
        list(pool.map(one, jobs))
