"""Choose the world's pretraining recipe by its geometry: cold temperature, gap, cones, headroom.

Each candidate (world overrides + pretraining overrides of the ``cpu`` profile) is pretrained
(or loaded from the cache), then measured on VALIDATION data only: the ID validation split,
the validation OoD sets, the ID prompts ``"The nice {}"`` and the negative labels mined from
the lexicon at the ``cpu`` run's fraction (0.5). FLYP is the ``cpu`` run's fine-tuning recipe
(λ = 0, lr 1e-3, 10 epochs, batch 128, 20 warm-up steps) on the ID training split. Every value
is checked against :data:`cmakit.core.geometry.GEOMETRY_TARGETS` and the selection rule of
docs/world_design.md ("Geometry targets") picks the recipe. No test split is read.

Usage::

    CMAKIT_CACHE=/tmp/cache OMP_NUM_THREADS=1 python benchmarks/world_geometry.py \\
        --only s100,s100_lr5e3 --out runs/world_geometry

Progress goes to the log; one JSON line per candidate is appended to ``<out>/results.jsonl``
(candidates already there are not run again) and the table of all of them is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from cmakit.core.geometry import GEOMETRY_TARGETS
from cmakit.data.world import build_world, world_config
from cmakit.engine.pretrain import pretrain_clip, pretrain_config
from cmakit.engine.zero_shot import flyp_val_accuracy, format_targets, validation_geometry

log = logging.getLogger("world_geometry")

NEG_FRACTION = 0.5  # the ``cpu`` run's share of the lexicon kept as negative labels
#: The ``cpu`` run's model (cmakit.pipeline.config; the pretraining preset defaults to the ViT).
MODEL = "cmakit-tiny-rn"
#: The budget of the selection rule: no more pretraining pairs than today's 1000 x 256.
MAX_PAIRS = 1000 * 256

#: Candidates: name -> {"world": WorldConfig overrides, "pretrain": PretrainConfig overrides}
#: of the ``cpu`` profile, applied over :data:`BEFORE` (the recipe before issue 18), so a
#: candidate means the same whatever the profile's current recipe. Every candidate tried is
#: listed, in the order it was tried (``warm700_s100`` was chosen and is now the profile's).
BEFORE = {"world": {"species_synonyms": 0},
          "pretrain": {"init_logit_scale": None, "warm_steps": 0}}  # fmt: skip
SYN = {"species_synonyms": 2}
W600, W650, W700 = ({"init_logit_scale": 100.0, "warm_steps": n} for n in (600, 650, 700))
LR4E3_HOLD = {"lr": 4e-3, "hold_logit_scale": True}
B128 = {"init_logit_scale": 100.0, "steps": 2000, "batch_size": 128}
CANDIDATES: dict[str, dict[str, dict[str, Any]]] = {
    "base": {"world": {}, "pretrain": {}},  # the recipe before issue 18
    "s100": {"world": SYN, "pretrain": {"init_logit_scale": 100.0}},
    "s100_lr5e3": {"world": SYN, "pretrain": {"init_logit_scale": 100.0, "lr": 5e-3}},
    "s100_b128": {
        "world": SYN,
        "pretrain": {"init_logit_scale": 100.0, "steps": 2000, "batch_size": 128},
    },
    "s100_w200": {"world": SYN, "pretrain": {"init_logit_scale": 100.0, "warmup_steps": 200}},
    "s50": {"world": SYN, "pretrain": {"init_logit_scale": 50.0}},
    # two phases: warm (open_clip's 1/0.07) for warm_steps, then cold (100) for the rest
    "warm500_s100": {"world": SYN, "pretrain": {"init_logit_scale": 100.0, "warm_steps": 500}},
    "warm700_s100": {"world": SYN, "pretrain": {"init_logit_scale": 100.0, "warm_steps": 700}},
    # second round: the cold phase's scale held at 100 (AdamW's weight decay pulls a learned one
    # to ~70), a higher learning rate, smaller batches (the same pairs)
    "warm700_s100_hold": {"world": SYN, "pretrain": {**W700, "hold_logit_scale": True}},
    "warm900_s100": {"world": SYN, "pretrain": {"init_logit_scale": 100.0, "warm_steps": 900}},
    "warm700_s100_lr4e3": {"world": SYN, "pretrain": {**W700, "lr": 4e-3}},
    "warm700_s100_lr4e3_hold": {"world": SYN, "pretrain": {**W700, **LR4E3_HOLD}},
    "b128_warm1400_s100": {"world": SYN, "pretrain": {**B128, "warm_steps": 1400}},
    "b128_warm1400_s100_hold": {
        "world": SYN,
        "pretrain": {**B128, "warm_steps": 1400, "hold_logit_scale": True},
    },
    "warm600_s100_lr4e3_hold": {"world": SYN, "pretrain": {**W600, **LR4E3_HOLD}},
    "warm650_s100_lr4e3_hold": {"world": SYN, "pretrain": {**W650, **LR4E3_HOLD}},
}


def measure(name: str, spec: dict[str, dict[str, Any]], *, seed: int = 0,
            threads: int = 1) -> dict[str, Any]:  # fmt: skip
    """Pretrain (or load) one candidate and measure every target on validation data."""
    wcfg = world_config("cpu", **spec["world"])
    pcfg = pretrain_config(
        "cpu", **{"model": MODEL, "threads": threads, "seed": seed, **spec["pretrain"]}
    )
    log.info("[%s] building the world (%s)", name, spec["world"] or "cpu preset")
    world = build_world(wcfg)
    load0 = os.getloadavg()
    log.info("[%s] pretraining %s (load average %.2f)", name, spec["pretrain"], load0[0])
    model, tokenizer, info = pretrain_clip(wcfg, pcfg, world=world)
    load1 = os.getloadavg()
    log.info("[%s] pretrained in %.0f s (cached: %s); FLYP fine-tuning", name, info["train_s"],
             info["cached"])  # fmt: skip
    t0 = time.perf_counter()
    flyp = flyp_val_accuracy(model, tokenizer, world, seed=seed)
    flyp_s = time.perf_counter() - t0
    geo = validation_geometry(model, tokenizer, world, neg_keep=NEG_FRACTION, flyp_id_accuracy=flyp)
    log.info("[%s] validation:\n%s", name, format_targets(geo["targets"]))
    return {
        "name": name, "seed": seed, "spec": spec, **geo,
        "met": sum(bool(r["met"]) for r in geo["targets"]), "pairs": pcfg.steps * pcfg.batch_size,
        "model": pcfg.model, "pretrain_s": info["train_s"], "s_per_step": info["s_per_step"],
        "cached": info["cached"], "threads": threads, "loadavg_before": load0, "loadavg_after": load1,
        "flyp_s": flyp_s, "loss_last": info["loss_last"],
    }  # fmt: skip


def choose(records: list[dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """The selection rule of docs/world_design.md: ``(record, eligible)``.

    Eligible: every target met and at most :data:`MAX_PAIRS` pretraining pairs (same model).
    Among them the fewest pairs, ties (within 10%) to the higher zero-shot accuracy; with none
    eligible, the most targets met, then the same order.
    """
    n = len(GEOMETRY_TARGETS)
    eligible = [r for r in records if r["met"] == n and r["pairs"] <= MAX_PAIRS]
    pool = eligible or [r for r in records if r["met"] == max(x["met"] for x in records)]
    fewest = min(r["pairs"] for r in pool)
    tied = [r for r in pool if r["pairs"] <= 1.1 * fewest]
    return max(tied, key=lambda r: r["measured"]["id_accuracy"]), bool(eligible)


COLUMNS = (
    ("logit_scale", "scale", "{:.1f}"), ("modality_gap", "gap", "{:.3f}"),
    ("text_side_id_prompts", "prompts on text side", "{:.0%}"),
    ("text_side_negative_labels", "negatives on text side", "{:.1%}"),
    ("uni_i", "uni_i", "{:.2f}"), ("uni_t", "uni_t", "{:.2f}"), ("uni_cm", "uni_cm", "{:.2f}"),
    ("id_accuracy", "zero-shot", "{:.1%}"), ("flyp_id_accuracy", "FLYP", "{:.1%}"),
    ("negative_labels", "negatives", "{:d}"),
)  # fmt: skip


def table(records: list[dict[str, Any]]) -> str:
    """Markdown table of the candidates (validation data; a missed target is marked ✗)."""
    head = ["candidate", "recipe", *(c[1] for c in COLUMNS), "met", "pretrain s (load)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        met = {row["name"]: row["met"] for row in r["targets"]}
        cells = [f"{fmt.format(r['measured'][k])}{'' if met.get(k, True) else ' ✗'}"
                 for k, _, fmt in COLUMNS]  # fmt: skip
        recipe = ", ".join(f"{k}={v}" for k, v in {**r["spec"]["world"],
                                                    **r["spec"]["pretrain"]}.items())  # fmt: skip
        timing = f"{r['pretrain_s']:.0f} ({r['loadavg_before'][0]:.1f}-{r['loadavg_after'][0]:.1f})"
        lines.append("| " + " | ".join([r["name"], recipe or "cpu preset", *cells,
                                        f"{r['met']}/{len(GEOMETRY_TARGETS)}", timing]) + " |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated candidates (default all)")
    parser.add_argument("--seed", type=int, default=0, help="pretraining and FLYP seed")
    parser.add_argument("--out", default="runs/world_geometry", help="results folder")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (the pipeline pretrains with 2)")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    names = [n for n in args.only.split(",") if n] or list(CANDIDATES)
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        raise SystemExit(f"Unknown candidates {unknown}; valid: {list(CANDIDATES)}.")
    path = Path(args.out) / "results.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []
    for name in names:
        if any(r["name"] == name and r["seed"] == args.seed for r in done):
            continue
        t0 = time.perf_counter()
        record = measure(name, CANDIDATES[name], seed=args.seed, threads=args.threads)
        log.info("[%s] done in %.0f s: %d/%d targets met", name, time.perf_counter() - t0,
                 record["met"], len(GEOMETRY_TARGETS))  # fmt: skip
        with path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        done.append(record)
    records = [r for r in done if r["seed"] == args.seed]
    print(table(records))
    chosen, eligible = choose(records)
    print(f"\nchosen: {chosen['name']} ({'meets every target' if eligible else 'best found'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
