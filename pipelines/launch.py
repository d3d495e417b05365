"""``segkit train --gpus N``: start ``torchrun`` with N processes running the same command."""

from __future__ import annotations

import subprocess
import sys

import torch
from rich.console import Console


def without_gpus_flag(argv: list[str]) -> list[str]:
    """The command line minus ``--gpus N`` / ``--gpus=N`` (each process must not launch again)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--gpus":
            skip = True
        elif not arg.startswith("--gpus="):
            out.append(arg)
    return out


def torchrun_command(processes: int, argv: list[str]) -> list[str]:
    """The torchrun invocation (single node, rendezvous on a free local port)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "segkit", *without_gpus_flag(argv)]


def launch_processes(processes: int, argv: list[str], console: Console | None = None) -> int:
    """Run torchrun and return its exit code; on a machine without enough GPUs the processes use gloo on CPU."""
    console = console or Console()
    available = torch.cuda.device_count()
    if available < processes:
        console.print(f"{available} GPU(s) visible for {processes} processes: "
                      + ("training on CPU with gloo" if available == 0 else "some processes will fail to start"))
    return subprocess.call(torchrun_command(processes, argv))
