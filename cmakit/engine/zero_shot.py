"""Zero-shot report of a CLIP on the world: ID accuracy, modality gap, MCM and NegLabel per OoD set.

Definitions used (and written into the summary):

- ID accuracy: argmax of the cosine to the K class prompts ``template.format(class)``.
- Modality gap: ``||mean(image) - mean(text)||`` of L2-normalised embeddings, on (a) ID test
  images vs their class prompts and (b) pretraining image-caption pairs (Liang et al.).
- Negative labels: NegMining over the world's lexicon, minus every word that names an ID
  class (synonyms included); nouns prompted "The nice {}", adjectives "This is a {} photo",
  the ``neg_keep`` least ID-like fraction of each part of speech kept (NegLabel keeps 15% of
  70k WordNet words; the lexicon has ~130 words, so a larger fraction is the default).
- Scores: MCM and NegLabel (one group) through :func:`cmakit.engine.evaluate.ood_results`, with
  the run's temperatures and convention (default: T = 1, tau = 0.01, ID positive as the paper);
  AUPR by trapezoid.
- Geometry targets (:data:`cmakit.core.geometry.GEOMETRY_TARGETS`, docs/world_design.md):
  measured here on the ID test split, the test OoD images (which join "all images") and the
  mined negative labels; FLYP's accuracy is not measured by this report (its row says None).
  The recipe is chosen on validation data by benchmarks/world_geometry.py, not from this report.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from cmakit.common.constants import OKABE_ITO, TEST_PROMPT, TRAIN_PROMPT
from cmakit.common.io import atomic_path, write_json
from cmakit.common.strict_config import to_dict
from cmakit.data.world.build import OOD_SETS, VAL_OOD_SETS, World
from cmakit.data.world.config import OOD_GROUPS
from cmakit.engine import embed
from cmakit.engine.bundle import EmbeddingBundle
from cmakit.engine.evaluate import ScoreSettings, ood_results

log = logging.getLogger(__name__)


def encode_images(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """L2-normalised image embeddings ``[N, D]`` of normalised float images ``[N, 3, H, W]``."""
    data = TensorDataset(images, torch.zeros(len(images), dtype=torch.long))
    return torch.from_numpy(embed.encode_images(model, data, device="cpu", progress=False)[0])


def encode_texts(model: torch.nn.Module, tokenizer, texts: list[str]) -> torch.Tensor:
    """L2-normalised text embeddings ``[M, D]`` of ``texts``."""
    return torch.from_numpy(
        embed.encode_texts(model, tokenizer, texts, device="cpu", progress=False)
    )


def negative_labels(
    model,
    tokenizer,
    world: World,
    template: str,
    keep: float,
    candidates: list[tuple[str, str]] | None = None,
) -> list[str]:
    """NegMining (:func:`cmakit.engine.negatives.mine_negatives`) over ``candidates`` (default: the
    lexicon), ID class words removed.

    Args:
        model: The CLIP whose text tower mines.
        tokenizer: Its tokenizer.
        world: The world (ID class names).
        template: ID prompt the candidates are compared with.
        keep: Fraction of each part of speech kept.
        candidates: ``(word, pos)`` pairs; e.g. the lexicon plus WordNet words.

    Returns:
        The kept negative prompts, nouns first, each least ID-like first.
    """
    from cmakit.engine.negatives import label_prompts, mine_negatives

    mined = mine_negatives(
        model, tokenizer, world.id_classnames, candidates=world.negative_candidates(candidates),
        keep=keep, id_template=template, device="cpu", progress=False,
    )  # fmt: skip
    return label_prompts(mined)


def _ood_table(img: dict[str, torch.Tensor], id_text: torch.Tensor, neg_text: torch.Tensor,
               labels: torch.Tensor, logit_scale: float, settings: ScoreSettings) -> dict:  # fmt: skip
    """MCM and NegLabel metrics per OoD set, through the one evaluator."""
    bundle = EmbeddingBundle(
        id_images=img["test"].numpy(), id_labels=labels.numpy(), id_texts=id_text.numpy(),
        neg_texts=neg_text.numpy(), logit_scale=logit_scale,
        ood={name: img[name].numpy() for name in OOD_SETS},
    )  # fmt: skip
    results = ood_results(bundle, settings, scores=("mcm", "neglabel"))
    table: dict[str, Any] = {}
    for name in OOD_SETS:
        group = next(g for g, sets in OOD_GROUPS.items() if name in sets)
        table[name] = {"group": group, **{s: results[s][name] for s in ("mcm", "neglabel")}}
    return table


def _gaps(model, tokenizer, world: World, test_img, test_prompts, n_pairs: int) -> dict:
    """Modality gaps: ID test images vs. their prompts, and ``n_pairs`` pretraining pairs."""
    from cmakit.core.geometry import modality_gap

    n = min(n_pairs, len(world.captions))
    cap_img = encode_images(model, world.images("pretrain")[:n])
    cap_txt = encode_texts(model, tokenizer, world.captions[:n])
    return {
        "id_test_vs_prompts": modality_gap(test_img, test_prompts),
        "pretrain_pairs": modality_gap(cap_img, cap_txt),
    }


def target_rows(img: dict[str, torch.Tensor], labels: torch.Tensor, id_text: torch.Tensor,
                neg_text: torch.Tensor, *, logit_scale: float, id_accuracy: float,
                ood_sets=OOD_SETS) -> list[dict]:  # fmt: skip
    """The geometry targets (:func:`cmakit.core.geometry.geometry_targets`) of one model: ID
    images ``img["test"]`` with ``labels``, the OoD images of ``ood_sets`` in "all images", and
    the ID prompts and negative labels as the texts."""
    from cmakit.core.geometry import geometry_measures, geometry_targets

    ood = torch.cat([img[name] for name in ood_sets])
    measured = geometry_measures(img["test"], labels.numpy(), id_text, neg_text, ood_image_emb=ood)
    return geometry_targets({**measured, "logit_scale": logit_scale, "id_accuracy": id_accuracy})


#: The ``cpu`` run's FLYP recipe (``cmakit.pipeline.config.PROFILES["cpu"]``; a test keeps
#: them equal) for the headroom target: FLYP's ID validation accuracy after fine-tuning.
FLYP_RECIPE: dict[str, Any] = {
    "lr": 1e-3, "epochs": 10, "batch_size": 128, "warmup_steps": 20, "weight_decay": 0.1,
}  # fmt: skip


def flyp_val_accuracy(model, tokenizer, world: World, *, seed: int = 0, template: str = TEST_PROMPT,
                      recipe: dict[str, Any] | None = None) -> float:  # fmt: skip
    """ID validation accuracy of a copy of ``model`` fine-tuned with FLYP (λ = 0) on the ID
    training split (prompts ``TRAIN_PROMPT``) with ``recipe`` (default :data:`FLYP_RECIPE`)."""
    import copy
    import tempfile

    from cmakit.engine.trainer import TrainConfig, train

    tuned = copy.deepcopy(model).cpu().train()
    cfg = TrainConfig(lam=0.0, seed=seed, device="cpu", num_workers=0, progress=False,
                      **(recipe or FLYP_RECIPE))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        train(tuned, world.id_dataset("train", tokenizer, TRAIN_PROMPT), cfg, out_dir=tmp)
    tuned.eval()
    prompts = encode_texts(tuned, tokenizer, [template.format(c) for c in world.id_classnames])
    val = encode_images(tuned, world.images("val"))
    return float((val @ prompts.T).argmax(1).eq(world.labels("val")).float().mean())


def validation_geometry(model, tokenizer, world: World, *, template: str = TEST_PROMPT,
                        neg_keep: float = 0.5, flyp_id_accuracy: float | None = None) -> dict:  # fmt: skip
    """Every geometry target on validation data only: the ID validation split, the validation
    OoD sets (in "all images"), ``template`` prompts and the negative labels mined at
    ``neg_keep``. ``flyp_id_accuracy`` (e.g. :func:`flyp_val_accuracy`) fills its row.

    Returns:
        ``{"measured": {...}, "targets": rows}`` (rows of
        :func:`cmakit.core.geometry.geometry_targets`; accuracies as fractions).
    """
    from cmakit.core.geometry import geometry_measures, geometry_targets

    model = model.cpu().eval()
    images, labels = encode_images(model, world.images("val")), world.labels("val")
    ood = torch.cat([encode_images(model, world.images(name)) for name in VAL_OOD_SETS])
    prompts = encode_texts(model, tokenizer, [template.format(c) for c in world.id_classnames])
    neg = negative_labels(model, tokenizer, world, template, neg_keep)
    measured = geometry_measures(images, labels.numpy(), prompts,
                                 encode_texts(model, tokenizer, neg), ood_image_emb=ood)  # fmt: skip
    measured["logit_scale"] = float(model.logit_scale.detach().exp())
    measured["id_accuracy"] = float((images @ prompts.T).argmax(1).eq(labels).float().mean())
    if flyp_id_accuracy is not None:
        measured["flyp_id_accuracy"] = flyp_id_accuracy
    return {"measured": measured, "targets": geometry_targets(measured)}


def format_targets(rows: list[dict]) -> str:
    """The rows of :func:`target_rows` as aligned text lines (name, target, measured, met)."""
    lines = []
    for r in rows:
        value = "-" if r["measured"] is None else f"{r['measured']:.4g}"
        met = {True: "met", False: "MISSED", None: "not measured"}[r["met"]]
        lines.append(f"{r['name']:<27} {r['target']:<22} {value:>8}  {met}")
    return "\n".join(lines)


def _group_means(table: dict) -> dict:
    out = {}
    for group, sets in OOD_GROUPS.items():
        out[group] = {
            s: {m: float(np.mean([table[n][s][m] for n in sets])) for m in ("auroc", "fpr95")}
            for s in ("mcm", "neglabel")
        }
    return out


def zero_shot_report(
    model: torch.nn.Module,
    tokenizer,
    world: World,
    *,
    out_dir: str | os.PathLike,
    template: str = TRAIN_PROMPT,
    neg_keep: float = 0.5,
    neg_candidates: list[tuple[str, str]] | None = None,
    n_gap_pairs: int = 2000,
    pretrain_info: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
    settings: ScoreSettings | None = None,
) -> dict[str, Any]:
    """Measure the zero-shot properties the CMA argument needs; write JSON and a figure.

    Args:
        model: An open_clip CLIP (evaluated on the CPU, in eval mode).
        tokenizer: Its tokenizer.
        world: The world (ID test split and OoD sets are used).
        out_dir: Folder for ``zero_shot.json`` and ``zero_shot.png``/``.pdf``.
        template: ID class prompt.
        neg_keep: Fraction of candidate nouns and of adjectives kept as negative labels.
        neg_candidates: ``(word, pos)`` mining candidates; default the world's lexicon.
        n_gap_pairs: Pretraining pairs used for the caption modality gap.
        pretrain_info: Facts of the pretraining run (cache key, timings, loss), copied in.
        timings: Extra timings in seconds (e.g. world generation), copied in.
        settings: Score temperatures and metric convention (the run's; default: the paper's).

    Returns:
        The summary dict written to ``zero_shot.json``; ``summary["headline"]`` has the key
        numbers.
    """
    import time

    t0 = time.perf_counter()
    model = model.cpu().eval()
    img = {s: encode_images(model, world.images(s)) for s in ("test", *OOD_SETS)}
    id_text = encode_texts(model, tokenizer, [template.format(c) for c in world.id_classnames])
    labels = world.labels("test")
    acc = float((img["test"] @ id_text.T).argmax(1).eq(labels).float().mean())
    neg = negative_labels(model, tokenizer, world, template, neg_keep, neg_candidates)
    neg_text = encode_texts(model, tokenizer, neg)
    settings = settings or ScoreSettings()
    scale = float(model.logit_scale.detach().exp())
    table = _ood_table(img, id_text, neg_text, labels, scale, settings)
    gaps = _gaps(model, tokenizer, world, img["test"], id_text[labels], n_gap_pairs)
    targets = target_rows(img, labels, id_text, neg_text, logit_scale=scale, id_accuracy=acc)
    log.info("geometry targets (ID test split):\n%s", format_targets(targets))
    summary: dict[str, Any] = {
        "definitions": __doc__.split("Definitions used (and written into the summary):")[1].strip(),
        "world": to_dict(world.config),
        "template": template,
        "id_accuracy": acc,
        "chance": 1.0 / len(world.id_classnames),
        "modality_gap": gaps,
        "logit_scale": scale,
        "scores": {
            "mcm_temperature": settings.mcm_temperature,
            "neglabel_temperature": settings.neglabel_temperature,
            "convention": settings.convention,
        },
        "negative_labels": {
            "candidates": "lexicon" if neg_candidates is None else f"{len(neg_candidates)} given",
            "keep": neg_keep,
            "count": len(neg),
            "prompts": neg,
        },
        "ood": table,
        "means": _group_means(table),
        "geometry_targets": targets,
        "pretrain": {k: v for k, v in (pretrain_info or {}).items() if k != "model_config"},
        "timings": {
            **(timings or {}),
            "world_build_by_split_s": world.timings,
            "report_s": time.perf_counter() - t0,
        },
    }
    aurocs = {f"{s}_auroc_{n}": table[n][s]["auroc"] for n in OOD_SETS for s in ("mcm", "neglabel")}
    summary["headline"] = {"id_accuracy": acc, "modality_gap": gaps["id_test_vs_prompts"], **aurocs}
    out = Path(out_dir)
    write_json(out / "zero_shot.json", summary)
    _figure(img, id_text, neg_text, labels, summary, out / "zero_shot")
    return summary


def _gap_axes(*arrays: torch.Tensor) -> list[np.ndarray]:
    """2-D view ``[N_k, 2]``: x = position along the gap direction ``mean(arrays[0]) -
    mean(arrays[1])``, y = first principal axis of everything once that direction is removed."""
    from cmakit.core.geometry import joint_pca

    g = arrays[0].mean(0) - arrays[1].mean(0)
    e = g / g.norm()
    xs = [a @ e for a in arrays]
    (ys, _) = joint_pca(*[a - (a @ e)[:, None] * e for a in arrays], n_components=1)
    return [np.stack([x.numpy(), y[:, 0]], 1) for x, y in zip(xs, ys, strict=True)]


def _scatter(ax, points, labels, title: str) -> None:
    p_img, p_txt, p_neg, p_far = points
    ax.scatter(*p_img.T, s=5, c=labels.numpy(), cmap="tab10", alpha=0.6, label="ID test images")
    ax.scatter(*p_far.T, s=5, c=OKABE_ITO["orange"], alpha=0.5, label="far-OoD object images")
    ax.scatter(
        *p_txt.T,
        s=70,
        marker="*",
        c=range(len(p_txt)),
        cmap="tab10",
        edgecolors="k",
        label="ID prompts",
    )
    ax.scatter(*p_neg.T, s=18, marker="v", c=OKABE_ITO["reddish_purple"], label="negative labels")
    ax.set_title(title, fontsize=10)


def _figure(img, id_text, neg_text, labels, summary: dict, stem: Path) -> None:
    """Joint PCA and gap-axis views of ID images / ID prompts / negative labels / far-OoD
    images, and AUROC bars per OoD set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cmakit.core.geometry import joint_pca

    arrays = (img["test"][:600], id_text, neg_text, img["far_objects"][:300])
    pca, ratio = joint_pca(*arrays)
    fig, (ax, gx, bx) = plt.subplots(1, 3, figsize=(16, 4.6))
    gap = summary["modality_gap"]["id_test_vs_prompts"]
    _scatter(
        ax, pca, labels[:600], f"joint PCA of embeddings (PC1+PC2: {ratio.sum():.0%} of variance)"
    )
    ax.legend(fontsize=7, loc="best")
    _scatter(
        gx,
        _gap_axes(*arrays),
        labels[:600],
        f"gap direction vs. first PC of the rest; gap = {gap:.2f}",
    )
    gx.set_xlabel("projection on mean(image) - mean(text)")
    names = list(summary["ood"])
    x = np.arange(len(names))
    colors = {"mcm": OKABE_ITO["sky_blue"], "neglabel": OKABE_ITO["reddish_purple"]}
    for k, s in enumerate(("mcm", "neglabel")):
        aurocs = [summary["ood"][n][s]["auroc"] for n in names]
        bx.bar(x + (k - 0.5) * 0.38, aurocs, 0.38, label=s, color=colors[s])
    bx.axhline(0.5, color="k", lw=0.8, ls="--")
    bx.set_xticks(x, names)
    bx.set_ylim(0, 1)
    bx.set_ylabel("AUROC (ID positive)")
    bx.set_title(
        f"zero-shot ID accuracy {summary['id_accuracy']:.1%} (chance {summary['chance']:.0%})",
        fontsize=10,
    )
    bx.legend(fontsize=8)
    fig.tight_layout()
    for suffix in (".png", ".pdf"):
        with atomic_path(stem.with_suffix(suffix)) as tmp:
            fig.savefig(tmp, format=suffix[1:], dpi=140)
    plt.close(fig)
