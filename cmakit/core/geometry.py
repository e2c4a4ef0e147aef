"""Geometry of a joint image-text embedding space (PAPER.md §5).

Modality gap (Liang et al. 2022), alignment and uniformity (Wang & Isola 2020), a documented
reading of the paper's uniformity family (Table 4; its definitions are not public), a
deterministic joint PCA for figures, the gap-shift experiment, and the geometry targets of a
pretrained CLIP (:data:`GEOMETRY_TARGETS`, docs/world_design.md). Inputs are L2-normalised
``[N, D]`` embeddings (numpy or torch); sums run in float64 over row blocks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
import torch

from cmakit.core.checks import (
    check_embeddings,
    check_positive,
    check_same_dim,
    check_same_rows,
)

__all__ = [
    "GEOMETRY_TARGETS",
    "READING",
    "GeometryTarget",
    "alignment",
    "gap_shift",
    "geometry_measures",
    "geometry_targets",
    "joint_pca",
    "mean_cosines",
    "modality_gap",
    "pca_axes",
    "text_side_fraction",
    "uniformity",
    "uniformity_family",
]

#: Rows per block in pairwise computations.
_BLOCK = 1024

#: The reading of the paper's Table 4 implemented by :func:`uniformity_family`.
READING = (
    "uni_X = -log mean_{pairs in X} exp(-t ||u - v||^2) (negated Wang-Isola uniformity, t=2, "
    "larger = more spread) over: all = pairs i<j of the concatenated image+text set; "
    "i = image pairs i<j; t = text pairs i<j; cm = every (image, text) pair; "
    "cmm = matched (image, text) pairs, i.e. image with the text of its own class "
    "(labels given) or row k with row k (no labels). A cmakit reading, not the paper's code."
)


def _pair_stats(a: torch.Tensor, b: torch.Tensor | None, *, t: float, mask=None):
    """Return (logsumexp of -t*d2, sum of cosines, pair count) over pairs of ``a`` and ``b``.

    ``b=None``: pairs i<j within ``a``. ``mask(rows)``: boolean ``[n, len(b)]`` of kept pairs.
    """
    other = a if b is None else b
    lse_parts, cos_sum, count = [], 0.0, 0
    for start in range(0, a.shape[0], _BLOCK):
        block = a[start : start + _BLOCK]  # (n, D)
        cos = block @ other.T  # (n, M)
        d2 = (block.square().sum(1, keepdim=True) + other.square().sum(1) - 2 * cos).clamp_min(0)
        if b is None:
            keep = torch.arange(start, start + block.shape[0])[:, None] < torch.arange(
                other.shape[0]
            )
        elif mask is not None:
            keep = mask(slice(start, start + block.shape[0]))
        else:
            keep = torch.ones_like(cos, dtype=torch.bool)
        lse_parts.append(torch.logsumexp(torch.where(keep, -t * d2, -math.inf).flatten(), 0))
        cos_sum += float(cos[keep].sum())
        count += int(keep.sum())
    if count == 0:
        raise ValueError("No pairs to average over (need at least two embeddings or one match).")
    return float(torch.logsumexp(torch.stack(lse_parts), 0)), cos_sum, count


def _subsample(x: torch.Tensor, max_points: int | None, seed: int) -> torch.Tensor:
    if max_points is None or x.shape[0] <= max_points:
        return x
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points]
    return x[idx.sort().values]


def _emb64(x, name: str, dim: int | None = None) -> torch.Tensor:
    return check_embeddings(x, name, dim=dim).detach().cpu().double()


def modality_gap(image_emb, text_emb) -> float:
    """Modality gap ``||mean(image) - mean(text)||_2`` (Liang et al. 2022).

    Args:
        image_emb: ``[N, D]`` L2-normalised image embeddings.
        text_emb: ``[M, D]`` L2-normalised text embeddings (``M`` may differ from ``N``).

    Returns:
        The gap, a float in ``[0, 2]``.

    Raises:
        ValueError: Bad embeddings or unequal ``D``.

    Example:
        >>> x = np.eye(2)
        >>> modality_gap(x, x)
        0.0
    """
    image = _emb64(image_emb, "image_emb")
    text = _emb64(text_emb, "text_emb", image.shape[1])
    return float(torch.linalg.vector_norm(image.mean(0) - text.mean(0)))


def alignment(x, y, *, alpha: float = 2.0) -> float:
    """Wang–Isola alignment ``mean_k ||x_k - y_k||^alpha`` over matched pairs.

    Args:
        x: ``[N, D]`` L2-normalised embeddings.
        y: ``[N, D]`` L2-normalised embeddings; row k is matched with ``x[k]``.
        alpha: Exponent > 0 (2 in the paper).

    Returns:
        Alignment, a float in ``[0, 2**alpha]`` (lower = better aligned).

    Raises:
        ValueError: Bad embeddings, unequal shapes, or ``alpha`` <= 0.
    """
    a = _emb64(x, "x")
    b = _emb64(y, "y", a.shape[1])
    check_same_rows(a, b, "x", "y")
    alpha = check_positive(alpha, "alpha")
    return float((a - b).norm(dim=1).pow(alpha).mean())


def uniformity(x, t: float = 2.0, *, max_points: int | None = 10_000, seed: int = 0) -> float:
    """Wang–Isola uniformity ``log mean_{i<j} exp(-t ||x_i - x_j||^2)`` (lower = more uniform).

    Args:
        x: ``[N, D]`` L2-normalised embeddings, ``N >= 2``.
        t: Positive scale (2 in Wang & Isola).
        max_points: Above this many rows, use a seeded random subset of that many row
            positions (deterministic for a given input); ``None``: all rows.
        seed: Seed of the subset.

    Returns:
        Uniformity, a float in ``[-4t, 0]``.

    Raises:
        ValueError: Bad embeddings, fewer than two rows, or ``t`` <= 0.

    Example:
        >>> round(uniformity(np.array([[1.0, 0.0], [-1.0, 0.0]])), 6)
        -8.0
    """
    t = check_positive(t, "t")
    e = _subsample(_emb64(x, "x"), max_points, seed)
    lse, _, count = _pair_stats(e, None, t=t)
    return lse - math.log(count)


def _label_mask(labels_image, labels_text, n_image: int, n_text: int):
    li, lt = np.asarray(labels_image), np.asarray(labels_text)
    if li.shape != (n_image,) or lt.shape != (n_text,):
        raise ValueError(
            f"labels_image must have shape ({n_image},) and labels_text ({n_text},); "
            f"got {li.shape} and {lt.shape}."
        )
    codes = {v: k for k, v in enumerate(np.unique(li).tolist())}
    li_t = torch.tensor([codes[v] for v in li.tolist()])
    lt_t = torch.tensor([codes.get(v, -1) for v in lt.tolist()])  # -1: class without images
    return lambda rows: li_t[rows][:, None] == lt_t[None, :]


def _matched(image, text, labels_image, labels_text, *, t: float):
    if (labels_image is None) != (labels_text is None):
        raise ValueError("Give both labels_image and labels_text, or neither.")
    if labels_image is None:
        check_same_rows(image, text, "image_emb", "text_emb (paired rows, no labels)")
        d2 = (image - text).square().sum(1)
        return float(torch.logsumexp(-t * d2, 0)), float((image * text).sum()), image.shape[0]
    mask = _label_mask(labels_image, labels_text, image.shape[0], text.shape[0])
    return _pair_stats(image, text, t=t, mask=mask)


def uniformity_family(
    image_emb,
    text_emb,
    *,
    labels_image=None,
    labels_text=None,
    t: float = 2.0,
    max_points: int | None = 5_000,
    seed: int = 0,
) -> dict[str, float]:
    """Uni-All, Uni-I, Uni-T, Uni-CM and Uni-CMM under the reading :data:`READING`.

    Each ``uni_*`` is ``-log mean exp(-t ||u - v||^2)`` over a set of pairs (positive; larger =
    more spread). Matched pairs (``cmm``) are an image with the text of its own class when
    labels are given (e.g. ``labels_text = arange(C)`` for one prompt per class), otherwise row
    k with row k. Also returns mean cosines: ``cos_i`` (image pairs), ``cos_t`` (text pairs),
    ``cos_cm`` (all image-text pairs), ``cos_cmm`` (matched pairs). Images and texts above
    ``max_points`` are subsampled with ``seed`` (only for all/i/t/cm; cmm uses all rows).

    Args:
        image_emb: ``[N, D]`` L2-normalised image embeddings.
        text_emb: ``[M, D]`` L2-normalised text embeddings.
        labels_image: ``[N]`` class labels of the images (or ``None``).
        labels_text: ``[M]`` class labels of the texts (or ``None``: then ``M == N`` pairs).
        t: Positive scale of the Gaussian kernel.
        max_points: Subset size per modality for the pairwise terms (``None``: all).
        seed: Subset seed.

    Returns:
        Dict with keys ``uni_all, uni_i, uni_t, uni_cm, uni_cmm, cos_i, cos_t, cos_cm, cos_cmm``.

    Raises:
        ValueError: Bad embeddings, label shapes, only one label argument given, unpaired rows
            without labels, or no matched pair.
    """
    t = check_positive(t, "t")
    image = _emb64(image_emb, "image_emb")
    text = _emb64(text_emb, "text_emb", image.shape[1])
    out: dict[str, float] = {}
    lse, cos_sum, n = _matched(image, text, labels_image, labels_text, t=t)
    out["uni_cmm"], cos_cmm = math.log(n) - lse, cos_sum / n
    image = _subsample(image, max_points, seed)
    text = _subsample(text, max_points, seed + 1)
    cosines = {}
    for key, a, b in (("i", image, None), ("t", text, None), ("cm", image, text)):
        lse, cos_sum, n = _pair_stats(a, b, t=t)
        out[f"uni_{key}"], cosines[f"cos_{key}"] = math.log(n) - lse, cos_sum / n
    lse, _, n = _pair_stats(torch.cat([image, text]), None, t=t)
    out["uni_all"] = math.log(n) - lse
    out = {k: out[k] for k in ("uni_all", "uni_i", "uni_t", "uni_cm", "uni_cmm")}
    return {**out, **cosines, "cos_cmm": cos_cmm}


def mean_cosines(image_emb, text_emb, *, labels_image=None, labels_text=None) -> dict:
    """Mean cosine within images, within texts, across modalities and across matched pairs.

    Same pair sets as :func:`uniformity_family` (all rows, no subsampling).

    Returns:
        ``{"cos_i", "cos_t", "cos_cm", "cos_cmm"}`` as floats in ``[-1, 1]``.
    """
    fam = uniformity_family(
        image_emb, text_emb, labels_image=labels_image, labels_text=labels_text, max_points=None
    )
    return {k: v for k, v in fam.items() if k.startswith("cos_")}


def joint_pca(*arrays, n_components: int = 2) -> tuple[list[np.ndarray], np.ndarray]:
    """Project several ``[N_k, D]`` arrays onto principal axes fitted on their concatenation.

    The axes are the top right-singular vectors of the centred concatenation (float64 SVD);
    each axis's sign is fixed so that its largest-magnitude loading is positive, so the result
    is deterministic. Inputs need not be normalised.

    Args:
        *arrays: One or more finite ``[N_k, D]`` arrays with a common ``D``.
        n_components: Number of axes, ``1 <= n_components <= min(sum N_k, D)``.

    Returns:
        ``(projections, explained_variance_ratio)``: a list of ``[N_k, n_components]`` arrays
        (centred with the joint mean) and the ``[n_components]`` variance fractions.

    Raises:
        ValueError: No arrays, bad arrays, unequal ``D``, or ``n_components`` out of range.
    """
    mats = _float64_arrays(arrays, "joint_pca")
    mean, axes, ratio = pca_axes(*mats, n_components=n_components)
    return [(m - mean) @ axes.T for m in mats], ratio


def _float64_arrays(arrays, caller: str) -> list[np.ndarray]:
    if not arrays:
        raise ValueError(f"{caller} needs at least one [N, D] array.")
    mats = [check_embeddings(a, f"arrays[{k}]", normalized=False) for k, a in enumerate(arrays)]
    mats = [m.detach().cpu().double().numpy() for m in mats]
    for k, m in enumerate(mats[1:], start=1):
        check_same_dim(mats[0], m, "arrays[0]", f"arrays[{k}]")
    return mats


def pca_axes(*arrays, n_components: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The principal axes of several ``[N_k, D]`` arrays fitted on their concatenation, so that
    other arrays can be projected onto the same axes: ``(x - mean) @ axes.T``.

    The axes and their signs are those of :func:`joint_pca` (which projects with them).

    Returns:
        ``(mean [D], axes [n_components, D], explained_variance_ratio [n_components])``.

    Raises:
        ValueError: No arrays, bad arrays, unequal ``D``, or ``n_components`` out of range.
    """
    joint = np.concatenate(_float64_arrays(arrays, "pca_axes"))
    limit = min(joint.shape)
    if isinstance(n_components, bool) or not isinstance(n_components, int):
        raise ValueError(f"n_components must be an int; got {n_components!r}.")
    if not 1 <= n_components <= limit:
        raise ValueError(f"n_components must be in [1, {limit}]; got {n_components}.")
    mean = joint.mean(0)
    _, sing, vt = np.linalg.svd(joint - mean, full_matrices=False)
    axes = vt[:n_components]  # (k, D)
    signs = np.sign(axes[np.arange(n_components), np.abs(axes).argmax(1)])
    axes = axes * signs[:, None]
    var = sing**2
    ratio = var[:n_components] / var.sum() if var.sum() > 0 else np.zeros(n_components)
    return mean, axes, ratio


def gap_axes(image_emb, text_emb, *arrays) -> list[np.ndarray]:
    """Project arrays onto the modality-gap direction and the top PC orthogonal to it.

    Axis 1 is ``g / ||g||`` with ``g = mean(image_emb) - mean(text_emb)``: along it the two
    modalities separate by exactly the centroid gap. Axis 2 is the first principal axis of the
    concatenation of ``arrays`` after removing their component along axis 1 (sign fixed as in
    :func:`joint_pca`). Coordinates are centred on the joint mean of ``arrays``.

    Args:
        image_emb: ``[N, D]`` L2-normalised images that define the gap (e.g. ID test images).
        text_emb: ``[M, D]`` L2-normalised texts that define the gap (e.g. ID prompts).
        *arrays: ``[N_k, D]`` arrays to project (e.g. the four layers of the PCA figure).

    Returns:
        One ``[N_k, 2]`` array per input array.

    Raises:
        ValueError: bad embeddings, a zero gap, or no arrays.
    """
    image = check_embeddings(image_emb, "image_emb").double()
    text = check_embeddings(text_emb, "text_emb", dim=image.shape[1]).double()
    gap = (image.mean(0) - text.mean(0)).numpy()
    if not arrays or np.linalg.norm(gap) < 1e-12:
        raise ValueError("gap_axes needs at least one array and a non-zero gap.")
    u = gap / np.linalg.norm(gap)
    mats = [
        check_embeddings(a, f"arrays[{k}]", normalized=False).double().numpy()
        for k, a in enumerate(arrays)
    ]
    joint = np.concatenate(mats)
    mean = joint.mean(0)
    resid = (joint - mean) - np.outer((joint - mean) @ u, u)
    v = np.linalg.svd(resid, full_matrices=False)[2][0]
    v = v * np.sign(v[np.abs(v).argmax()])
    return [np.stack([(m - mean) @ u, (m - mean) @ v], axis=1) for m in mats]


def gap_shift(image_emb, text_emb, alpha: float, *, gap=None):
    """Move both modalities along the gap by ``alpha`` of the gap, then re-normalise.

    With ``g = mean(image) - mean(text)`` (or the given ``gap``): ``image' = normalise(image - alpha/2 * g)`` and
    ``text' = normalise(text + alpha/2 * g)``. ``alpha = 0`` is the identity (up to rounding);
    ``alpha = 1`` makes the two centroids coincide before re-normalising; negative ``alpha``
    widens the gap. Liang et al. shift by a fixed distance along ``g / ||g||`` instead.

    Args:
        image_emb: ``[N, D]`` L2-normalised image embeddings.
        text_emb: ``[M, D]`` L2-normalised text embeddings.
        alpha: Finite fraction of the gap to close.
        gap: Optional ``[D]`` gap vector to use instead of the one of these inputs, so that
            further sets (OoD images, negative-label texts) move exactly as the ID sets do.

    Returns:
        ``(image', text')``, L2-normalised, of the same type (numpy or torch) as the inputs.

    Raises:
        ValueError: Bad embeddings, non-finite ``alpha``, or a shifted vector of zero norm.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number; got {alpha!r}.")
    image = check_embeddings(image_emb, "image_emb")
    text = check_embeddings(text_emb, "text_emb", dim=image.shape[1])
    if gap is None:
        gap = image.mean(0) - text.mean(0)
    else:
        gap = torch.as_tensor(np.asarray(gap), dtype=image.dtype)
        if gap.shape != (image.shape[1],) or not bool(torch.isfinite(gap).all()):
            raise ValueError(
                f"gap must be a finite [{image.shape[1]}] vector; got shape {tuple(gap.shape)}."
            )
    shifted = [image - alpha / 2 * gap, text + alpha / 2 * gap]
    out = []
    for name, s, orig in zip(
        ("image_emb", "text_emb"), shifted, (image_emb, text_emb), strict=True
    ):
        norms = s.norm(dim=1, keepdim=True)
        if bool((norms < 1e-12).any()):
            raise ValueError(f"gap_shift(alpha={alpha}) maps a row of {name} to zero.")
        s = s / norms
        out.append(s.numpy() if isinstance(orig, np.ndarray) else s)
    return tuple(out)


def text_side_fraction(image_emb, text_emb, query_emb) -> float:
    """Fraction of ``query_emb`` rows strictly nearer the text centroid than the image centroid.

    The two cones of Liang et al. (2022, Fig. 1): in CLIP every text lies nearer
    ``mean(text)`` than ``mean(image)``. Distances are Euclidean to the (unnormalised) centroids;
    a tie counts as not on the text side.

    Args:
        image_emb: ``[N, D]`` L2-normalised images defining the image centroid.
        text_emb: ``[M, D]`` L2-normalised texts defining the text centroid.
        query_emb: ``[Q, D]`` L2-normalised rows to place (e.g. the negative labels).

    Returns:
        A fraction in ``[0, 1]``.

    Raises:
        ValueError: Bad embeddings or unequal ``D``.

    Example:
        >>> text_side_fraction(np.eye(2)[:1], np.eye(2)[1:], np.eye(2))
        0.5
    """
    image = _emb64(image_emb, "image_emb")
    text = _emb64(text_emb, "text_emb", image.shape[1])
    query = _emb64(query_emb, "query_emb", image.shape[1])
    to_text = torch.linalg.vector_norm(query - text.mean(0), dim=1)  # (Q,)
    to_image = torch.linalg.vector_norm(query - image.mean(0), dim=1)  # (Q,)
    return float((to_text < to_image).double().mean())


def geometry_measures(image_emb, labels, id_text_emb, neg_text_emb, *, ood_image_emb=None) -> dict:
    """The embedding quantities of :data:`GEOMETRY_TARGETS` for one model.

    Args:
        image_emb: ``[N, D]`` L2-normalised ID images (e.g. the ID validation split).
        labels: ``[N]`` their class indices into ``id_text_emb``.
        id_text_emb: ``[K, D]`` L2-normalised ID prompts, one per class.
        neg_text_emb: ``[M, D]`` L2-normalised negative labels (``M >= 1``).
        ood_image_emb: Optional ``[N', D]`` OoD images; they join the ID images in "all images"
            (the image centroid of the text-side fractions) and nowhere else.

    Returns:
        ``modality_gap`` (ID images vs. ID prompts), ``text_side_id_prompts`` and
        ``text_side_negative_labels`` (:func:`text_side_fraction` with all images against all
        texts = ID prompts and negative labels), ``uni_i``, ``uni_t``, ``uni_cm`` (of
        :func:`uniformity_family` on ID images and prompts with labels) and ``negative_labels``
        (``M``).

    Raises:
        ValueError: Bad embeddings, unequal ``D`` or bad labels.
    """
    images = _emb64(image_emb, "image_emb")
    prompts = _emb64(id_text_emb, "id_text_emb", images.shape[1])
    negatives = _emb64(neg_text_emb, "neg_text_emb", images.shape[1])
    every_image = images
    if ood_image_emb is not None:
        every_image = torch.cat([images, _emb64(ood_image_emb, "ood_image_emb", images.shape[1])])
    every_text = torch.cat([prompts, negatives])
    fam = uniformity_family(
        images, prompts, labels_image=labels, labels_text=np.arange(len(prompts))
    )
    return {
        "modality_gap": modality_gap(images, prompts),
        "text_side_id_prompts": text_side_fraction(every_image, every_text, prompts),
        "text_side_negative_labels": text_side_fraction(every_image, every_text, negatives),
        **{k: fam[k] for k in ("uni_i", "uni_t", "uni_cm")},
        "negative_labels": len(negatives),
    }


@dataclasses.dataclass(frozen=True)
class GeometryTarget:
    """One target: ``measured[name] <op> bound``, ``bound`` a number, a closed range
    ``(low, high)`` (op ``"in"``) or another measured key plus ``offset``.

    Attributes:
        name: Key of the measured value (accuracies as fractions in [0, 1]).
        op: ``">="``, ``"<"`` or ``"in"``.
        bound: Number, ``(low, high)`` or the key of another measured value.
        source: The published value the target stands for.
        offset: Added to a keyed bound (``flyp_id_accuracy >= id_accuracy + 0.10``).
    """

    name: str
    op: str
    bound: float | str | tuple[float, float]
    source: str
    offset: float = 0.0

    def rule(self) -> str:
        """The target in words, e.g. ``">= 50"`` or ``"< uni_cm"``."""
        if self.op == "in":
            return f"in [{self.bound[0]:g}, {self.bound[1]:g}]"
        bound = self.bound if isinstance(self.bound, str) else f"{self.bound:g}"
        return f"{self.op} {bound}" + (f" + {self.offset:g}" if self.offset else "")

    def check(self, measured: Mapping[str, float]) -> bool | None:
        """Whether ``measured`` meets the target; ``None`` when a needed value is missing."""
        value = measured.get(self.name)
        bound = measured.get(self.bound) if isinstance(self.bound, str) else self.bound
        if value is None or bound is None:
            return None
        if self.op == "in":
            return bool(bound[0] <= value <= bound[1])
        bound = bound + self.offset
        return bool(value >= bound) if self.op == ">=" else bool(value < bound)


#: The targets of docs/world_design.md, "Geometry targets", in its order (a)-(f).
GEOMETRY_TARGETS: tuple[GeometryTarget, ...] = (
    GeometryTarget("logit_scale", ">=", 50.0, "CLIP: 100 (Radford et al. 2021)"),
    GeometryTarget("modality_gap", ">=", 0.5, "CLIP ViT-B/32, MSCOCO: 0.82 (Liang et al. 2022)"),
    GeometryTarget("text_side_id_prompts", ">=", 1.0, "cones (Liang et al. 2022, Fig. 1)"),
    GeometryTarget("text_side_negative_labels", ">=", 0.95, "cones (Liang et al. 2022, Fig. 1)"),
    GeometryTarget("uni_i", "<", "uni_cm", "paper Table 4, zero-shot: 0.874 < 2.346"),
    GeometryTarget("uni_t", "<", "uni_cm", "paper Table 4, zero-shot: 1.320 < 2.346"),
    GeometryTarget("id_accuracy", "in", (0.60, 0.75), "paper Table 3: zero-shot 66.6%"),
    GeometryTarget(
        "flyp_id_accuracy", ">=", "id_accuracy", "paper Table 3: FLYP 82.58%", offset=0.10
    ),
    GeometryTarget("negative_labels", ">=", 300, "NegLabel mines ~10k WordNet labels"),
)


def geometry_targets(measured: Mapping[str, float], targets=GEOMETRY_TARGETS) -> list[dict]:
    """One row per target: ``{"name", "target", "measured", "met", "source"}``.

    Args:
        measured: Measured values by name (e.g. :func:`geometry_measures` plus
            ``logit_scale``, ``id_accuracy`` and ``flyp_id_accuracy``); a missing one gives
            ``measured`` and ``met`` ``None``.
        targets: The targets (default :data:`GEOMETRY_TARGETS`).

    Returns:
        The rows, in the order of ``targets``.

    Example:
        >>> geometry_targets({"logit_scale": 64.0})[0]["met"]
        True
    """
    return [
        {"name": t.name, "target": t.rule(), "measured": measured.get(t.name),
         "met": t.check(measured), "source": t.source}
        for t in targets
    ]  # fmt: skip
