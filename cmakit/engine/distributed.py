"""Process-group helpers for multi-GPU and multi-node runs under ``torchrun``.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init_distributed` reads them,
starts the process group (NCCL on CUDA, Gloo otherwise) and picks this process's device. Without
those variables everything degrades to a single process: rank 0 of a world of 1.

:func:`gather_with_grad` concatenates a per-rank batch of features across ranks so that every rank
can compute the loss of the *global* batch. Its backward pass sums the incoming gradients over
ranks (an all-reduce) and keeps this rank's rows. Every rank computes the same global loss L, so
rank r receives ``W * dL/df_r`` for its own features; DistributedDataParallel then averages
parameter gradients over the W ranks, which cancels the factor W and yields exactly ``dL/dθ`` —
the update of one process holding the whole global batch. Parameters used directly in the loss
(the logit scale) get ``dL/ds`` on every rank, and averaging leaves that unchanged.
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime
import logging
import os

import torch
import torch.distributed as dist

from cmakit.common.io import resolve_device

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: Global rank, 0 .. world_size-1.
        world_size: Number of processes in the job (1 without torchrun).
        local_rank: Rank on this node; selects the GPU.
        device: The torch device this process computes on (``"cpu"``, ``"cuda:3"``).
    """

    rank: int
    world_size: int
    local_rank: int
    device: str

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes files and shows progress."""
        return self.rank == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` as set by ``torchrun`` (1 when unset)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    """True when a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """Global rank of this process (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes in the group (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def init_distributed(device: str = "auto", *, timeout_min: float = 30.0) -> DistInfo:
    """Start the process group from ``torchrun``'s environment variables, once.

    Args:
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``. Under torchrun with CUDA the process uses
            ``cuda:LOCAL_RANK``; an explicit ``"cuda:N"`` is kept only for single-process runs.
        timeout_min: Collective timeout in minutes.

    Returns:
        The :class:`DistInfo` of this process. Calling it again returns the same answer.

    Raises:
        ValueError: if ``WORLD_SIZE`` > 1 but ``RANK`` is missing (not launched by torchrun).
    """
    dev = resolve_device(device)
    world = env_world_size()
    if world <= 1 and not dist.is_initialized():
        return DistInfo(rank=0, world_size=1, local_rank=0, device=dev)
    if "RANK" not in os.environ and not dist.is_initialized():
        raise ValueError(
            f"WORLD_SIZE={world} but RANK is not set; launch multi-process runs with "
            "`torchrun --nproc_per_node=N -m cmakit ...`."
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.startswith("cuda"):
        dev = f"cuda:{local_rank}"
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        backend = "nccl" if dev.startswith("cuda") else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_min))
        atexit.register(cleanup)  # before interpreter teardown, while its threads can be joined
        log.info("process group %s: rank %d of %d", backend, dist.get_rank(), world)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev)


def barrier() -> None:
    """Wait for all ranks (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: object, src: int = 0) -> object:
    """Send a picklable object from rank ``src`` to all ranks (identity in one process)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def _all_gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """All-gather ``x [b_r, ...]`` whose row count may differ per rank; also the counts."""
    world = dist.get_world_size()
    sizes = torch.tensor([x.shape[0]], device=x.device)
    all_sizes = [torch.zeros_like(sizes) for _ in range(world)]
    dist.all_gather(all_sizes, sizes)
    counts = [int(s.item()) for s in all_sizes]
    pad = max(counts) - x.shape[0]
    xp = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))]) if pad else x.contiguous()
    parts = [torch.empty_like(xp) for _ in range(world)]
    dist.all_gather(parts, xp)
    return torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)]), counts  # (sum b_r, ...)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather of rows with an all-reduce(sum) backward; ranks may hold different row counts."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # x: (b_r, D)
        out, ctx.counts = _all_gather_rows(x)
        ctx.rank = dist.get_rank()
        return out  # (sum b_r, D)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.counts[: ctx.rank])
        return grad[start : start + ctx.counts[ctx.rank]]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` over ranks in rank order, keeping the autograd graph.

    Args:
        x: ``[b_r, ...]`` rows held by this rank (row counts may differ between ranks).

    Returns:
        ``[sum_r b_r, ...]``; in a single process, ``x`` itself. See the module docstring for why
        the backward pass sums over ranks.
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


def gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate ``x`` over ranks in rank order, without gradient (a feature cache).

    Args:
        x: ``[b_r, ...]`` rows held by this rank (row counts may differ between ranks).

    Returns:
        ``([sum_r b_r, ...], start)``: the rows of all ranks and the index of this rank's first
        row in them (0 in a single process, where ``x`` itself is returned, detached).
    """
    if not is_distributed():
        return x.detach(), 0
    rows, counts = _all_gather_rows(x.detach())
    return rows, sum(counts[: dist.get_rank()])


def all_reduce_sum(value: float | int, device: str = "cpu") -> float:
    """Sum a Python number over ranks (identity in one process)."""
    if not is_distributed():
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


#: How long a rank waits at exit for the others before it tears its process group down anyway.
EXIT_BARRIER_S = 60.0


def cleanup() -> None:
    """Wait for every rank, then destroy the process group (a no-op without one).

    :func:`init_distributed` registers this to run at exit. Left to the interpreter's teardown, a
    process group's communication threads can still be running when their C++ objects are
    destroyed, and the process aborts ("terminate called without an active exception") after
    its work has finished; a rank that leaves while another still talks to it does the same. The
    barrier is bounded: a rank whose peer died does not wait longer than ``EXIT_BARRIER_S``.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=EXIT_BARRIER_S))
        else:
            dist.barrier()
    except RuntimeError as err:  # a peer is gone: nothing left to wait for
        log.warning("leaving without the other ranks: %s", err)
    dist.destroy_process_group()
