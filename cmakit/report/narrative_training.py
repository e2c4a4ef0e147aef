"""Computed paragraphs of the training notebooks (1, pretraining; 2, fine-tuning).

They quote the loss terms, ``log B`` and the logit scale of the run's own model, from the tables
the notebooks display, and decide each comparison with :mod:`cmakit.report.prose`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from cmakit.report.prose import PAPER_LAM, change, compare, number, plain


def endpoints(histories: Mapping[str, Sequence[Mapping[str, float]]],
              keys: Sequence[str]) -> pd.DataFrame:  # fmt: skip
    """First and last value of each of ``keys`` in each training history.

    Args:
        histories: ``{run name: rows}``, each row a dict (``history.jsonl`` of the trainer, or
            :func:`cmakit.engine.toy.train_toy`'s history).
        keys: Columns to show.

    Returns:
        Rows ``"<key>, start"`` / ``"<key>, end"``, one column per run, rounded to 4 decimals.
    """
    return pd.DataFrame(
        {
            name: {
                f"{key}, {when}": rows[at][key]
                for key in keys
                for when, at in (("start", 0), ("end", -1))
            }  # fmt: skip
            for name, rows in histories.items()
        }
    ).round(4)


def batch_terms_notice(terms: pd.DataFrame, *, scale: float, lam: float) -> str:
    """Notebook 2: the two loss terms of one batch under the zero-shot model.

    Args:
        terms: The notebook's table: rows ``contrastive_loss``, ``cma_loss`` and ``log B
            (contrastive term at chance)``; one column per λ, the paper's λ included as
            ``"paper (λ = 0.001)"`` and this run's CMA as ``"cma (λ = <lam>)"`` (4 decimals).
        scale: The model's logit scale ``s`` (printed with 2 decimals).
        lam: This run's CMA weight.
    """
    contrastive = float(terms.loc["contrastive_loss"].iloc[0])
    log_b = float(terms.loc["log B (contrastive term at chance)"].iloc[0])
    paper = float(terms.loc["cma_loss", f"paper (λ = {plain(PAPER_LAM)})"])
    ours = float(terms.loc["cma_loss", f"cma (λ = {plain(lam)})"])
    side = compare(contrastive, log_b, digits=4)
    meaning = (
        "this model already matches images with their class prompts better than chance"
        if side == "below"
        else "this model does not yet match images with their class prompts better than chance"
    )
    return (
        f"**What to notice.** The contrastive term is the same in every column (the same "
        f"embeddings; it does not depend on λ): {contrastive:.4f}, {side} `log B` = "
        f"{log_b:.4f}, the value of a model that cannot tell the pairs apart, so {meaning}. The "
        "CMA term is negative: it is `−λ` times the mean log-sum-exp of the logits, and it "
        "falls further as image–text similarities rise. Its size grows with λ and with the "
        f"logit scale, `s` = {scale:.2f} for this model (ViT-B/16 ends at 100): at the paper's "
        f"λ = {plain(PAPER_LAM)} it is {number(paper, 4)} on this batch, at this run's λ = "
        f"{plain(lam)} it is {number(ours, 4)}, against a contrastive term of {contrastive:.4f}. "
        "Whether a term of that size moves this model in a short fine-tuning is what the λ "
        "ablation of notebook 6 measures; the embedded world's profiles choose λ on validation "
        "data (`docs/world_study.md`). Several images of one class in a batch share the same "
        "prompt; FLYP and CMA count them as negatives of each other (plain FLYP behaviour), which "
        "keeps the contrastive term above 0 even for a perfect model."
    )


def logit_scale_notice(ends: pd.DataFrame, *, plain_run: str = "flyp", cma_run: str = "cma") -> str:
    """Notebook 2: which way each fine-tuning moved the logit scale, and why it can.

    Args:
        ends: :func:`endpoints` of the two histories with ``logit_scale`` among the keys.
        plain_run, cma_run: The FLYP and CMA columns.
    """

    def moved(run: str) -> str:
        return change(ends.loc["logit_scale, start", run], ends.loc["logit_scale, end", run],
                      digits=4)  # fmt: skip

    return (
        f"**What to notice: the logit scale.** Over fine-tuning, FLYP's logit scale "
        f"{moved(plain_run)} and CMA's {moved(cma_run)} (the table). The CMA term "
        "`−λ · logsumexp_j(s · cos_kj)` goes down when `s` goes up as long as the cosines are "
        "positive (its derivative in `s` is `−λ` times a softmax-weighted mean cosine), so CMA "
        "rewards a colder temperature. FLYP's contrastive loss alone can pull `s` down: with a "
        "handful of classes, many pairs in a batch share a prompt and count as negatives of each "
        "other, and a warmer temperature lowers the price of those ties; on ImageNet such ties "
        "are rarer. Whether either effect wins on this run is what the numbers above say."
    )


def pretraining_notice(ends: pd.DataFrame, *, run: str = "pretraining") -> str:
    """Notebook 1: the pretraining loss against ``log B`` and where the logit scale went.

    Args:
        ends: :func:`endpoints` of the pretraining history with ``loss`` and ``logit_scale``.
        run: Its column.
    """
    loss = change(ends.loc["loss, start", run], ends.loc["loss, end", run], digits=4)
    scale = change(ends.loc["logit_scale, start", run], ends.loc["logit_scale, end", run],
                   digits=4)  # fmt: skip
    return (
        f"**What to notice** (the table). The symmetric InfoNCE loss (`cmakit.CMALoss(0)`, the "
        f"same module that fine-tunes in notebook 2) {loss}: a model that cannot match images "
        "with their captions scores `log B` (B the batch size), and the loss falls as far as "
        f"the two towers learn to match them. The logit scale `s = exp(logit_scale)` is learned with them: it "
        f"{scale} (CLIP starts it at 1/0.07 ≈ 14; OpenAI's ViT-B/16 ends at its cap of 100). "
        "That number matters later: the CMA term's strength depends on it, which is one reason "
        "the embedded world's λ is chosen on validation data (`docs/world_study.md`) rather than "
        "copied from the paper's 0.001 (notebooks 2 and 6). Nothing in this loss pulls the two "
        "modalities together, so the model keeps a modality gap (the primer, notebook 0, shows "
        "why)."
    )


def geometry_table(rows: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    """The geometry targets (:func:`cmakit.core.geometry.geometry_targets` rows) as notebook 1
    shows them: one row per target, the measured value to three significant digits ("—" where
    this report does not measure it), whether it is met, and the target's published source."""
    table = pd.DataFrame(list(rows)).set_index("name")
    table["measured"] = [_sig(v) for v in table["measured"]]
    table["met"] = [{True: "yes", False: "no", None: "—"}[m] for m in table["met"]]
    return table[["target", "measured", "met", "source"]]


def geometry_notice(rows: Sequence[Mapping[str, object]]) -> str:
    """Notebook 1: whether the zero-shot model meets the geometry targets, and which it misses
    (quoting the values as :func:`geometry_table` shows them)."""
    missed = [r for r in rows if r["met"] is False]
    if not missed:
        return (
            "**What to notice** (the table). The zero-shot model meets every target measured "
            "here: it has the geometry the paper's argument starts from, a cold temperature, a "
            "gap between ID images and ID prompts, and the texts on their own side. Notebook 4 "
            "shows the two clouds, and whether FLYP keeps them and CMA merges them."
        )
    misses = "; ".join(f"`{r['name']}` measures {_sig(r['measured'])} against `{r['target']}`"
                       for r in missed)  # fmt: skip
    return (
        f"**What to notice** (the table). The zero-shot model meets every target measured here "
        f"but these: {misses}. The figures of notebook 4 are read with that in mind; "
        "`docs/world_design.md` says which recipes were tried on validation data and why this "
        "one was chosen."
    )


def _sig(value: object) -> str:
    """Three significant digits; "—" for a value not measured (None, or NaN in a table)."""
    if value is None or value != value:  # NaN: pandas' None in a float column
        return "—"
    return f"{float(value):.3g}"
