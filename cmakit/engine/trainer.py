"""One fine-tuning loop for pretraining (captions, lam=0), FLYP (class prompts, lam=0) and CMA.

Recipe (PAPER.md §6): AdamW with weight decay on every parameter including the logit scale,
linear warm-up from 0 then cosine decay to 0, stepped once per optimizer step, seeded data
order, fp32. The loss is always the CMA loss of the whole *global* batch: every image sees all
``batch_size`` texts as negatives, whatever the number of processes and accumulation steps.

- One micro-batch per process (``grad_accum_steps`` = 1): features are gathered over ranks with
  gradients (:mod:`cmakit.engine.distributed`), so N processes x b pairs make the update of one
  process with N*b pairs.
- k micro-batches per process (the feature cache of GradCache and open_clip's ``--accum-freq``):
  pass 1 encodes every micro-batch without gradients and gathers the features of the global
  batch; the loss and its gradients ``G = dL/dfeatures`` and ``dL/ds`` are computed once on
  them; pass 2 re-encodes each micro-batch with gradients and back-propagates ``<features, G>``
  of its rows, replaying pass 1's RNG state so dropout (if any) draws alike. The summed
  gradients equal those of one batch of k*b pairs (the paper's batch of 512 on any memory),
  at the cost of one extra forward pass.

Shares and micro-batches need not be equal (:class:`cmakit.engine.batching.BatchPlan`), so a
global batch of 512 runs on 3, 5, 6 or 7 processes. ``micro_batch_size`` chooses ``k`` from the
number of processes. BatchNorm statistics (ResNet towers) are updated in both passes.

Two documented departures from the official script: an epoch is ``N // batch_size`` full
batches (the last incomplete batch, e.g. 143 of ImageNet's 1,281,167 images at 512, is left
out; the permutation changes every epoch), and the cosine spans the steps actually run, so
the lr reaches 0 at the last step (the official scheduler spans ``epochs * (N // B + 1)``).

Files under ``out_dir``: ``checkpoints/step_XXXXXXXX.pt`` (every epoch and every
``checkpoint_every_steps``), ``history.jsonl`` (one JSON line per optimizer step), and
``model.pt`` (final weights, written only when training ends normally).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from cmakit.common.constants import TOWERS
from cmakit.common.strict_config import to_dict
from cmakit.core.losses import CMALoss
from cmakit.engine import distributed as dist_util
from cmakit.engine.batching import (
    BatchPlan,
    ImageNormalizer,
    accumulation_steps,
    iter_micro_batches,
)
from cmakit.engine.train_state import LoopState, RunFiles, restore_or_start, write_checkpoint
from cmakit.models.weights import save_model

log = logging.getLogger(__name__)

# Fields that may change between a run and its resumption (they do not change the math).
RESUMABLE_CHANGES = frozenset(
    {
        "checkpoint_every_steps", "keep_checkpoints", "num_workers", "log_every", "progress",
        "device", "grad_accum_steps", "micro_batch_size", "grad_checkpointing",
    }
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning hyper-parameters; the defaults are the paper's CMA run (PAPER.md §6).

    Attributes:
        lam: CMA regulariser weight in [0, 1]; 0.0 gives FLYP (and plain CLIP pretraining).
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay, applied to all parameters (logit scale included).
        warmup_steps: Optimizer steps of linear warm-up from 0 to ``lr``.
        epochs: Passes over the data set.
        max_steps: Stop after this many optimizer steps (also the schedule length); None = all.
        batch_size: Global batch (pairs per optimizer step, summed over processes).
        grad_accum_steps: Micro-batches per process and optimizer step; the loss stays that of
            the whole global batch (feature cache, see the module docstring).
        micro_batch_size: Most pairs one process encodes at once; sets ``grad_accum_steps`` from
            the number of processes (``ceil(ceil(batch_size / W) / micro_batch_size)``).
            None = use ``grad_accum_steps``.
        grad_checkpointing: Recompute activations in the backward pass (open_clip's
            ``set_grad_checkpointing``): less memory, about a third more compute.
        precision: "fp32", "bf16" (autocast, CPU or GPU) or "fp16" (autocast + scaler, GPU).
        grad_clip_norm: Clip the global gradient norm to this value; None = no clipping.
        max_logit_scale: Cap on ``s = exp(logit_scale)`` after each step (open_clip uses 100
            when pretraining from scratch); None = no cap, as in the paper.
        seed: Seeds the data order (epoch e uses seed + e) and the torch RNG.
        checkpoint_every_steps: Extra checkpoint every K optimizer steps; 0 = per epoch only.
        keep_checkpoints: Keep only the newest K checkpoints; 0 = keep all.
        num_workers: DataLoader workers (ignored for an in-memory TensorDataset).
        log_every: Optimizer steps between log lines / progress-bar updates.
        progress: Show a tqdm progress bar on rank 0.
        device: "auto", "cpu", "cuda"; under torchrun each process uses cuda:LOCAL_RANK.
        towers: Which towers fine-tuning moves: "both" (the paper), "image" or "text"; the
            other tower is frozen (no gradient, no weight decay, batch-norm statistics kept).
            The logit scale trains in every case.
    """

    lam: float = 0.001
    lr: float = 1e-5
    weight_decay: float = 0.1
    warmup_steps: int = 500
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 512
    grad_accum_steps: int = 1
    micro_batch_size: int | None = None
    grad_checkpointing: bool = False
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    grad_clip_norm: float | None = None
    max_logit_scale: float | None = None
    seed: int = 0
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 0
    num_workers: int = 4
    log_every: int = 10
    progress: bool = True
    device: str = "auto"
    towers: Literal["both", "image", "text"] = "both"

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)

        need(0.0 <= self.lam <= 1.0, f"lam={self.lam} must be in [0, 1] (0 = FLYP).")
        need(self.lr > 0, f"lr={self.lr} must be > 0.")
        need(self.weight_decay >= 0, f"weight_decay={self.weight_decay} must be >= 0.")
        need(self.warmup_steps >= 0, f"warmup_steps={self.warmup_steps} must be >= 0.")
        need(self.epochs >= 1, f"epochs={self.epochs} must be >= 1.")
        need(self.max_steps is None or self.max_steps >= 1, f"max_steps={self.max_steps} >= 1.")
        need(self.batch_size >= 2, f"batch_size={self.batch_size} must be >= 2 (contrastive).")
        need(self.grad_accum_steps >= 1, f"grad_accum_steps={self.grad_accum_steps} must be >= 1.")
        need(
            self.batch_size >= self.grad_accum_steps,
            f"grad_accum_steps={self.grad_accum_steps} exceeds batch_size={self.batch_size}.",
        )
        need(
            self.micro_batch_size is None or self.micro_batch_size >= 1,
            f"micro_batch_size={self.micro_batch_size} must be >= 1 or None.",
        )
        need(
            self.micro_batch_size is None or self.grad_accum_steps == 1,
            f"give grad_accum_steps={self.grad_accum_steps} or "
            f"micro_batch_size={self.micro_batch_size}, not both.",
        )
        need(
            self.precision in ("fp32", "bf16", "fp16"),
            f"precision={self.precision!r}; choose one of ['fp32', 'bf16', 'fp16'].",
        )
        need(
            self.grad_clip_norm is None or self.grad_clip_norm > 0,
            f"grad_clip_norm={self.grad_clip_norm} must be > 0 or None.",
        )
        need(
            self.max_logit_scale is None or self.max_logit_scale > 0,
            f"max_logit_scale={self.max_logit_scale} must be > 0 or None.",
        )
        need(self.checkpoint_every_steps >= 0, "checkpoint_every_steps must be >= 0.")
        need(self.keep_checkpoints >= 0, "keep_checkpoints must be >= 0 (0 = keep all).")
        need(self.num_workers >= 0, f"num_workers={self.num_workers} must be >= 0.")
        need(self.log_every >= 1, f"log_every={self.log_every} must be >= 1.")
        need(self.towers in TOWERS, f"towers={self.towers!r}; choose one of {list(TOWERS)}.")


#: Parameters of neither tower: they train whatever the towers.
SHARED_PARAMETERS = ("logit_scale", "logit_bias")


def tower_of(name: str) -> str:
    """``"image"``, ``"text"`` or ``"shared"``: the tower an open_clip CLIP parameter belongs to
    (``visual.*`` is the image tower; the logit scale and bias are shared; the rest is text)."""
    if name in SHARED_PARAMETERS:
        return "shared"
    return "image" if name.startswith("visual.") else "text"


def freeze_towers(model: torch.nn.Module, towers: str) -> int:
    """Freeze the tower that ``towers`` leaves out: no gradient, and (image tower) batch-norm
    statistics kept by eval mode. Returns the number of parameters that still train.

    Raises:
        ValueError: ``towers`` is not one of :data:`TOWERS`, or the model has no ``visual``
            tower to tell the two apart.
    """
    if towers not in TOWERS:
        raise ValueError(f"towers={towers!r}; choose one of {list(TOWERS)}.")
    if towers != "both":
        named = dict(model.named_parameters())
        if not any(tower_of(n) == "image" for n in named):
            raise ValueError(f"towers={towers!r} needs an open_clip CLIP (a `visual` tower); "
                             f"{type(model).__name__} has none.")  # fmt: skip
        frozen = "text" if towers == "image" else "image"
        for name, param in named.items():
            if tower_of(name) == frozen:
                param.requires_grad_(False)
        if frozen == "image":
            model.visual.eval()
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a finished :func:`train` call produced.

    Attributes:
        final_step: Optimizer steps done in total (including any before a resume).
        history_path: ``history.jsonl``, one JSON object per optimizer step.
        checkpoint_path: The last full training checkpoint.
        model_path: Final weights (``model.pt``, :func:`cmakit.models.weights.save_model` format).
        wall_time_s: Seconds spent in this call's training loop.
        pairs_per_s: Mean throughput of this call (global pairs per second).
        last_terms: Loss terms of the last step (``contrastive_loss``, ``cma_loss``, ``loss``).
        bad_samples: Unreadable items skipped (counted on this rank).
        bad_paths: The first few of their paths.
    """

    final_step: int
    history_path: Path
    checkpoint_path: Path
    model_path: Path
    wall_time_s: float
    pairs_per_s: float
    last_terms: dict[str, float]
    bad_samples: int = 0
    bad_paths: tuple[str, ...] = ()


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak lr before optimizer step ``step`` (0-based).

    Linear warm-up from 0 (``step / warmup``) as in the official CMA scheduler, then a half
    cosine from 1 to 0 over the remaining ``total_steps - warmup_steps`` steps.
    """
    if step < warmup_steps:
        return step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))


def _forward(net: torch.nn.Module, images: torch.Tensor, tokens: torch.Tensor):
    """Normalised features and the multiplier ``s``; goes through ``net.forward`` for DDP."""
    out = net(images, tokens)
    if isinstance(out, dict):
        return out["image_features"], out["text_features"], out["logit_scale"]
    return out[0], out[1], out[2]


def _rng_state(device: str) -> tuple:
    cuda = torch.cuda.get_rng_state(device) if device.startswith("cuda") else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple, device: str) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


class _Stepper:
    """Runs optimizer steps: forward, gather, loss, backward, clip, update.

    ``k`` is the number of micro-batches that :meth:`step` receives per optimizer step.
    """

    def __init__(self, net, model, cfg: TrainConfig, device: str, total_steps: int, k: int = 1):
        self.net, self.model, self.cfg, self.device, self.k = net, model, cfg, device, k
        self.loss_fn = CMALoss(cfg.lam)
        dev_type = torch.device(device).type
        fused = {"fused": True} if dev_type in ("cpu", "cuda") else {}  # one kernel, ~4x faster
        trainable = [p for p in model.parameters() if p.requires_grad]  # a frozen tower: none
        self.opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, cfg.warmup_steps, total_steps)
        )
        self.scaler = torch.amp.GradScaler(dev_type, enabled=cfg.precision == "fp16")
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        self.autocast = torch.autocast(dev_type, dtype=dtype, enabled=dtype is not None)
        self.last_lr = cfg.lr * lr_factor(0, cfg.warmup_steps, total_steps)

    def step(self, micro_batches) -> dict[str, float]:
        """One optimizer step over this process's ``k`` micro-batches; returns loss terms."""
        self.last_lr = self.opt.param_groups[0]["lr"]
        sums = self.backward(micro_batches)
        if not math.isfinite(sums["loss"]):
            self.opt.zero_grad(set_to_none=True)
            return sums
        if self.cfg.grad_clip_norm is not None:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip_norm)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        self.sched.step()
        if self.cfg.max_logit_scale is not None:
            with torch.no_grad():
                self.model.logit_scale.clamp_(max=math.log(self.cfg.max_logit_scale))
        return sums

    def backward(self, micro_batches) -> dict[str, float]:
        """Leave ``dL/dθ`` of the global-batch loss in ``.grad``; returns the loss terms."""
        batches = list(micro_batches)
        terms = self._direct(*batches[0]) if self.k == 1 else self._cached(batches)
        return {name: float(value) for name, value in terms.items()}

    def _loss(self, img, txt, scale) -> dict[str, torch.Tensor]:
        terms = self.loss_fn(img, txt, scale, output_dict=True)
        return {**terms, "loss": sum(terms.values())}

    def _direct(self, images: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """One micro-batch: gather features with gradients, loss of the global batch, backward."""
        with self.autocast:
            img, txt, scale = _forward(self.net, images, tokens)
        img = dist_util.gather_with_grad(img.float())  # (B, D)
        txt = dist_util.gather_with_grad(txt.float())
        terms = self._loss(img, txt, scale.float())
        self.scaler.scale(terms["loss"]).backward()
        return {name: value.detach() for name, value in terms.items()}

    def _cached(self, batches: list) -> dict[str, torch.Tensor]:
        """k micro-batches, one global-batch loss: feature cache, then re-encode with grad."""
        states, img_parts, txt_parts = [], [], []
        with torch.no_grad():  # pass 1: features of every micro-batch
            for images, tokens in batches:
                states.append(_rng_state(self.device))
                with self.autocast:
                    img, txt, scale = _forward(self.net, images, tokens)  # as pass 2 will
                img_parts.append(img.float())
                txt_parts.append(txt.float())
        img, start = dist_util.gather_rows(torch.cat(img_parts))  # (B, D); this rank's first row
        txt, _ = dist_util.gather_rows(torch.cat(txt_parts))
        img, txt = img.requires_grad_(), txt.requires_grad_()
        scale = scale.float().detach().requires_grad_()
        terms = self._loss(img, txt, scale)
        if not math.isfinite(float(terms["loss"].detach())):
            return {name: value.detach() for name, value in terms.items()}
        g_img, g_txt, g_scale = torch.autograd.grad(terms["loss"], (img, txt, scale))
        # Every rank holds dL/d(all features) and DDP averages over W ranks, so the feature term
        # is scaled by W (as gather_with_grad's backward does); dL/ds is the same on every rank.
        world, row = dist_util.get_world_size(), start
        for m, ((images, tokens), state) in enumerate(zip(batches, states, strict=True)):
            last, n = m == len(batches) - 1, images.shape[0]
            sync = last or not hasattr(self.net, "no_sync")
            with contextlib.nullcontext() if sync else self.net.no_sync():
                _set_rng_state(state, self.device)  # the same dropout draws as pass 1
                with self.autocast:
                    img_m, txt_m, scale_m = _forward(self.net, images, tokens)
                surrogate = world * (
                    (img_m.float() * g_img[row : row + n]).sum()
                    + (txt_m.float() * g_txt[row : row + n]).sum()
                )
                if last:  # the logit scale's gradient, once per step
                    surrogate = surrogate + scale_m.float() * g_scale
                self.scaler.scale(surrogate).backward()
            row += n
        return {name: value.detach() for name, value in terms.items()}


def _check_precision(cfg: TrainConfig, device: str) -> None:
    if cfg.precision == "fp16" and not device.startswith("cuda"):
        raise ValueError("precision='fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU.")


def _plan(dataset: Dataset, cfg: TrainConfig, info: dist_util.DistInfo) -> BatchPlan:
    k = cfg.grad_accum_steps
    if cfg.micro_batch_size is not None:
        k = accumulation_steps(cfg.batch_size, info.world_size, cfg.micro_batch_size)
    n = len(dataset)
    if n < cfg.batch_size:
        raise ValueError(f"The data set has {n} items, fewer than batch_size={cfg.batch_size}.")
    return BatchPlan(n, cfg.batch_size, k, info.world_size, info.rank, cfg.seed)


def train(
    model: torch.nn.Module,
    dataset: Dataset,
    cfg: TrainConfig,
    *,
    out_dir: str | os.PathLike,
    resume: bool = False,
    model_name: str | None = None,
) -> TrainResult:
    """Fine-tune (or pretrain) an open_clip ``CLIP`` model with the CMA loss.

    Args:
        model: An open_clip ``CLIP``; trained in place and moved to the run's device.
        dataset: Map-style data set of ``(image [3, H, W] float, tokens [L] long)`` pairs;
            a ``TensorDataset(images, tokens)`` is index-sliced (fast path). Items may be
            :class:`cmakit.engine.batching.BadSample` (skipped and counted).
        cfg: Hyper-parameters.
        out_dir: Run folder for checkpoints, ``history.jsonl`` and ``model.pt``.
        resume: Continue from the newest checkpoint in ``out_dir/checkpoints`` if there is one.
        model_name: open_clip architecture name, stored in the weight files.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: bad batch split, too small a data set, a resume with changed settings.
        FloatingPointError: training diverged: the loss, the logit-scale multiplier or a weight
            became NaN/Inf (names the step and the last checkpoint whose weights are finite).
    """
    info = dist_util.init_distributed(cfg.device)
    _check_precision(cfg, info.device)
    plan = _plan(dataset, cfg, info)
    total = plan.steps_per_epoch * cfg.epochs
    total = min(total, cfg.max_steps) if cfg.max_steps else total
    torch.manual_seed(cfg.seed)
    model.to(info.device)
    freeze_towers(model, cfg.towers)
    if cfg.grad_checkpointing:
        if not hasattr(model, "set_grad_checkpointing"):
            raise ValueError(f"{type(model).__name__} has no set_grad_checkpointing(); "
                             "use an open_clip model or grad_checkpointing=False.")  # fmt: skip
        model.set_grad_checkpointing(True)
    net = model
    if info.world_size > 1:
        ids = [info.device] if info.device.startswith("cuda") else None
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=ids, broadcast_buffers=False
        )
    stepper = _Stepper(net, model, cfg, info.device, total, plan.grad_accum_steps)
    if plan.grad_accum_steps > 1 or info.world_size > 1:
        log.info("global batch %d = %d process(es) x micro-batches %s (rank %d)",
                 cfg.batch_size, info.world_size, plan.micro_sizes, info.rank)  # fmt: skip
    files = RunFiles(Path(out_dir), is_main=info.is_main)
    state = restore_or_start(files, stepper, cfg, resume, RESUMABLE_CHANGES)
    name = model_name or getattr(model, "cmakit_name", None)
    meta = {"config": to_dict(cfg), "model_name": name}
    loop = _Loop(stepper, plan, dataset, cfg, info, files, state, total, meta)
    result = loop.run()
    if info.is_main:
        save_model(model, files.model_path, name=name, config=meta["config"])
    dist_util.barrier()
    return dataclasses.replace(result, model_path=files.model_path)


class _Loop:
    """Epoch/step bookkeeping around :class:`_Stepper`: progress, history, checkpoints."""

    def __init__(self, stepper, plan, dataset, cfg, info, files, state: LoopState, total, meta):
        self.stepper, self.plan, self.dataset, self.cfg = stepper, plan, dataset, cfg
        self.info, self.files, self.state, self.total, self.meta = info, files, state, total, meta
        self.bad: list[str] = []
        self.to_input = ImageNormalizer(stepper.model, info.device)

    def _micro(self, it, k: int):
        for _ in range(k):
            images, tokens, bad = next(it)
            if bad:
                self.bad.extend(b.path for b in bad)
            if images.shape[0] == 0:
                raise RuntimeError(f"A whole micro-batch was unreadable (e.g. {bad[0].path}).")
            images = self.to_input(images.to(self.info.device, non_blocking=True))
            yield images, tokens.to(self.info.device)

    def _diverged(self, bar, what: str, step: int) -> None:
        """Stop training: ``what`` happened at optimizer step ``step``."""
        self.files.close(bar)
        raise FloatingPointError(
            f"Training diverged: {what} at step {step} (epoch {self.state.epoch}); last "
            f"finite checkpoint: {self.state.last_checkpoint or 'none written yet'}. "
            "Lower lr, set grad_clip_norm or max_logit_scale, or use fp32."
        )

    def _save(self) -> None:
        bad = [n for n, p in self.stepper.model.named_parameters() if not p.isfinite().all()]
        if bad:  # never write (and never call "last finite") weights holding NaN/Inf
            self._diverged(None, f"{len(bad)} weight tensor(s) became non-finite "
                           f"(e.g. {', '.join(bad[:3])})", self.state.step)  # fmt: skip
        path = write_checkpoint(self.files, self.stepper, self.state, self.meta, self.cfg)
        self.state.last_checkpoint = path

    def run(self) -> TrainResult:
        st, cfg = self.state, self.cfg
        bar = self.files.progress_bar(st.step, self.total, enabled=cfg.progress)
        t0, done_pairs, terms = time.perf_counter(), 0, {}
        pin = self.info.device.startswith("cuda")
        while st.step < self.total:
            it = iter_micro_batches(
                self.dataset, self.plan, st.epoch, st.batch_in_epoch,
                num_workers=cfg.num_workers, pin_memory=pin,
            )  # fmt: skip
            while st.batch_in_epoch < self.plan.steps_per_epoch and st.step < self.total:
                t_step = time.perf_counter()
                terms = self.stepper.step(self._micro(it, self.plan.grad_accum_steps))
                scale = float(self.stepper.model.logit_scale.detach().float().exp())
                if not math.isfinite(terms["loss"]):
                    self._diverged(bar, f"the loss became {terms['loss']}", st.step + 1)
                if not math.isfinite(scale):
                    self._diverged(bar, "the logit-scale multiplier exp(logit_scale) became "
                                   f"{scale}", st.step + 1)  # fmt: skip
                st.step += 1
                st.batch_in_epoch += 1
                dt = time.perf_counter() - t_step
                done_pairs += cfg.batch_size
                st.elapsed += dt
                self.files.record(st, terms, self.stepper, cfg.batch_size / dt, bar, cfg.log_every)
                every = cfg.checkpoint_every_steps
                if every and st.step % every == 0 and st.batch_in_epoch < self.plan.steps_per_epoch:
                    self._save()
            if st.batch_in_epoch >= self.plan.steps_per_epoch:
                st.epoch, st.batch_in_epoch = st.epoch + 1, 0
            self._save()
        wall = time.perf_counter() - t0
        self.files.close(bar)
        if not st.last_checkpoint:
            self._save()
        if self.bad:
            log.warning("Skipped %d unreadable images, e.g. %s", len(self.bad), self.bad[:5])
        return TrainResult(
            final_step=st.step,
            history_path=self.files.history_path,
            checkpoint_path=Path(st.last_checkpoint),
            model_path=self.files.model_path,
            wall_time_s=wall,
            pairs_per_s=done_pairs / wall if wall > 0 else 0.0,
            last_terms=terms,
            bad_samples=len(self.bad),
            bad_paths=tuple(self.bad[:10]),
        )
