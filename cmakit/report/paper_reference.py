"""The numbers *reported in the paper* (Kim & Hwang, CVPR 2025), Tables 1-4.

These are the paper's published values, shipped as CSV files inside the package, for showing
beside our results. They are never our measurements. Percentages are as printed (0-100);
Table 4 (geometry) holds the paper's raw values, whose definitions are not public.
"""

from __future__ import annotations

import importlib.resources

import pandas as pd

from cmakit.common.constants import PAPER_OOD_GROUPS

__all__ = ["PAPER_ROWS", "PAPER_SET_BLOCKS", "PAPER_SOURCE", "PAPER_TABLES", "paper_table"]

PAPER_SOURCE = (
    "Kim & Hwang, Enhanced OoD Detection through Cross-Modal Alignment of Multi-Modal "
    "Representations, CVPR 2025 (arXiv 2503.18817)"
)

#: Table name -> what it holds. Numbers 1-4 are accepted as aliases, in this order.
PAPER_TABLES = {
    "table1_mos": "Table 1: ImageNet-1k vs MOS OoD sets, FPR95/AUROC in %, ID-positive FPR95",
    "table2_openood_v15": "Table 2: OpenOOD v1.5 ImageNet-1k, near/far OoD, FPR95/AUROC in %",
    "table3_id_accuracy": "Table 3: ImageNet-1k ID top-1 accuracy in %",
    "table4_geometry": "Table 4: uniformity family and alignment (definitions not public)",
}


_MOS, _NEAR, _FAR = (PAPER_OOD_GROUPS[g] for g in ("mos", "near", "far"))
#: The one mapping from the paper's OoD columns to our OoD set keys (the paper profile's sets,
#: ``cmakit.common.constants.PAPER_OOD_GROUPS``): per table, in the paper's column order, each
#: column stem (``inaturalist`` of ``inaturalist_fpr95``) -> the sets of ours whose per-seed
#: mean fills it. Table 1's ``inaturalist`` is MOS's iNaturalist (``mos_inaturalist``), Table
#: 2's is OpenOOD's (``inaturalist``); ``average`` is the MOS mean, ``near``/``far`` OpenOOD's.
PAPER_SET_BLOCKS: dict[str, dict[str, tuple[str, ...]]] = {
    "table1_mos": {
        "inaturalist": ("mos_inaturalist",),
        "sun": ("mos_sun",),
        "places": ("mos_places",),
        "textures": ("mos_textures",),
        "average": _MOS,
    },
    "table2_openood_v15": {
        **{name: (name,) for name in _NEAR},
        "near": _NEAR,
        **{name: (name,) for name in _FAR},
        "far": _FAR,
    },
}


#: (method, score, table) -> the paper's row of our model and score in that table (score None
#: in Table 3, whose rows are models). Zero-shot is the baseline rows, as the paper prints them.
PAPER_ROWS: dict[tuple[str, str | None, str], str] = {
    ("zero_shot", "mcm", "table1_mos"): "MCM (zero-shot)",
    ("zero_shot", "neglabel", "table1_mos"): "NegLabel",
    ("zero_shot", "mcm", "table2_openood_v15"): "MCM",
    ("zero_shot", "neglabel", "table2_openood_v15"): "NegLabel",
    ("zero_shot", None, "table3_id_accuracy"): "ZS (MCM & NegLabel)",
    **{(method, score, table): f"{label}_{score_label}"
       for method, label in (("flyp", "FLYP"), ("cma", "CMA"))
       for score, score_label in (("mcm", "MCM"), ("neglabel", "NegLabel"))
       for table in ("table1_mos", "table2_openood_v15")},
    ("flyp", None, "table3_id_accuracy"): "FLYP",
    ("cma", None, "table3_id_accuracy"): "CMA",
}  # fmt: skip


def _resolve(name: str | int) -> str:
    names = list(PAPER_TABLES)
    if isinstance(name, int) and not isinstance(name, bool) and 1 <= name <= len(names):
        return names[name - 1]
    if isinstance(name, str) and name in PAPER_TABLES:
        return name
    raise KeyError(f"Unknown paper table {name!r}; choose one of {names} or 1-{len(names)}.")


def paper_table(name: str | int) -> pd.DataFrame:
    """Load one of the paper's reported tables (the paper's numbers, not ours).

    Args:
        name: ``"table1_mos"``, ``"table2_openood_v15"``, ``"table3_id_accuracy"``,
            ``"table4_geometry"``, or the table number 1-4.

    Returns:
        DataFrame with a ``method`` column and one column per reported value; ``attrs``
        carries ``source`` (the paper), ``table`` and ``description``.

    Raises:
        KeyError: Unknown table; the message lists the choices.

    Example:
        >>> paper_table(3).set_index("method").loc["CMA", "id_accuracy"]
        np.float64(82.64)
    """
    key = _resolve(name)
    resource = importlib.resources.files("cmakit.report") / "paper_tables" / f"{key}.csv"
    with resource.open("r", encoding="utf-8") as f:
        df = pd.read_csv(f)
    df.attrs.update(source=f"reported in {PAPER_SOURCE}", table=key, description=PAPER_TABLES[key])
    return df
