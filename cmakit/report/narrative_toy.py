"""The primer's computed paragraphs: what its toy runs showed, from their own histories.

The primer (notebook 0) trains free 3-D embeddings (:mod:`cmakit.engine.toy`) and scores noisy
copies of them. Its "what to notice" paragraphs are built here from the tables the notebook
displays, with :mod:`cmakit.report.prose`, so a claim ("the gap closes", "NegLabel beats MCM
at every λ") is made only when the numbers beside it bear it out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from cmakit.report.narrative_training import endpoints
from cmakit.report.prose import change, compare, join, trend

#: History columns whose first and last values the primer shows.
ENDPOINT_KEYS = ("contrastive_loss", "modality_gap", "matched_cos")


def toy_endpoints(histories: Mapping[str, Sequence[Mapping[str, float]]]) -> pd.DataFrame:
    """First and last value of each :data:`ENDPOINT_KEYS` column of each training history.

    Args:
        histories: ``{run name: history}`` of :func:`cmakit.engine.toy.train_toy`.

    Returns:
        Rows ``"<key>, start"`` / ``"<key>, end"``, one column per run, rounded to 4 decimals
        (the values :func:`toy_training_notice` quotes).
    """
    return endpoints(histories, ENDPOINT_KEYS)


def toy_training_notice(endpoints: pd.DataFrame, *, plain_run: str, cma_run: str) -> str:
    """Section 2: the contrastive loss alone against the same loss with the CMA term.

    Args:
        endpoints: :func:`toy_endpoints` of the two runs.
        plain_run, cma_run: Their column names (λ = 0 and λ > 0).
    """
    e = endpoints

    def moved(run: str, key: str) -> str:
        return change(e.loc[f"{key}, start", run], e.loc[f"{key}, end", run], digits=4)

    plain_end, cma_end = (
        e.loc["contrastive_loss, end", plain_run],
        e.loc["contrastive_loss, end", cma_run],
    )
    return (
        f"**What to notice** (the table above). With the contrastive loss alone ({plain_run}), "
        f"the contrastive term {moved(plain_run, 'contrastive_loss')} while the gap "
        f"{moved(plain_run, 'modality_gap')}; the grey segments show whether each ID image now "
        f"faces its own prompt. With CMA ({cma_run}) the gap {moved(cma_run, 'modality_gap')} and "
        f"the matched cosine {moved(cma_run, 'matched_cos')}; its contrastive term ends "
        f"{compare(cma_end, plain_end, digits=4)} the contrastive-only run's "
        f"({cma_end:.4f} against {plain_end:.4f})."
    )


def _by_name(values: Mapping[str, float]) -> str:
    return join([f"{name}: {value:.4f}" for name, value in values.items()])


def toy_sweep_notice(
    final_gap_by_s: Mapping[str, float], final_gap_by_lam: Mapping[str, float]
) -> str:
    """Section 4: how the final gap moves with the temperature (λ = 0) and with λ.

    Args:
        final_gap_by_s: ``{"s = 1": gap, ...}`` in increasing ``s`` (the table's "final gap").
        final_gap_by_lam: ``{"λ = 0": gap, ...}`` in increasing λ.
    """
    return (
        f"**What to notice** (the table's final gaps). Temperature, at λ = 0 ("
        f"{_by_name(final_gap_by_s)}): as `s` grows, the final gap "
        f"{trend(list(final_gap_by_s.values()), digits=4)}. A warm temperature leaves the "
        "contrastive loss a gradient until the pairs meet; a cold one saturates first and keeps "
        "whatever gap is left then, and CLIP needs the cold temperature to separate many "
        f"similar concepts. The CMA weight, at the cold temperature ({_by_name(final_gap_by_lam)}): "
        f"as λ grows, the final gap {trend(list(final_gap_by_lam.values()), digits=4)}."
    )


def toy_ood_notice(table: pd.DataFrame, *, lam: float) -> str:
    """Section 5: NegLabel and MCM on the toy's test images, per λ, over the draws.

    Args:
        table: One row per (λ, draw) with ``λ``, ``draw``, ``NegLabel AUROC``, ``NegLabel
            FPR95`` and ``MCM AUROC`` (the notebook's ``ood_table``; its means are shown to 3
            decimals).
        lam: The λ of the side-by-side comparison (its value must be in ``table``).
    """
    means = table.drop(columns="draw").groupby("λ").mean()
    lams = list(means.index)

    def moved(col: str) -> str:
        return change(means.loc[lams[0], col], means.loc[lam, col], digits=3)

    neg, mcm = means["NegLabel AUROC"].round(3), means["MCM AUROC"].round(3)
    wins = int((neg > mcm).sum())
    versus = "at every λ" if wins == len(lams) else "at no λ" if wins == 0 else "at some λ, not all"
    best = table.pivot(index="draw", columns="λ", values="NegLabel AUROC").round(3).idxmax(axis=1)
    ranking = (
        "the same λ gives the best NegLabel AUROC in every draw"
        if best.nunique() == 1
        else "the λ with the best NegLabel AUROC changes from draw to draw"
    )
    return (
        f"**What to notice** (the means over draws). From λ = {lams[0]:g} to λ = {lam:g}, "
        f"NegLabel's mean AUROC {moved('NegLabel AUROC')} and its mean FPR95 "
        f"{moved('NegLabel FPR95')}; in the histograms, compare where the ID and the OoD scores "
        "pile up with and without CMA. One way to see why closing the gap can help: across a "
        "gap, every text is roughly equally far from an image, so its cosines to the ID prompts "
        "and to the negative labels are squeezed together; once the image sits among the texts, "
        "an ID image's own prompt is clearly its nearest text, and an OoD image's nearest text "
        f"is more often a negative label. NegLabel's mean AUROC is above MCM's {versus} here, as "
        "negative labels add evidence MCM never looks at.\n\n"
        f"Read it as a mechanism, not a promise. In the per-draw table, {ranking}; the toy is "
        "3-D, with few concepts and test images that are noisy copies of trained points. "
        "Whether the embedded world of notebooks 1–7 shows the paper's gain is a result of each "
        "run, not of this toy: notebook 7 compares the three models there. Notebooks 2–7 take "
        "the same calls to a real (tiny) CLIP: notebook 2 evaluates `CMALoss` on a real batch, "
        "notebook 4 measures `modality_gap` and `gap_shift`, notebook 7 scores images with "
        "`mcm_score` and `neglabel_score`."
    )
