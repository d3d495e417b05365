"""torch.distributed for ``torchrun``: process-group set-up, DDP wrapping, reductions and sharding.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them everything here is a
single-process no-op. NCCL is used on GPUs (one per process, ``cuda:LOCAL_RANK``), gloo on CPU.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from segkit.errors import SegkitError


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, prints and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world > 1


def dist_env() -> DistEnv:
    """The job layout from torchrun's environment variables (one process when they are absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    return DistEnv(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init_distributed(env: DistEnv, device: torch.device) -> torch.device:
    """Join the process group; returns this process's device (``cuda:LOCAL_RANK`` on GPUs)."""
    if not env.distributed or dist.is_initialized():
        return device
    if device.type == "cuda":
        if env.local_rank >= torch.cuda.device_count():
            raise SegkitError(f"LOCAL_RANK {env.local_rank} but only {torch.cuda.device_count()} GPU(s) visible; "
                              "start at most one process per GPU (--nproc_per_node)")
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=env.rank, world_size=env.world)
    return device


def shutdown() -> None:
    """Leave the process group (if one was joined)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: torch.nn.Module, env: DistEnv, device: torch.device, sync_batchnorm: bool) -> torch.nn.Module:
    """DDP around ``model`` in a distributed job (SyncBatchNorm first when asked); ``model`` otherwise."""
    if not env.distributed:
        return model
    if sync_batchnorm:
        if device.type != "cuda":
            raise SegkitError("train.sync_batchnorm works only on GPUs (torch's SyncBatchNorm); set it to false "
                              "for CPU runs")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def mean_over_ranks(value: float, device: torch.device) -> float:
    """The mean of ``value`` over all ranks (``value`` itself in one process)."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / dist.get_world_size()


def gather_rows(rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Every rank's ``rows`` (float64, shape [n_rank, k]; n may differ between ranks) stacked in rank order.

    Tensors, not pickled objects, cross between processes (on ``device``: NCCL needs GPU tensors).
    """
    if not dist.is_initialized():
        return rows
    counts = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, torch.tensor([rows.shape[0]], dtype=torch.int64, device=device))
    longest = int(max(c.item() for c in counts))
    padded = torch.full((longest, rows.shape[1]), float("nan"), dtype=torch.float64, device=device)
    padded[: rows.shape[0]] = rows.to(device)
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(count.item())] for part, count in zip(parts, counts, strict=True)]).cpu()


def broadcast_buffers(*modules: torch.nn.Module | None) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank.

    DDP keeps parameters identical but each rank updates its running statistics from its own
    batches after the last broadcast; validation and checkpoints need one model on all ranks.
    """
    if not dist.is_initialized():
        return
    for module in modules:
        if module is not None:
            for buffer in module.buffers():
                dist.broadcast(buffer.data, src=0)


def shard_indices(count: int, env: DistEnv) -> Sequence[int]:
    """The indices of ``count`` items that this rank handles (round robin)."""
    return range(env.rank, count, env.world)


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if dist.is_initialized():
        dist.barrier()
