"""Seeded batch order for the trainer: the same global order for any number of processes.

Epoch ``e`` visits ``torch.randperm(N, generator=seed + e)``; optimizer step ``b`` of the epoch
takes the ``B`` indices ``perm[b*B : (b+1)*B]`` (incomplete last batch dropped). Those are cut
into ``grad_accum_steps`` micro-batches, and each micro-batch into ``world_size`` contiguous
per-rank slices, so gathering features over ranks restores the single-process micro-batch.

Two ways to fetch a slice: a ``TensorDataset`` is index-sliced directly (no per-item collation:
the fast path for in-memory data), any other map-style dataset goes through a ``DataLoader``
with worker processes. There, random augmentations are seeded per batch from the batch's
indices, so a resumed run draws the same crops whatever ``num_workers`` is. Items that come back
as :class:`BadSample` (unreadable images) are dropped from the batch and reported.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from cmakit.common.constants import OPENAI_MEAN, OPENAI_STD
from cmakit.data.paper import BadSample  # noqa: F401  (re-exported: batches drop them)


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """How a global batch is split. ``batch_size`` is the global batch of one optimizer step."""

    num_items: int
    batch_size: int
    grad_accum_steps: int
    world_size: int
    rank: int
    seed: int

    @property
    def steps_per_epoch(self) -> int:
        return self.num_items // self.batch_size

    @property
    def local_batch(self) -> int:
        return self.batch_size // (self.grad_accum_steps * self.world_size)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """``[N]`` permutation of item indices for ``epoch`` (identical on all ranks)."""
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_items, generator=g)

    def local_slices(self, epoch: int, start_step: int = 0) -> Iterator[torch.Tensor]:
        """This rank's index slices, one per micro-batch, from optimizer step ``start_step``."""
        order = self.epoch_order(epoch)
        micro = self.batch_size // self.grad_accum_steps
        lb = self.local_batch
        for step in range(start_step, self.steps_per_epoch):
            for m in range(self.grad_accum_steps):
                lo = step * self.batch_size + m * micro + self.rank * lb
                yield order[lo : lo + lb]


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


class _SeededItems(Dataset):
    """Wraps a dataset so that each batch's random transforms are seeded by its indices."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index]

    def __getitems__(self, indices: list[int]) -> list:
        key = zlib.crc32(np.asarray(indices, dtype=np.int64).tobytes()) ^ (self.seed & 0xFFFFFFFF)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(key)
            return [self.dataset[int(i)] for i in indices]


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
        _SeededItems(dataset, plan.seed),
        batch_sampler=[s.tolist() for s in slices],
        num_workers=num_workers,
        collate_fn=collate_pairs,
        pin_memory=pin_memory,
    )
    yield from loader
