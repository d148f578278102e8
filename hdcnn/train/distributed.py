"""Process-group handling for ``torchrun`` (DistributedDataParallel on CPU or GPU).

The same training code runs as one process (``python -m hdcnn train``) or as N processes
(``torchrun --nproc_per_node=N -m hdcnn train``). ``torchrun`` sets ``RANK``, ``WORLD_SIZE``
and ``LOCAL_RANK``; without them :func:`setup` returns a single-process context.
Backend: ``nccl`` when CUDA is available, else ``gloo``. Only rank 0 writes files and logs
progress.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands.

    Attributes:
        rank: global rank (0 in a single process).
        world_size: number of processes.
        local_rank: rank on this node (picks the GPU).
        device: ``cpu`` or ``cuda:<local_rank>``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(*, use_cuda: bool | None = None) -> DistContext:
    """Join the process group when launched by ``torchrun``.

    Args:
        use_cuda: force CUDA on/off; ``None`` uses it when available.

    Returns:
        The process's :class:`DistContext`.
    """
    cuda = torch.cuda.is_available() if use_cuda is None else use_cuda
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        device = torch.device("cuda", 0) if cuda else torch.device("cpu")
        return DistContext(device=device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    log.debug("rank %d/%d on %s", rank, world_size, device)
    return DistContext(rank, world_size, local_rank, device)


def wrap(model: nn.Module, ctx: DistContext) -> nn.Module:
    """Move ``model`` to the context's device; wrap in DDP when distributed."""
    model = model.to(ctx.device)
    if not ctx.distributed:
        return model
    ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def barrier(ctx: DistContext) -> None:
    """Wait for all processes (no-op in a single process)."""
    if ctx.distributed and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: float, ctx: DistContext) -> float:
    """Mean of a Python number over processes."""
    if not ctx.distributed:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return float(t.item()) / ctx.world_size


def cleanup(ctx: DistContext, *, ok: bool = True) -> None:
    """Leave the process group (``destroy_process_group``).

    Args:
        ctx: this process's context.
        ok: the run finished normally; then all processes meet at a barrier first (after an
            error the others may never arrive, so there is no barrier).
    """
    if ctx.distributed and dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()


def shard(indices: Iterable[int], ctx: DistContext) -> list[int]:
    """This process's share of ``indices`` (every ``world_size``-th, from its rank)."""
    return list(indices)[ctx.rank :: ctx.world_size]


def gather(local: list[Any], ctx: DistContext) -> list[Any]:
    """Every process's ``local`` list, concatenated in rank order (``all_gather_object``;
    one process: ``local`` itself)."""
    if not ctx.distributed:
        return local
    parts: list[list[Any] | None] = [None] * ctx.world_size
    dist.all_gather_object(parts, local)
    return [x for part in parts for x in (part or [])]


def main_says(flag: bool, ctx: DistContext) -> bool:
    """Rank 0's ``flag`` on every process (so that all take the same branch, e.g. "this stage
    is already on disk", even while rank 0 is writing it)."""
    if not ctx.distributed:
        return flag
    box: list[Any] = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def rank_from_environment() -> int:
    """The global rank ``torchrun`` gave this process (0 when not under ``torchrun``)."""
    return int(os.environ.get("RANK", "0"))
