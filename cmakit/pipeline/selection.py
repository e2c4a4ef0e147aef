"""Choose the fine-tuning recipe on validation data only: learning rate, steps and λ.

The rule (written down in ``docs/world_study.md`` before any result was computed) reads the
ID validation split and the validation OoD sets of the run's benchmark, never its ID test split
nor a test OoD set. Coordinate-wise, means over the run's seeds:

1. the smallest learning rate whose FLYP ID validation accuracy is within ``tie_points`` of
   the best;
2. at that rate, among the epochs the profile's time budget allows (``max_epochs``), the
   fewest whose FLYP ID validation accuracy is within ``tie_points`` of the best of them
   (longer runs are measured and reported, not chosen);
3. at those, among the λ whose CMA ID validation accuracy is at least FLYP's minus
   ``max_drop_points``, the λ with the best NegLabel AUROC on the validation OoD sets (mean of
   the near and far groups); the smallest λ if none qualifies.

Command line: ``python -m cmakit.pipeline.selection --profile cpu --out docs/world_selection.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmakit.common.io import fingerprint, read_json, write_json
from cmakit.common.strict_config import to_dict
from cmakit.engine.bundle import EmbeddingBundle
from cmakit.engine.evaluate import evaluate
from cmakit.pipeline import products, steps
from cmakit.pipeline.config import RunConfig, model_lam, resolve

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SelectionRule:
    """The candidates and tolerances of the selection rule (accuracies in points, 0-100).

    Attributes:
        lrs: Learning rates tried with FLYP at ``lr_epochs`` epochs.
        lr_epochs: Epochs of the learning-rate stage.
        epochs: Epochs tried with FLYP at the chosen learning rate.
        max_epochs: The most epochs the profile's time budget allows (the ``cpu`` profile's
            first run must fit 10 minutes on 2 cores with 18 fine-tunings); candidates above
            it are measured and reported but cannot be chosen.
        lams: CMA weights tried at the chosen learning rate and epochs.
        tie_points: Accuracies within this many points of the best count as tied; the gentler
            recipe (smaller rate, fewer epochs) wins a tie.
        max_drop_points: A λ is eligible if its ID validation accuracy is at least FLYP's minus
            this many points.
    """

    lrs: tuple[float, ...] = (3e-5, 1e-4, 3e-4, 1e-3)
    lr_epochs: int = 10
    epochs: tuple[int, ...] = (3, 10, 30)
    max_epochs: int = 10
    lams: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    tie_points: float = 0.5
    max_drop_points: float = 1.0


# ---------------------------------------------------------------- pure choices
def smallest_within(values: Sequence[float], scores: Sequence[float], tol: float) -> float:
    """The smallest of ``values`` whose score is within ``tol`` of the best score.

    >>> smallest_within([1, 2, 3], [70.0, 71.2, 71.5], 0.5)
    2
    """
    if len(values) != len(scores) or not values:
        raise ValueError(f"values ({len(values)}) and scores ({len(scores)}) must be non-empty "
                         "and of equal length.")  # fmt: skip
    best = max(scores)
    return min(v for v, s in zip(values, scores, strict=True) if s >= best - tol)


def choose_lam(lams: Sequence[float], accuracies: Sequence[float], aurocs: Sequence[float],
               flyp_accuracy: float, max_drop: float) -> tuple[float, list[bool]]:  # fmt: skip
    """The λ with the best validation AUROC among those that keep ID validation accuracy.

    Returns:
        ``(λ, eligible)``: the chosen λ (the smallest one if none is eligible) and, per λ,
        whether its accuracy is at least ``flyp_accuracy - max_drop``.
    """
    eligible = [a >= flyp_accuracy - max_drop for a in accuracies]
    pool = [(u, lam) for lam, u, ok in zip(lams, aurocs, eligible, strict=True) if ok]
    if not pool:
        return float(min(lams)), eligible
    best = max(u for u, _ in pool)
    return float(min(lam for u, lam in pool if u == best)), eligible


# ---------------------------------------------------------------- validation records
def validation_bundle(cfg: RunConfig, method: str, seed: int, *,
                      lam: float | None = None) -> EmbeddingBundle:  # fmt: skip
    """One model's embeddings of the validation data: ID val images, ID prompts, negative
    labels, and the validation OoD sets (in ``ood``). Reads no test split.

    Raises:
        ValueError: if the benchmark has no validation split or validation OoD sets.
    """
    from cmakit.engine.embed import EmbeddingCache

    bench = steps.run_data(cfg, seed)
    if bench.id_val is None or not bench.val_ood:
        raise ValueError(f"The benchmark {bench.name!r} has no validation split or validation "
                         "OoD sets; selection needs both (the embedded world has them).")  # fmt: skip
    model, tokenizer = steps.load_model(cfg, method, seed, lam=lam)
    cache = EmbeddingCache(Path(cfg.run_dir) / "embeddings" / "cache")
    opts = {"device": cfg.device, "progress": False}
    enc = cache.images(model, bench.id_val, preprocessing=bench.preprocessing, **opts)
    prompts = [cfg.test_prompt.format(c) for c in bench.classnames]
    ood = {name: cache.images(model, data, preprocessing=bench.preprocessing, **opts).embeddings
           for name, data in bench.val_ood.items()}  # fmt: skip
    return EmbeddingBundle(
        id_images=enc.embeddings, id_labels=enc.labels,
        id_texts=cache.texts(model, tokenizer, prompts, **opts),
        neg_texts=cache.texts(model, tokenizer, steps.negative_prompts(cfg), **opts),
        logit_scale=float(model.logit_scale.detach().exp()), ood=ood,
    )  # fmt: skip


def validation_record(cfg: RunConfig, method: str, seed: int, *,
                      lam: float | None = None) -> dict[str, Any]:  # fmt: skip
    """ID validation accuracy and MCM/NegLabel metrics on the validation OoD groups.

    Returns:
        ``{"id_val_accuracy", "modality_gap", "neglabel_val_auroc", "ood": {...}}`` with
        ``neglabel_val_auroc`` the mean of the near and far validation groups' AUROC; cached
        as ``metrics/validation/<model>-seed<s>-<fingerprint>.json``.
    """
    weight = model_lam(cfg, method, lam)
    key = fingerprint("validation", products.metrics_key(cfg, weight, seed))
    tag = "zero_shot" if weight is None else f"lam{weight:g}"
    path = Path(cfg.run_dir) / "metrics" / "validation" / f"{tag}-seed{seed}-{key}.json"
    if path.is_file():
        return read_json(path)
    bench_groups = steps.run_data(cfg, seed).val_groups
    settings = dataclasses.replace(steps.score_settings(cfg), groups=bench_groups,
                                   scores=("mcm", "neglabel"))  # fmt: skip
    rec = evaluate(validation_bundle(cfg, method, seed, lam=lam), settings, seed=seed)
    neg = rec["ood"]["neglabel"]
    out = {"method": method, "lam": weight, "seed": seed,
           "id_val_accuracy": 100 * rec["id_accuracy"], "modality_gap": rec["modality_gap"],
           "neglabel_val_auroc": 100 * float(np.mean([neg[f"{g}_mean"]["auroc"]
                                                      for g in bench_groups])),
           "ood": rec["ood"]}  # fmt: skip
    write_json(path, out)
    return out


def prune_checkpoints(run_dir: str | os.PathLike) -> int:
    """Delete the resume checkpoints of finished fine-tunings under ``run_dir/models`` (those
    with a ``result.json``; their ``model.pt`` is kept). A sweep of tens of runs otherwise
    keeps ~1 GB of optimizer states per run. Returns the number of folders removed."""
    import shutil

    done = [p.parent / "checkpoints" for p in Path(run_dir, "models").glob("*/result.json")]
    for folder in (d for d in done if d.is_dir()):
        shutil.rmtree(folder)
    return sum(1 for d in done if not d.exists())


def _mean(cfg: RunConfig, method: str, lam: float | None, key: str) -> float:
    prune_checkpoints(cfg.run_dir)
    return float(np.mean([validation_record(cfg, method, s, lam=lam)[key] for s in cfg.seeds]))


# ---------------------------------------------------------------- the rule
def select_recipe(cfg: RunConfig, rule: SelectionRule = SelectionRule()) -> dict[str, Any]:
    """Apply the selection rule to ``cfg`` (its other fields fixed); fine-tunes what is missing.

    Every row also reports FLYP's or CMA's NegLabel validation AUROC; only the λ stage uses it.

    Returns:
        ``{"rule", "seeds", "stages": {"lr": [...], "epochs": [...], "lam": [...]},
        "flyp_id_val_accuracy", "chosen": {"finetune_lr", "finetune_epochs", "lam"}}``; every
        row holds the validation means it was chosen on.
    """
    acc = "id_val_accuracy"
    lr_rows = []
    for lr in rule.lrs:
        c = dataclasses.replace(cfg, finetune_lr=lr, finetune_epochs=rule.lr_epochs)
        lr_rows.append({"finetune_lr": lr, acc: _mean(c, "flyp", None, acc),
                        "neglabel_val_auroc": _mean(c, "flyp", None, "neglabel_val_auroc")})  # fmt: skip
    lr = smallest_within(rule.lrs, [r[acc] for r in lr_rows], rule.tie_points)
    ep_rows = []
    for ep in rule.epochs:
        c = dataclasses.replace(cfg, finetune_lr=lr, finetune_epochs=ep)
        ep_rows.append({"finetune_epochs": ep, acc: _mean(c, "flyp", None, acc),
                        "neglabel_val_auroc": _mean(c, "flyp", None, "neglabel_val_auroc"),
                        "within_budget": ep <= rule.max_epochs})  # fmt: skip
    allowed = [r for r in ep_rows if r["within_budget"]]
    if not allowed:
        raise ValueError(f"No epoch candidate of {rule.epochs} is within max_epochs="
                         f"{rule.max_epochs}; add one or raise the budget.")  # fmt: skip
    epochs = int(smallest_within([r["finetune_epochs"] for r in allowed],
                                 [r[acc] for r in allowed], rule.tie_points))  # fmt: skip
    c = dataclasses.replace(cfg, finetune_lr=lr, finetune_epochs=epochs)
    flyp_acc = _mean(c, "flyp", None, acc)
    lam_rows = [{"lam": lam, acc: _mean(c, "cma", lam, acc),
                 "neglabel_val_auroc": _mean(c, "cma", lam, "neglabel_val_auroc")}
                for lam in rule.lams]  # fmt: skip
    lam, eligible = choose_lam(rule.lams, [r[acc] for r in lam_rows],
                               [r["neglabel_val_auroc"] for r in lam_rows], flyp_acc,
                               rule.max_drop_points)  # fmt: skip
    for row, ok in zip(lam_rows, eligible, strict=True):
        row["eligible"] = ok
    return {
        "rule": to_dict(rule), "profile": cfg.profile, "seeds": list(cfg.seeds),
        "data": "ID validation split and validation OoD sets (val_near_shapes, val_far_objects)",
        "stages": {"lr": lr_rows, "epochs": ep_rows, "lam": lam_rows},
        "flyp_id_val_accuracy": flyp_acc,
        "flyp_neglabel_val_auroc": _mean(c, "flyp", None, "neglabel_val_auroc"),
        "chosen": {"finetune_lr": lr, "finetune_epochs": epochs, "lam": lam},
    }  # fmt: skip


def selection_markdown(result: dict[str, Any]) -> str:
    """The selection's three stages as Markdown tables (validation numbers only)."""
    lines = []
    for stage, rows in result["stages"].items():
        cols = list(rows[0])
        lines += [f"**Stage {stage}** (validation; mean over seeds {result['seeds']})", "",
                  "| " + " | ".join(cols) + " |", "|" + " ---: |" * len(cols)]  # fmt: skip
        for r in rows:
            cells = [f"{v:.2f}" if isinstance(v, float) and v > 1 else f"{v:g}"
                     if isinstance(v, float) else str(v) for v in r.values()]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    chosen = result["chosen"]
    lines.append(f"FLYP at the chosen recipe: ID val accuracy {result['flyp_id_val_accuracy']:.2f}"
                 f", NegLabel val AUROC {result['flyp_neglabel_val_auroc']:.2f}. "
                 f"**Chosen: lr {chosen['finetune_lr']:g}, {chosen['finetune_epochs']} epochs, "
                 f"λ {chosen['lam']:g}.**")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m cmakit.pipeline.selection --profile cpu --out docs/world_selection.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu"])
    parser.add_argument("--run-dir", default=None, help="run folder (default runs/<profile>)")
    parser.add_argument("--out", default=None, help="JSON file for the selection's result")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    cfg = resolve(profile=args.profile, run_dir=args.run_dir or f"runs/{args.profile}",
                  threads=args.threads)  # fmt: skip
    steps.setup(cfg)
    start, load = time.perf_counter(), os.getloadavg()[0]
    result = select_recipe(cfg)
    result["wall_s"] = round(time.perf_counter() - start, 1)
    result["load_avg_1min"] = [round(load, 2), round(os.getloadavg()[0], 2)]  # start, end
    if args.out:
        write_json(Path(args.out), result)
    print(selection_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
