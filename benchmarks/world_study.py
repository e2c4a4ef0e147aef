"""The world study: vary one factor at a time and see what moves CMA's effect on OoD detection.

Around the profile's recipe (the one chosen on validation data by
:mod:`cmakit.pipeline.selection`), each factor takes a few levels and every other knob stays
put: the fine-tuning learning rate (``lr``), epochs (``epochs``), ID training images per class
at a fixed number of steps (``data``), λ (``lam``), the share of the lexicon kept as negative
labels (``neg_fraction``), their part of speech (``neg_kind``), the model's capacity
(``model``: the tiny ViT against the tiny ResNet, each pretrained on the world) and the richness
of the world's vocabulary (``world``: the 133-word shape world against the species world with
its 192 species words; each pretrains its own model), and the ID task (``id_task``: ID species
striped and dotted, as in the profile, against plain and striped, so that no marking is shared
by every ID class; same pretrained model and test OoD sets), and which tower fine-tuning moves
(``tower``: both, as the paper does, the image tower only or the text tower only: whether
NegLabel's change comes from the image features or from the text tower's drift), and the
pretraining temperature (``temperature``: the CLIP-shaped ``cpu`` world, pretrained cold with
two modality cones, against the warm world and recipe before it, ``cpu_warm``, which also lacks
the species synonyms), and the breadth of the ID task (``breadth``: 10 ID classes against 40,
``cpu_broad``, the same pretrained model and OoD sets; at the same epochs the 40-class task
trains 4 times as many steps). Each cell fine-tunes with the pipeline's own
``steps.finetune``, embeds with ``steps.embed`` and scores with ``cmakit.engine.evaluate``, so
the study measures what the kit measures. Test sets are only *reported* here; no choice is
made from them.

Usage::

    python benchmarks/world_study.py                      # cpu profile, 3 seeds
    python benchmarks/world_study.py --factors lr,lam     # some factors only
    python benchmarks/world_study.py --profile smoke --run-dir /tmp/s --doc /tmp/s.md

Prints the tables, writes ``docs/assets/world_study_<factor>.png`` and replaces the block
between ``<!-- study:begin -->`` and ``<!-- study:end -->`` of ``docs/world_study.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from cmakit.engine.evaluate import evaluate
from cmakit.pipeline import steps
from cmakit.pipeline.config import RunConfig, resolve
from cmakit.pipeline.selection import prune_checkpoints
from cmakit.pipeline.stages.records import evaluate_model, score_settings

METHODS = ("zero_shot", "flyp", "cma")
#: ``id_task`` levels: the ID markings, and the world preset with that ID task (same pretraining
#: corpus and test OoD sets; the smoke profile has the profile's own world only).
ID_TASKS = {"cpu": {"stripes+dots": "cpu", "plain+stripes": "cpu_plain"},
            "smoke": {"stripes+dots": "smoke"}}  # fmt: skip
#: ``temperature`` levels: the world preset pretrained at that temperature (``warm``: the recipe
#: and world before the CLIP-shaped one, i.e. also without species synonyms).
TEMPERATURES = {"cpu": {"warm": "cpu_warm", "cold": "cpu"}, "smoke": {"smoke": "smoke"}}
#: ``breadth`` levels: the number of ID classes, and the world preset with that ID task (same
#: pretrained model, same test and validation OoD sets; the 10 ID classes are among the 40).
BREADTHS = {"cpu": {10: "cpu", 40: "cpu_broad"}, "smoke": {4: "smoke"}}
#: Levels per factor and profile; the profile's own value is always one of them.
LEVELS: dict[str, dict[str, list[Any]]] = {
    "cpu": {
        "lr": [3e-5, 1e-4, 3e-4, 1e-3],
        "epochs": [3, 10, 30],
        "data": [25, 50, 200],
        "lam": [0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0],
        "neg_fraction": [0.15, 0.5, 1.0],
        "neg_kind": ["all", "nouns", "adjectives"],
        "model": ["cmakit-tiny", "cmakit-tiny-rn"],
        "world": ["shapes", "cpu"],
        "id_task": list(ID_TASKS["cpu"]),
        "tower": ["both", "image", "text"],
        "temperature": list(TEMPERATURES["cpu"]),
        "breadth": list(BREADTHS["cpu"]),
    },
    "smoke": {
        "lr": [1e-3, 3e-3],
        "epochs": [1, 3],
        "data": [8, 16],
        "lam": [0.0, 0.1],
        "neg_fraction": [0.5, 1.0],
        "neg_kind": ["all", "nouns"],
        "model": ["cmakit-micro"],
        "world": ["smoke"],
        "id_task": list(ID_TASKS["smoke"]),
        "tower": ["both", "image", "text"],
        "temperature": list(TEMPERATURES["smoke"]),
        "breadth": list(BREADTHS["smoke"]),
    },
}
DEFAULT_FACTORS = ("lam", "neg_fraction", "neg_kind", "lr", "epochs", "data", "model", "world",
                   "id_task", "tower", "temperature", "breadth")  # fmt: skip
#: Columns of every table: (key, header); metrics are percent except the gap.
COLUMNS = (("id_accuracy", "ID acc."), ("modality_gap", "gap"),
           ("neglabel_near_fpr95", "NL near FPR95"), ("neglabel_near_auroc", "NL near AUROC"),
           ("neglabel_far_fpr95", "NL far FPR95"), ("neglabel_far_auroc", "NL far AUROC"),
           ("mcm_near_auroc", "MCM near AUROC"), ("mcm_far_auroc", "MCM far AUROC"))  # fmt: skip


def _flat(record: dict[str, Any]) -> dict[str, float]:
    """The study's numbers of one per-seed record (percent; gap raw)."""
    out = {"id_accuracy": 100 * record["id_accuracy"], "modality_gap": record["modality_gap"]}
    for score in ("neglabel", "mcm"):
        for group in ("near", "far"):
            for metric in ("fpr95", "auroc"):
                out[f"{score}_{group}_{metric}"] = (
                    100 * record["ood"][score][f"{group}_mean"][metric]
                )
    return out


def _record(cfg: RunConfig, method: str, seed: int, lam: float | None, kind: str) -> dict:
    """One per-seed record; ``kind`` keeps only negative labels of that part of speech."""
    if kind == "all":
        return evaluate_model(cfg, method, seed, lam=lam)
    bundle = steps.embed(cfg, method, seed, lam=lam)
    pos = {"nouns": "noun", "adjectives": "adj"}[kind]
    keep = np.array([label.pos == pos for label in steps.negative_labels(cfg)])
    return evaluate(bundle.replace(neg_texts=bundle.neg_texts[keep]), score_settings(cfg),
                    seed=seed)  # fmt: skip


def _variant(base: RunConfig, factor: str, level: Any, base_steps: int) -> RunConfig:
    """The configuration of one level (``lam`` and ``neg_kind`` keep ``base``)."""
    field = {"lr": "finetune_lr", "epochs": "finetune_epochs", "neg_fraction": "neg_fraction",
             "model": "model", "world": "world", "tower": "finetune_towers"}.get(factor)  # fmt: skip
    if field:
        return dataclasses.replace(base, **{field: level})
    if factor == "id_task":
        return dataclasses.replace(base, world=ID_TASKS[base.profile][level])
    if factor == "temperature":
        return dataclasses.replace(base, world=TEMPERATURES[base.profile][level])
    if factor == "breadth":
        return dataclasses.replace(base, world=BREADTHS[base.profile][int(level)])
    if factor == "data":  # same number of steps, fewer distinct images
        return dataclasses.replace(base, train_per_class=int(level), finetune_epochs=10_000,
                                   finetune_max_steps=base_steps)  # fmt: skip
    return base


def cell(base: RunConfig, factor: str, level: Any, base_steps: int) -> dict[str, dict]:
    """``{method: {key: [value per seed]}}`` of one level of one factor."""
    cfg = _variant(base, factor, level, base_steps)
    kind = level if factor == "neg_kind" else "all"
    methods = {"cma": float(level)} if factor == "lam" else dict.fromkeys(METHODS)
    out = {}
    for method, lam in methods.items():
        rows = [_flat(_record(cfg, method, s, lam, kind)) for s in cfg.seeds]
        out[method] = {k: [r[k] for r in rows] for k in rows[0]}
    prune_checkpoints(cfg.run_dir)  # ~1 GB of optimizer states per finished run
    return out


def _fmt(values: list[float], key: str) -> str:
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {std:.3f}" if key == "modality_gap" else f"{mean:.1f} ± {std:.1f}"


def factor_table(factor: str, cells: dict[Any, dict[str, dict]]) -> str:
    """Markdown table of one factor: a row per (level, method), mean ± std over seeds."""
    head = "| level | model | " + " | ".join(h for _, h in COLUMNS) + " |"
    lines = [head, "|---|---|" + "---:|" * len(COLUMNS)]
    for level, methods in cells.items():
        for method, cols in methods.items():
            cells_ = " | ".join(_fmt(cols[k], k) for k, _ in COLUMNS)
            lines.append(f"| {level:g} | {method} | {cells_} |" if isinstance(level, float)
                         else f"| {level} | {method} | {cells_} |")  # fmt: skip
    return "\n".join(lines)


HEADLINE = (("id_accuracy", "ID acc."), ("modality_gap", "gap"),
            ("mcm_near_fpr95", "MCM near FPR95"), ("mcm_near_auroc", "MCM near AUROC"),
            ("mcm_far_fpr95", "MCM far FPR95"), ("mcm_far_auroc", "MCM far AUROC"),
            ("neglabel_near_fpr95", "NL near FPR95"), ("neglabel_near_auroc", "NL near AUROC"),
            ("neglabel_far_fpr95", "NL far FPR95"), ("neglabel_far_auroc", "NL far AUROC"))  # fmt: skip


def headline_table(base: RunConfig, extra_lams: tuple[float, ...] = ()) -> str:
    """Zero-shot / FLYP / CMA at the profile's recipe (and CMA at ``extra_lams``): every
    headline metric, mean ± std over seeds."""
    lines = ["| model | " + " | ".join(h for _, h in HEADLINE) + " |",
             "|---|" + "---:|" * len(HEADLINE)]  # fmt: skip
    rows = {(f"cma (λ = {base.lam:g})" if m == "cma" else m): c
            for m, c in cell(base, "recipe", None, 0).items()}  # fmt: skip
    for lam in extra_lams:
        rows[f"cma (λ = {lam:g})"] = cell(base, "lam", lam, 0)["cma"]
    for name, cols in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(cols[k], k) for k, _ in HEADLINE) + " |")
    return "\n".join(lines)


def _delta(cells: dict, a: str, b: str, key: str) -> str:
    if a not in cells or b not in cells:
        return "–"
    d = np.array(cells[a][key]) - np.array(cells[b][key])
    return f"{d.mean():+.1f} ± {d.std(ddof=1) if len(d) > 1 else 0.0:.1f}"


def main_table(study: dict[str, dict[Any, dict]]) -> str:
    """The signs the issue asks for: CMA − FLYP and FLYP − zero-shot NegLabel AUROC, near and
    far, per level (paired by seed; percent points), and CMA − FLYP ID accuracy."""
    lines = ["| factor | level | FLYP acc. | CMA − FLYP acc. | FLYP − ZS NL near | "
             "FLYP − ZS NL far | CMA − FLYP NL near | CMA − FLYP NL far |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for factor, cells in study.items():
        if factor == "lam":
            continue
        for level, c in cells.items():
            acc = _fmt(c["flyp"]["id_accuracy"], "id_accuracy")
            cols = [_delta(c, "cma", "flyp", "id_accuracy")]
            cols += [_delta(c, "flyp", "zero_shot", f"neglabel_{g}_auroc") for g in ("near", "far")]
            cols += [_delta(c, "cma", "flyp", f"neglabel_{g}_auroc") for g in ("near", "far")]
            lines.append(f"| {factor} | {level:g} | {acc} | " if isinstance(level, float)
                         else f"| {factor} | {level} | {acc} | ")  # fmt: skip
            lines[-1] += " | ".join(cols) + " |"
    return "\n".join(lines)


def negatives_note(base: RunConfig, fractions: list[float]) -> str:
    """How many negative labels each ``neg_fraction`` keeps, and which of them name an OoD
    concept of the test or validation sets (a label that names the OoD image is the strongest
    negative NegLabel can have)."""
    from cmakit.data.world import world_config
    from cmakit.data.world.concepts import concept_words

    w = world_config(base.world)
    sets = {"test near": w.near_classes, "test far objects": w.far_object_classes,
            "test textures": w.far_texture_classes, "val near": w.val_near_classes,
            "val far": w.val_far_object_classes}  # fmt: skip
    lines = ["| neg_fraction | negatives (nouns / adjectives) | OoD concepts named by a negative |",
             "|---:|---|---|"]  # fmt: skip
    for frac in fractions:
        labels = steps.negative_labels(dataclasses.replace(base, neg_fraction=frac))
        words = {label.word for label in labels}
        nouns = sum(label.pos == "noun" for label in labels)
        named = "; ".join(
            f"{name}: {sum(any(x in words for x in concept_words(c)) for c in cs)}/{len(cs)}"
            for name, cs in sets.items())  # fmt: skip
        lines.append(f"| {frac:g} | {len(labels)} ({nouns} / {len(labels) - nouns}) | {named} |")
    return "\n".join(lines)


def marking_note(configs: dict[str, RunConfig]) -> str:
    """NegLabel AUROC of each model on the plain and the marked OoD species of the test sets,
    per ID task (``{label: config}``; species worlds only): whether fine-tuning turned the
    markings that the ID classes carry into a sign of ID-ness. The OoD sets are split by
    marking and scored by the pipeline's own evaluator."""
    from cmakit.data.world import world_config
    from cmakit.data.world.concepts import anatomy
    from cmakit.pipeline.run_data import load_world

    configs = {k: c for k, c in configs.items() if world_config(c.world).markings}
    if not configs:
        return ""
    rows, cols = {}, []
    for task, cfg in configs.items():
        settings = dataclasses.replace(score_settings(cfg), scores=("neglabel",), groups={})
        for method in METHODS:
            per_seed = []
            for seed in cfg.seeds:
                bundle, world = steps.embed(cfg, method, seed), load_world(cfg, seed)
                sets = {}
                for name in ("far_objects", "near_shapes"):
                    marked = np.array([anatomy(c)[1] is not None for c in world.concepts[name]])
                    for tag, mask in (("plain", ~marked), ("marked", marked)):
                        if mask.any():
                            sets[f"{name} {tag}"] = bundle.ood[name][mask]
                rec = evaluate(bundle.replace(ood=sets), settings, seed=seed)
                per_seed.append({k: 100 * rec["ood"]["neglabel"][k]["auroc"] for k in sets})
            rows[(task, method)] = {k: [r[k] for r in per_seed] for k in per_seed[0]}
            cols = cols or list(per_seed[0])
    lines = ["| ID markings | model | " + " | ".join(f"NL AUROC {c}" for c in cols) + " |",
             "|---|---|" + "---:|" * len(cols)]  # fmt: skip
    for (task, method), vals in rows.items():
        cells_ = " | ".join(_fmt(vals[c], c) for c in cols)
        lines.append(f"| {task} | {method} | {cells_} |")
    return "\n".join(lines)


def plot_factor(factor: str, cells: dict[Any, dict], path: Path) -> None:
    """ID accuracy and NegLabel near/far AUROC against the factor's levels, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("id_accuracy", "neglabel_near_auroc", "neglabel_far_auroc")
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), constrained_layout=True)
    levels = list(cells)
    x = np.arange(len(levels))
    for ax, key in zip(axes, keys, strict=True):
        for method in METHODS:
            if method not in cells[levels[0]]:
                continue
            vals = [cells[lv][method][key] for lv in levels]
            ax.errorbar(x, [np.mean(v) for v in vals],
                        yerr=[np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals],
                        marker="o", capsize=3, label=method)  # fmt: skip
        ax.set_xticks(x, [f"{lv:g}" if isinstance(lv, float) else str(lv) for lv in levels])
        ax.set_xlabel(factor)
        ax.set_title(key.replace("_", " ") + " (%)")
    axes[0].legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_doc(doc: Path, text: str) -> None:
    """Replace the study block of ``doc`` (or append one)."""
    begin, end = "<!-- study:begin -->", "<!-- study:end -->"
    old = doc.read_text() if doc.is_file() else ""
    block = f"{begin}\n{text}\n{end}"
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end) :]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    doc.write_text(new)


def run(base: RunConfig, factors: list[str], assets: Path) -> tuple[dict, dict[str, float]]:
    """Every cell of ``factors``; returns ``({factor: {level: cell}}, {factor: "seconds, load before → after"})``."""
    levels = LEVELS[base.profile]
    base_steps = int(steps.finetune(base, "flyp", base.seeds[0])["final_step"])
    study, seconds, loads = {}, {}, {}
    for factor in factors:
        start, load = time.perf_counter(), os.getloadavg()[0]
        study[factor] = {lv: cell(base, factor, lv, base_steps) for lv in levels[factor]}
        seconds[factor] = time.perf_counter() - start
        loads[factor] = (load, os.getloadavg()[0])
        plot_factor(factor, study[factor], assets / f"world_study_{factor}.png")
        print(f"\n### {factor} ({seconds[factor]:.0f} s)\n\n{factor_table(factor, study[factor])}",
              flush=True)  # fmt: skip
    return study, {f: f"{s:.0f} s, load {loads[f][0]:.1f} → {loads[f][1]:.1f}"
                   for f, s in seconds.items()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=sorted(LEVELS))
    parser.add_argument("--run-dir", default="runs/world_study")
    parser.add_argument("--factors", default=",".join(DEFAULT_FACTORS))
    parser.add_argument("--doc", default="docs/world_study.md")
    parser.add_argument("--assets", default="docs/assets")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--cache-dir", default="")
    parser.add_argument(
        "--study-lam",
        type=float,
        default=None,
        help="λ of the CMA rows of the other factors (default: the profile's)",
    )
    args = parser.parse_args(argv)
    factors = [f for f in args.factors.split(",") if f]
    unknown = sorted(set(factors) - set(LEVELS[args.profile]))
    if unknown:
        parser.error(f"unknown factors {unknown}; choose from {sorted(LEVELS[args.profile])}")
    base = resolve(profile=args.profile, run_dir=args.run_dir, threads=args.threads,
                   cache_dir=args.cache_dir)  # fmt: skip
    steps.setup(base)
    start = time.perf_counter()
    study_base = base if args.study_lam is None else dataclasses.replace(base, lam=args.study_lam)
    study, seconds = run(study_base, factors, Path(args.assets))
    recipe = (f"Base recipe (profile `{base.profile}`): lr {base.finetune_lr:g}, "
              f"{base.finetune_epochs} epochs, batch {base.finetune_batch_size}, λ {base.lam:g} "
              f"(headline), λ {study_base.lam:g} (CMA rows of the factors but `lam`), "
              f"neg_fraction {base.neg_fraction:g}; seeds {base.seeds}; mean ± std over seeds; "
              f"NL = NegLabel; metrics in percent, ID positive.")  # fmt: skip
    extra = () if study_base.lam == base.lam else (study_base.lam,)
    head = headline_table(base, extra)
    print("\n" + head)
    parts = [recipe, "", "**Headline** (test sets; mean ± std over seeds)", "", head, "",
             "**Main table** (differences paired by seed, percent points)", "",
             main_table(study)]  # fmt: skip
    tasks = ID_TASKS[base.profile]  # every ID task when the factor runs, else the profile's
    tasks = (
        list(tasks) if "id_task" in factors else [t for t, w in tasks.items() if w == base.world]
    )
    marks = marking_note({task: _variant(base, "id_task", task, 0) for task in tasks})
    if marks:
        parts += ["", "**Plain and marked OoD species** (NegLabel AUROC, test sets, base recipe; "
                  "per ID task: the markings the ID classes carry)", "", marks]  # fmt: skip
    for factor in factors:
        if factor == "neg_fraction":
            parts += ["", negatives_note(base, LEVELS[base.profile]["neg_fraction"])]
        parts += ["", f"**{factor}** ({seconds[factor]}; cached products are reused)", "",
                  factor_table(factor, study[factor]), "",
                  f"![{factor}](assets/world_study_{factor}.png)"]  # fmt: skip
    text = "\n".join(parts)
    print("\n" + main_table(study))
    write_doc(Path(args.doc), text)
    raw = Path(args.run_dir) / "world_study.json"
    raw.write_text(json.dumps({f: {str(k): v for k, v in c.items()} for f, c in study.items()}))
    print(f"\nstudy done in {time.perf_counter() - start:.0f} s; tables in {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
