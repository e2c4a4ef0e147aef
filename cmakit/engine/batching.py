"""Seeded batch order for the trainer: the same global batches for any number of processes.

Epoch ``e`` visits ``torch.randperm(N, generator=seed + e)``; optimizer step ``b`` of the epoch
takes the ``B`` indices ``perm[b*B : (b+1)*B]`` (incomplete last batch dropped). The global
batch is cut into ``world_size`` contiguous per-rank shares (sizes differ by at most one, so
``B`` need not divide by the number of processes), and each share into ``grad_accum_steps``
contiguous micro-batches. Concatenating every rank's micro-batches in rank order restores the
global batch in its single-process order, which is how the trainer gathers features for the
loss of the whole global batch.

Two ways to fetch a slice: a ``TensorDataset`` is index-sliced directly (no per-item collation:
the fast path for in-memory data), any other map-style dataset goes through a ``DataLoader``
with worker processes. There, each item's random augmentation is seeded from
``(seed, epoch, index)`` alone (:func:`sample_seed`), so an item gets the same crop whatever the
number of processes, accumulation steps, workers, or a resume. Items that come back as
:class:`BadSample` (unreadable images) are dropped from the batch and reported.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from cmakit.common.constants import OPENAI_MEAN, OPENAI_STD
from cmakit.data.paper import BadSample  # noqa: F401  (re-exported: batches drop them)


def split_sizes(total: int, parts: int) -> list[int]:
    """``parts`` sizes summing to ``total`` that differ by at most one, larger ones first."""
    q, r = divmod(total, parts)
    return [q + (i < r) for i in range(parts)]


def accumulation_steps(batch_size: int, world_size: int, micro_batch_size: int) -> int:
    """Micro-batches per optimizer step so that no process encodes more than
    ``micro_batch_size`` pairs at once: ``ceil(ceil(B / W) / m)``.

    Example:
        >>> accumulation_steps(512, 3, 64)  # shares 171, 171, 170 -> 3 micro-batches of <= 57
        3
    """
    if micro_batch_size < 1:
        raise ValueError(f"micro_batch_size={micro_batch_size} must be >= 1.")
    share = -(-batch_size // world_size)
    return -(-share // micro_batch_size)


def check_split(batch_size: int, world_size: int, grad_accum_steps: int) -> None:
    """Raise if a global batch cannot give every process ``grad_accum_steps`` non-empty
    micro-batches.

    Raises:
        ValueError: ``batch_size < world_size * grad_accum_steps``, naming the fix.
    """
    if batch_size < world_size * grad_accum_steps:
        raise ValueError(
            f"batch_size={batch_size} is too small for {world_size} process(es) x "
            f"{grad_accum_steps} micro-batch(es): every micro-batch needs at least one pair. "
            "Use fewer processes, fewer accumulation steps, or a larger micro_batch_size."
        )


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """How a global batch is split. ``batch_size`` is the global batch of one optimizer step.

    Any ``batch_size >= world_size * grad_accum_steps`` is allowed: per-rank shares and
    micro-batches differ by at most one pair (:func:`split_sizes`).
    """

    num_items: int
    batch_size: int
    grad_accum_steps: int
    world_size: int
    rank: int
    seed: int

    def __post_init__(self) -> None:
        check_split(self.batch_size, self.world_size, self.grad_accum_steps)

    @property
    def steps_per_epoch(self) -> int:
        return self.num_items // self.batch_size

    @property
    def shares(self) -> list[int]:
        """Pairs of the global batch held by each rank (sum = ``batch_size``)."""
        return split_sizes(self.batch_size, self.world_size)

    @property
    def micro_sizes(self) -> list[int]:
        """Sizes of this rank's micro-batches (sum = its share)."""
        return split_sizes(self.shares[self.rank], self.grad_accum_steps)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """``[N]`` permutation of item indices for ``epoch`` (identical on all ranks)."""
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_items, generator=g)

    def local_slices(self, epoch: int, start_step: int = 0) -> Iterator[torch.Tensor]:
        """This rank's index slices, one per micro-batch, from optimizer step ``start_step``."""
        order = self.epoch_order(epoch)
        first = sum(self.shares[: self.rank])
        for step in range(start_step, self.steps_per_epoch):
            lo = step * self.batch_size + first
            for size in self.micro_sizes:
                yield order[lo : lo + size]
                lo += size


def collate_pairs(items: list) -> tuple[torch.Tensor, torch.Tensor, list[BadSample]]:
    """Stack ``(image, tokens)`` pairs, dropping and returning :class:`BadSample` items."""
    bad = [it for it in items if isinstance(it, BadSample)]
    good = [it for it in items if not isinstance(it, BadSample)]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), bad
    images = torch.stack([torch.as_tensor(g[0]) for g in good])
    tokens = torch.stack([torch.as_tensor(g[1]) for g in good])
    return images, tokens, bad


class ImageNormalizer:
    """Turns ``uint8`` image batches ``[B, 3, H, W]`` into the model's normalised float input.

    In-memory data sets may keep images as ``uint8`` (4x less memory); they are scaled to
    [0, 1] and normalised with the model's ``visual.image_mean/std`` (OpenAI's by default).
    Float batches pass through unchanged: they are assumed to be preprocessed already.
    """

    def __init__(self, model: torch.nn.Module, device: str) -> None:
        mean = getattr(model.visual, "image_mean", None) or OPENAI_MEAN
        std = getattr(model.visual, "image_std", None) or OPENAI_STD
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            return images
        return (images.float() / 255.0 - self.mean) / self.std


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """64-bit seed of one item's augmentation, a hash of ``(seed, epoch, index)`` only."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class _SeededItems(Dataset):
    """Wraps a dataset so that each item's random transforms are seeded by
    :func:`sample_seed`: torch's global CPU generator, forked so the caller's stream (and any
    CUDA generator) is untouched."""

    def __init__(self, dataset: Dataset, seed: int, epoch: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(sample_seed(self.seed, self.epoch, int(index)))
            return self.dataset[int(index)]


def iter_micro_batches(
    dataset: Dataset,
    plan: BatchPlan,
    epoch: int,
    start_step: int = 0,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[BadSample]]]:
    """Yield ``(images [b, 3, H, W], tokens [b, L], bad_samples)`` for this rank, in order.

    Args:
        dataset: ``TensorDataset(images, tokens)`` (fast path) or a map-style dataset of
            ``(image, tokens)`` pairs or :class:`BadSample`.
        plan: The batch split.
        epoch: Epoch number (selects the permutation).
        start_step: First optimizer step of the epoch to produce (resume).
        num_workers: DataLoader worker processes (general path only).
        pin_memory: Pin host memory (general path, CUDA).
    """
    slices = plan.local_slices(epoch, start_step)
    if isinstance(dataset, TensorDataset):
        images, tokens = dataset.tensors[:2]
        for idx in slices:
            yield images[idx], tokens[idx], []
        return
    loader = DataLoader(
        _SeededItems(dataset, plan.seed, epoch),
        batch_sampler=[s.tolist() for s in slices],
        num_workers=num_workers,
        collate_fn=collate_pairs,
        pin_memory=pin_memory,
    )
    yield from loader
