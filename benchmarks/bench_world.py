"""Benchmark the embedded world: generation time, pretraining speed and zero-shot quality.

Prints one JSON line per run (world generation seconds, seconds per pretraining step, total
pretraining seconds, zero-shot ID accuracy, modality gap, MCM / NegLabel AUROC per OoD set).
Pretraining always starts fresh (a temporary cache folder), so the timing is real.

Examples::

    python benchmarks/bench_world.py --profile cpu
    python benchmarks/bench_world.py --profile cpu --pretrain '{"steps": 600}' --world-only
    python benchmarks/bench_world.py --profile smoke --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time

import torch

from cmakit.data.world import build_world, world_config
from cmakit.engine.pretrain import pretrain_clip, pretrain_config

log = logging.getLogger("bench_world")


def bench(
    profile: str, world_params: dict, pretrain_params: dict, threads: int, world_only: bool
) -> dict:
    """Build the world, pretrain from scratch and run the zero-shot report; return the numbers."""
    from cmakit.engine.pretrain import zero_shot_report

    torch.set_num_threads(threads)
    wcfg = world_config(profile, **world_params)
    t0 = time.perf_counter()
    world = build_world(wcfg)
    row = {"profile": profile, "threads": threads, "world_s": round(time.perf_counter() - t0, 2)}
    row["world_images"] = sum(len(x) for x in world.raw_images.values())
    if world_only:
        return row
    pcfg = pretrain_config(profile, threads=threads, progress=False, **pretrain_params)
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer, info = pretrain_clip(wcfg, pcfg, cache_dir=tmp, world=world)
        summary = zero_shot_report(model, tokenizer, world, out_dir=tmp, pretrain_info=info)
    row.update(
        model=pcfg.model,
        steps=info["steps"],
        batch_size=pcfg.batch_size,
        s_per_step=round(info["s_per_step"], 4),
        pretrain_s=round(info["train_s"], 1),
        loss_first=round(info["loss_first"], 3),
        loss_last=round(info["loss_last"], 3),
    )
    row.update({k: round(v, 3) for k, v in summary["headline"].items()})
    row["gap_pretrain_pairs"] = round(summary["modality_gap"]["pretrain_pairs"], 3)
    row["logit_scale"] = round(summary["logit_scale"], 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--world", default="{}", help="JSON overrides of WorldConfig")
    parser.add_argument("--pretrain", default="{}", help="JSON overrides of PretrainConfig")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--world-only", action="store_true", help="time world generation only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    row = bench(
        args.profile,
        json.loads(args.world),
        json.loads(args.pretrain),
        args.threads,
        args.world_only,
    )
    print(json.dumps(row), flush=True)  # noqa: T201  (a benchmark script's output)


if __name__ == "__main__":
    main()
