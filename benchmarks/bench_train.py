"""CPU training throughput of the trainer on a tiny-world-sized model, and the CMA term's cost.

Prints:
  * pairs/s of :func:`cmakit.engine.trainer.train` (TensorDataset fast path, history and a checkpoint
    included) for FLYP (lam=0) and CMA (lam=0.001);
  * pairs/s of the bare optimizer step (the same code path, without the run-folder bookkeeping);
  * the share of a training step spent in the loss, and in the CMA regulariser on top of the
    FLYP loss (forward + backward of the loss on [B, D] features, vs open_clip's ClipLoss).

Usage: python benchmarks/bench_train.py [--model cmakit-tiny] [--batch 256] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time

import open_clip
import torch

from cmakit.core.losses import CMALoss
from cmakit.engine.trainer import TrainConfig, _Stepper, train
from cmakit.models.factory import register_model_configs

log = logging.getLogger("bench_train")
FALLBACK = {  # the world's tiny architecture, if its JSON file is not there
    "embed_dim": 128,
    "vision_cfg": {"image_size": 32, "layers": 3, "width": 128, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 3},
}


def _model(name: str) -> torch.nn.Module:
    if name not in register_model_configs() and name not in open_clip.list_models():
        folder = tempfile.mkdtemp()
        with open(f"{folder}/{name}.json", "w") as f:
            json.dump(FALLBACK, f)
        open_clip.add_model_config(folder)
    torch.manual_seed(0)
    return open_clip.create_model(name)


def _data(model, n: int) -> torch.utils.data.TensorDataset:
    size, ctx = model.visual.image_size, model.context_length
    images = torch.randint(0, 256, (n, 3, *size), dtype=torch.uint8)
    tokens = torch.randint(1, 49000, (n, ctx))
    tokens[:, -1] = 49407
    return torch.utils.data.TensorDataset(images, tokens)


def _timeit(fn, repeats: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def bench_loop(name: str, batch: int, steps: int) -> dict[str, float]:
    out = {}
    for lam in (0.0, 0.001):
        model = _model(name)
        cfg = TrainConfig(lam=lam, lr=1e-4, warmup_steps=5, epochs=1, batch_size=batch,
                          num_workers=0, progress=False, device="cpu")  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            res = train(model, _data(model, batch * steps), cfg, out_dir=tmp)
        out[f"train_pairs_per_s_lam{lam}"] = res.pairs_per_s
    return out


def bench_step_and_loss(name: str, batch: int, steps: int) -> dict[str, float]:
    model = _model(name)
    cfg = TrainConfig(lr=1e-4, warmup_steps=5, batch_size=batch, device="cpu")
    stepper = _Stepper(model, model, cfg, "cpu", steps + 1)
    data = _data(model, batch).tensors
    from cmakit.engine.batching import ImageNormalizer

    norm = ImageNormalizer(model, "cpu")
    step_s = _timeit(lambda: stepper.step([(norm(data[0]), data[1])]), steps)

    def fwd_bwd():
        img, txt, s = model(norm(data[0]), data[1])
        sum(CMALoss(0.001)(img, txt, s, output_dict=True).values()).backward()

    fwd_bwd_s = _timeit(fwd_bwd, max(3, steps // 4))
    d = model.text_projection.shape[1]
    feats = [
        torch.nn.functional.normalize(torch.randn(batch, d), dim=-1).requires_grad_()
        for _ in range(2)
    ]
    scale = torch.tensor(100.0, requires_grad=True)

    def run(loss_fn):
        def go():
            out = loss_fn(feats[0], feats[1], scale)
            (out if torch.is_tensor(out) else sum(out)).backward()

        return go

    cma_s = _timeit(run(CMALoss(0.001)), 200)
    flyp_s = _timeit(run(open_clip.loss.ClipLoss()), 200)
    return {
        "step_pairs_per_s": batch / step_s,
        "step_ms": 1e3 * step_s,
        "forward_backward_ms": 1e3 * fwd_bwd_s,
        "loss_ms_cma": 1e3 * cma_s,
        "loss_ms_flyp_open_clip": 1e3 * flyp_s,
        # The whole CMA loss (FLYP + regulariser) bounds the regulariser's share from above.
        "cma_loss_share_of_step_pct": 100 * cma_s / step_s,
        "cma_minus_flyp_share_of_step_pct": 100 * (cma_s - flyp_s) / step_s,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cmakit-tiny")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    torch.set_num_threads(args.threads)
    figures = {"model": args.model, "batch": args.batch, "threads": args.threads}
    figures.update(bench_step_and_loss(args.model, args.batch, args.steps))
    figures.update(bench_loop(args.model, args.batch, args.steps))
    for key, value in figures.items():
        log.info("%-32s %s", key, f"{value:.3f}" if isinstance(value, float) else value)


if __name__ == "__main__":
    main()
