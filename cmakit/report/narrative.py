"""The notebooks' computed paragraphs: "what to notice" and "what to conclude", from the run.

Each function takes the numbers a notebook displays (a curve table, the run's summary, a
scored handful of images) and returns Markdown built with :mod:`cmakit.report.prose`, so every
claim holds for the numbers beside it on any profile: where a comparison can go either way,
the words say which way it went in this run. Fractions are quoted in percent with the digits
of the tables (``0.8311`` is "83.11").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cmakit.common.constants import MODEL_LABELS
from cmakit.report.paper_reference import paper_table
from cmakit.report.prose import (
    PAPER_LAM,
    change,
    compare,
    count,
    join,
    near_chance,
    number,
    percent,
    plain,
    span,
    trend,
)


def _label(method: str) -> str:
    return MODEL_LABELS.get(method, method)


def _ends(shifts: Sequence[float]) -> tuple[int, int]:
    """Indices of α = 0 (the model as trained) and of the largest α of a gap-shift curve."""
    if 0.0 not in shifts:
        raise ValueError(f"a gap-shift curve needs α = 0 (the model as trained); got {shifts}.")
    return list(shifts).index(0.0), max(range(len(shifts)), key=lambda k: shifts[k])


def gap_shift_conclusion(curves: Mapping[str, Mapping[str, Sequence[float]]], *,
                         base: str = "flyp", trained: str = "cma",
                         reference: str = "zero_shot") -> str:  # fmt: skip
    """What closing the gap by hand does to far-OoD NegLabel, against what CMA's training does.

    Args:
        curves: ``{model: {"shift": [K], "auroc": [K], ...}}`` of
            :func:`cmakit.engine.evaluate.gap_shift_curve` (AUROC as fractions).
        base, trained, reference: The fine-tuned baseline, the CMA model and the zero-shot model.

    Returns:
        Markdown: each model's change from α = 0 to the largest α, CMA against FLYP at α = 0,
        and whether the hand-made shift or the training moved AUROC more in this run.
    """
    i0, i1 = _ends(curves[base]["shift"])
    alpha = plain(curves[base]["shift"][i1])
    auroc = {m: c["auroc"] for m, c in curves.items()}
    moves = "; ".join(f"{_label(m)} {change(a[i0], a[i1], scale=100)}" for m, a in auroc.items())
    out = [
        f"**What to conclude.** Far-OoD NegLabel AUROC from α = 0 to α = {alpha}, on this "
        f"seed: {moves}."
    ]
    a, b = auroc[trained][i0], auroc[base][i0]
    out.append(
        f"CMA's training leaves it {compare(a, b, digits=4)} FLYP's at α = 0 "
        f"({percent(a)} against {percent(b)})."
    )
    if reference in auroc:
        ref = auroc[reference][i0]
        words = [f"{_label(m)} is {compare(auroc[m][i0], ref, digits=4)} it"
                 for m in (base, trained)]  # fmt: skip
        out.append(f"Against the zero-shot model's {percent(ref)} at α = 0, {join(words)}.")
    if near_chance([x for a in auroc.values() for x in a]):
        out.append("Every value of these curves is near chance (50): on this run, the "
                   "differences above are to be read with caution.")  # fmt: skip
    by_hand = abs(auroc[base][i1] - auroc[base][i0])
    by_training = abs(a - b)
    verdict = (
        "the training moved it more than the hand-made shift of FLYP's embeddings did, "
        "which points at what fine-tuning does to the features rather than at where the gap "
        "sits (the world study, `docs/world_study.md`, tests that reading on more seeds)"
        if by_training > by_hand
        else "the hand-made shift of FLYP's embeddings moved it at least as much as CMA's "
        "training did, so on this run the gap's position cannot be ruled out as what moves "
        "NegLabel"
    )
    out.append(f"Of the two ways to close FLYP's gap, {verdict}.")
    return " ".join(out)


def gap_shift_point(one_point: Mapping[str, Mapping[str, float]], alpha: float) -> str:
    """The one-point table of notebook 4: is the gap left at α = 1 zero, does accuracy move.

    Args:
        one_point: ``{model: {"gap": g, "gap after gap_shift(α = a)": g', "ID accuracy": x,
            "ID accuracy after the shift": x'}}`` as the notebook shows it (4 decimals).
        alpha: The α of the shift.
    """
    after = next(k for k in next(iter(one_point.values())) if k.startswith("gap after"))
    gaps = [row[after] for row in one_point.values()]
    left = "is not 0 for any model" if min(gaps) >= 5e-5 else "rounds to 0 for some model"
    moved = [m for m, row in one_point.items()
             if round(row["ID accuracy"], 4) != round(row["ID accuracy after the shift"], 4)]  # fmt: skip
    acc = (
        f"ID accuracy changes with the shift for {join([_label(m) for m in moved])}"
        if moved
        else "ID accuracy happens not to change for any model on this run"
    )
    return (
        f"**What to notice.** The gap of each model is the number the tables below report (same "
        f"function, same embeddings). At α = {plain(alpha)} the two "
        f"centroids coincide *before* re-normalising; after it, the gap {left} here "
        f"({span(gaps, digits=4)}): re-normalising pulls every shifted point back onto the "
        "sphere, and points at different angles to `g` are rescaled by different amounts. "
        f"{acc}: the argmax over the ID prompts is not invariant to moving the images and the "
        "texts in opposite directions before re-normalising."
    )


def _mean(summary: Mapping[str, Any], method: str, *keys: str) -> float:
    node: Any = summary["methods"][method]
    for key in keys:
        node = node[key]
    return float(node)


def paper_headline() -> str:
    """The paper's headline (its Tables 1 and 3, as printed): the MOS FPR95 of the NegLabel rows
    and the ID accuracy of zero-shot, FLYP and CMA."""
    fpr = paper_table("table1_mos").set_index("method")["average_fpr95"]
    acc = paper_table("table3_id_accuracy").set_index("method")["id_accuracy"]
    rows = {"CMA_NegLabel": "CMA + NegLabel", "FLYP_NegLabel": "FLYP + NegLabel",
            "NegLabel": "zero-shot NegLabel"}  # fmt: skip
    best = "is the best row" if fpr.idxmin() == "CMA_NegLabel" else "is not the best row"
    quoted = ", ".join(f"{name} {fpr[key]:.2f}" for key, name in rows.items())
    return (
        f"**In the paper** (ImageNet-1k, ViT-B/16; its Tables 1 and 3), CMA + NegLabel {best} "
        f"of Table 1: MOS average FPR95 {quoted}. Fine-tuning lifts ID accuracy from "
        f"{acc['ZS (MCM & NegLabel)']:.2f} (zero-shot) to {acc['FLYP']:.2f} (FLYP) and "
        f"{acc['CMA']:.2f} (CMA)."
    )


def headline(summary: Mapping[str, Any], lam: float) -> str:
    """Notebook 7's headline: ID accuracy, MCM and NegLabel of the three models, as tabled.

    Args:
        summary: The run's summary (:mod:`cmakit.report.summary`), means over seeds.
        lam: The CMA weight λ of the run.

    Returns:
        Markdown whose every number is a cell of notebook 7's tables (percent, two decimals),
        with each comparison's verb taken from its sign.
    """
    acc = {m: _mean(summary, m, "id_accuracy") for m in ("zero_shot", "flyp", "cma")}
    far = {m: {s: _mean(summary, m, "ood", s, "far_mean", "auroc") for s in ("mcm", "neglabel")}
           for m in acc}  # fmt: skip
    near = {m: _mean(summary, m, "ood", "neglabel", "near_mean", "auroc") for m in acc}
    seeds = count(len(summary["seeds"]), "seed")
    lines = [
        f"**This run** ({seeds}, CMA's λ = {plain(lam)}; the tables above):",
        f"- ID accuracy: zero-shot {percent(acc['zero_shot'])}; "
        + ", ".join(
            f"{_label(m)} {percent(acc[m])} ({compare(acc[m], acc['zero_shot'], digits=4)} "
            "zero-shot)"
            for m in ("flyp", "cma")
        )
        + f"; CMA is {compare(acc['cma'], acc['flyp'], digits=4)} FLYP.",
        f"- MCM, far-OoD AUROC: CMA {percent(far['cma']['mcm'])} is "
        f"{compare(far['cma']['mcm'], far['flyp']['mcm'], digits=4)} FLYP "
        f"{percent(far['flyp']['mcm'])}.",
    ]
    for group, values in (("far", {m: far[m]["neglabel"] for m in acc}), ("near", near)):
        zs = values["zero_shot"]
        vs = ", ".join(
            f"{_label(m)} {percent(values[m])} ({compare(values[m], zs, digits=4)} zero-shot)"
            for m in ("flyp", "cma")
        )
        chance = " All three are near chance (50)." if near_chance(list(values.values())) else ""
        lines.append(
            f"- NegLabel, {group}-OoD AUROC: zero-shot {percent(zs)}; {vs}; CMA is "
            f"{compare(values['cma'], values['flyp'], digits=4)} FLYP.{chance}"
        )
    paper_lam = PAPER_LAM
    lines.append(
        "\nCMA here uses the paper's λ."
        if lam == paper_lam
        else f"\nCMA here uses λ = {plain(lam)}, not the paper's {plain(paper_lam)}: the embedded "
        "world chooses λ on validation data only (`docs/world_study.md`), since the tiny CLIP's "
        "logit scale (notebook 1) is far from ViT-B/16's, and the λ ablation (notebook 6) "
        "shows what the choice does."
    )
    return "\n".join(lines)


def scored_handful(scores: Sequence[float], sources: Sequence[str]) -> str:
    """What the scored handful of notebook 7 shows: do the OoD images' NegLabel scores drop?

    Args:
        scores: NegLabel score of each image shown (as displayed, 3 decimals).
        sources: ``"ID"`` or the OoD set of each image.
    """
    ids = [s for s, src in zip(scores, sources, strict=True) if src == "ID"]
    ood = [s for s, src in zip(scores, sources, strict=True) if src != "ID"]
    low = [s for s in ood if round(s, 3) < round(min(ids), 3)]
    if not low:
        verdict = (
            "none of the OoD images shown scores below the ID images: on these examples the "
            "negative labels do not pull the score down, and NegLabel cannot tell them from ID"
        )
    elif len(low) == len(ood):
        verdict = (
            "every OoD image shown scores below every ID image: the mass flowed to the negatives"
        )
    else:
        verdict = "some of the OoD images shown score below every ID image, the others do not"
    return (
        f"**What to notice.** On the images above, NegLabel gives the ID images "
        f"{span(ids, digits=3)} and the OoD images {span(ood, digits=3)}: {verdict}. For the ID "
        "image below, compare its own class's prompt with the best negative labels; for the OoD "
        "image, whether negative labels come as close as its nearest ID prompt. When they do, "
        "the mass flows to them and the score drops; when an OoD image's nearest negative labels "
        "are no closer than its nearest ID prompt (a look-alike shape, say), NegLabel cannot "
        "tell it from ID either."
    )


def ablation_notice(rows: Sequence[Mapping[str, Any]], zero_shot: Mapping[str, float], *,
                    lam: float, n_seeds: int) -> str:  # fmt: skip
    """Notebook 6: how the gap, ID accuracy and NegLabel's FPR95 move along the λ grid.

    Args:
        rows: The ablation table's rows (``lam``, ``modality_gap``, ``id_accuracy``,
            ``neglabel_fpr95``; fractions, compared at the table's 4 decimals).
        zero_shot: The zero-shot reference (same keys).
        lam: The λ of the run's CMA model.
        n_seeds: Seeds behind each grid point.
    """
    rows = sorted(rows, key=lambda r: r["lam"])
    lams = ", ".join(plain(r["lam"]) for r in rows)
    gap = trend([r["modality_gap"] for r in rows], digits=4)
    acc = trend([r["id_accuracy"] for r in rows], digits=4)
    zs_fpr = zero_shot["neglabel_fpr95"]
    better = [r for r in rows if round(r["neglabel_fpr95"], 4) < round(zs_fpr, 4)]
    fpr = (
        f"{count(len(better), 'λ')} of the grid get{'s' if len(better) == 1 else ''} a lower "
        f"NegLabel FPR95 than the zero-shot model ({number(zs_fpr, 4)}) on this run"
        if better
        else f"no λ of the grid gets a lower NegLabel FPR95 than the zero-shot model "
        f"({number(zs_fpr, 4)}) on this run: here fine-tuning costs OoD detection and CMA does "
        "not win it back"
    )
    by_lam = {float(r["lam"]): r for r in rows}
    if 1.0 in by_lam and 0.0 in by_lam:
        at_one, flyp = by_lam[1.0]["id_accuracy"], by_lam[0.0]["id_accuracy"]
        one = (
            f"At λ = 1, where the contrastive partition term is cancelled and nothing pushes "
            f"mismatched pairs apart, ID accuracy is {number(at_one, 4)}, "
            f"{compare(at_one, flyp, digits=4)} FLYP's {number(flyp, 4)}."
        )
    else:
        one = (
            "The grid stops before λ = 1, where the contrastive partition term would be "
            "cancelled and nothing would push mismatched pairs apart."
        )
    why = (
        "This run's CMA model uses the paper's λ; the grid shows what other values do here."
        if lam == PAPER_LAM
        else f"The best λ depends on the logit scale (ViT-B/16's is 100; notebook 1 prints the "
        "tiny CLIP's), the batch size and the length of training, which is why this run's CMA "
        f"model uses λ = {plain(lam)}, chosen on validation data (`docs/world_study.md`), and "
        "the grid is part of the result."
    )
    return (
        f"**What to notice.** Over the grid (λ = {lams}), the gap {gap}, and ID accuracy "
        f"{acc} (the table). {one} Whether a λ beats FLYP and zero-shot on FPR95 is the "
        f"result, not an assumption: {fpr}. The paper reports only λ = 0.001 on ImageNet. "
        f"{why} This run evaluates each λ on {count(n_seeds, 'seed')}."
    )


def geometry_scale(summary: Mapping[str, Any]) -> str:
    """Notebook 5: the paper's Align values against this run's, as the geometry table prints them.

    Args:
        summary: The run's summary; ``methods[*]["geometry"]`` holds ``align_id``/``align_ood``.
    """
    keys = ("align_id", "align_ood")
    ours = [float(m["geometry"][k]) for m in summary["methods"].values() for k in keys]
    theirs = paper_table("table4_geometry")[list(keys)].to_numpy().ravel().tolist()
    lo, hi = min(theirs), max(theirs)
    inside = [x for x in ours if lo <= round(x, 3) <= hi]
    if not inside:
        where = "all outside the paper's range"
    elif len(inside) == len(ours):
        where = "all inside the paper's range"
    else:
        where = "partly inside the paper's range"
    return (
        f"**The paper's block is on another scale.** The paper's Align values span "
        f"{span(theirs, digits=3)}; this run's span {span(ours, digits=3)}, {where}. Our "
        "`align_id` is at least the square of the modality gap (Jensen's inequality: the mean "
        "of `‖i − t‖²` is at least `‖mean(i) − mean(t)‖²`, the classes being balanced), so "
        "a small Align value needs a small gap, which zero-shot CLIP does not have: the "
        "paper's Align and Uni columns must be computed on other pairs or with another "
        "normalisation, and their definitions are not public. Our numbers also come from a "
        "different model and data than ViT-B/16 on ImageNet. So only the *ordering* of methods "
        "within each block can be compared with the paper (for instance whether CMA has the "
        "lowest cross-modal uniformity and alignment), never the values."
    )
