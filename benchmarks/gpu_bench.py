"""One-GPU benchmark of the trainer on ViT-B/16 (random init): throughput, memory, MFU.

Measures the trainer's own optimizer step (``cmakit.engine.trainer._Stepper``: forward, loss, backward,
AdamW, scheduler) on synthetic data already on the GPU, for fp32 vs bf16 autocast, FLYP
(lam=0) vs CMA (lam=0.001), eager vs ``torch.compile``; then image/text embedding throughput.
Batch 512 (the paper's global batch) or the largest power-of-two below it that fits.
Model FLOPs per step are counted once with ``torch.utils.flop_counter`` at a small batch and
scaled linearly; MFU = achieved FLOP/s over the peak given by ``--peak-tflops`` (defaults:
H200 dense bf16 989, TF32 494.5 when fp32 matmuls may use TF32, else 67).

Designed to finish in about 8 minutes on one H200 (``--budget-s`` skips remaining variants).
``--tiny`` runs a small config on CPU as a smoke check. Results: printed and saved as JSON.

    python benchmarks/gpu_bench.py --out $OUT/gpu_bench.json
    python benchmarks/gpu_bench.py --tiny
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import open_clip
import torch
from torch.utils.flop_counter import FlopCounterMode

from cmakit.common.io import resolve_device
from cmakit.engine.embed import encode_images, encode_texts
from cmakit.engine.trainer import TrainConfig, _Stepper

log = logging.getLogger("gpu_bench")
TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _batch(model, n: int, device: str):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, *model.visual.image_size, generator=g).to(device)
    tokens = torch.randint(1, 49000, (n, model.context_length), generator=g)
    tokens[:, -1] = 49407
    return images, tokens.to(device)


def step_flops(model, device: str, n: int = 4) -> float:
    """Model FLOPs of one training step (forward + backward) per pair."""
    images, tokens = _batch(model, n, device)
    with FlopCounterMode(display=False) as counter:
        img, txt, s = model(images, tokens)
        (s * (img @ txt.T)).logsumexp(1).mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / n


def _peak(precision: str, args) -> float:
    if args.peak_tflops:
        return args.peak_tflops * 1e12
    if precision == "bf16":
        return 989e12
    return 494.5e12 if torch.backends.cuda.matmul.allow_tf32 else 67e12


def _warm_up(stepper, data, steps: int, device: str) -> bool:
    """Run ``steps`` optimizer steps; False on CUDA out-of-memory."""
    try:
        for _ in range(steps):
            stepper.step(data)
        _sync(device)
    except torch.OutOfMemoryError:
        return False
    return True


def run_variant(args, model_name, precision, lam, compiled, device, flops_per_pair) -> dict:
    torch.manual_seed(0)
    model = open_clip.create_model(model_name, force_quick_gelu=True).to(device)
    net = torch.compile(model) if compiled else model
    batch = args.batch
    while True:
        cfg = TrainConfig(lam=lam, lr=1e-5, warmup_steps=1, batch_size=batch, precision=precision,
                          device=device)  # fmt: skip
        stepper = _Stepper(net, model, cfg, device, args.steps + args.warmup + 1)
        data = [_batch(model, batch, device)]
        t_warm = time.perf_counter()
        if _warm_up(stepper, data, args.warmup, device):
            warm_s = time.perf_counter() - t_warm
            break
        del stepper, data  # the failed step's activations are gone once _warm_up returned
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        batch //= 2
        log.warning("out of memory: retrying with batch %d", batch)
        if batch < 8:
            raise RuntimeError("Even batch 8 does not fit in GPU memory.")
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        stepper.step(data)
    _sync(device)
    dt = (time.perf_counter() - t0) / args.steps
    peak_mem = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else 0.0
    achieved = flops_per_pair * batch / dt
    return {"precision": precision, "lam": lam, "compiled": compiled, "batch": batch,
            "step_s": dt, "pairs_per_s": batch / dt, "peak_mem_gib": peak_mem,
            "tflops": achieved / 1e12, "mfu": achieved / _peak(precision, args),
            "warmup_s": warm_s}  # fmt: skip


def embed_throughput(args, model_name, device) -> dict:
    model = open_clip.create_model(model_name, force_quick_gelu=True).to(device).eval()
    images, _ = _batch(model, args.embed_batch * 4, device)
    data = torch.utils.data.TensorDataset(images.cpu(), torch.zeros(len(images), dtype=torch.long))
    out = {}
    for precision in ("fp32", "bf16"):
        ctx = torch.autocast(
            torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16"
        )
        with ctx:
            encode_images(model, data, batch_size=args.embed_batch, device=device, progress=False)
            _sync(device)
            t0 = time.perf_counter()
            encode_images(model, data, batch_size=args.embed_batch, device=device, progress=False)
            _sync(device)
            out[f"images_per_s_{precision}"] = len(data) / (time.perf_counter() - t0)
            texts = [f"The nice {i}" for i in range(4 * args.embed_batch)]
            t0 = time.perf_counter()
            encode_texts(model, open_clip.get_tokenizer(model_name), texts,
                         batch_size=args.embed_batch, device=device, progress=False)  # fmt: skip
            _sync(device)
            out[f"texts_per_s_{precision}"] = len(texts) / (time.perf_counter() - t0)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="small config on CPU (smoke check)")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--embed-batch", type=int, default=1024)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--budget-s", type=float, default=420.0)
    p.add_argument("--peak-tflops", type=float, default=0.0)
    p.add_argument("--out", default="gpu_bench.json")
    args = p.parse_args(argv)
    if args.tiny:
        args.batch, args.steps, args.warmup, args.embed_batch = 32, 2, 1, 32
        args.no_compile = True
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    log.setLevel(logging.INFO)
    device = "cpu" if args.tiny else resolve_device("auto")
    if args.tiny:
        torch.set_num_threads(1)
    torch.backends.cuda.matmul.allow_tf32 = True  # what "fp32" means on an H200 in practice
    torch.backends.cudnn.allow_tf32 = True
    name = "ViT-B-16"
    if args.tiny:
        import tempfile

        folder = tempfile.mkdtemp()
        with open(f"{folder}/bench-tiny.json", "w") as f:
            json.dump(TINY, f)
        open_clip.add_model_config(folder)
        name = "bench-tiny"
    t_start = time.perf_counter()
    torch.manual_seed(0)
    flops = step_flops(open_clip.create_model(name, force_quick_gelu=True).to(device), device)
    results = {"device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
               "model": name, "train_gflops_per_pair": flops / 1e9, "fp32_matmul_tf32": True,
               "variants": []}  # fmt: skip
    variants = [("bf16", 0.0, False), ("bf16", 0.001, False), ("fp32", 0.0, False),
                ("fp32", 0.001, False), ("bf16", 0.001, True), ("fp32", 0.001, True)]  # fmt: skip
    for precision, lam, compiled in variants:
        if compiled and args.no_compile:
            continue
        if time.perf_counter() - t_start > args.budget_s:
            log.warning("budget spent: skipping %s lam=%s compiled=%s", precision, lam, compiled)
            continue
        r = run_variant(args, name, precision, lam, compiled, device, flops)
        results["variants"].append(r)
        log.info(json.dumps(r))
        torch.cuda.empty_cache() if device.startswith("cuda") else None
    results["embedding"] = embed_throughput(args, name, device)
    results["wall_s"] = time.perf_counter() - t_start
    log.info(json.dumps(results["embedding"]))
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    log.info("wrote %s (%.0f s)", args.out, results["wall_s"])


if __name__ == "__main__":
    main()
