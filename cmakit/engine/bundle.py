"""The embeddings of one model on one benchmark, as one typed object.

An :class:`EmbeddingBundle` is what every evaluation reads: ID test images with labels, the ID
prompts, the negative labels (NegLabel's and CSP's), the model's logit scale and each OoD
set's images, all L2-normalised float32 arrays, and optional named ID subsets (OpenOOD
v1.5's ID list on the paper path) as row indices into the ID test images. It is saved as
one ``.npz`` file; the file's key layout is known
to :meth:`EmbeddingBundle.save` and :meth:`EmbeddingBundle.load` alone.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path

import numpy as np

from cmakit.common.io import atomic_path

_OOD_PREFIX = "ood/"
_SUBSET_PREFIX = "id_subset/"


@dataclasses.dataclass(frozen=True)
class EmbeddingBundle:
    """Embeddings of one model (float32, L2-normalised rows).

    Attributes:
        id_images: ``[N, D]`` ID test images.
        id_labels: ``[N]`` their class indices into ``id_texts``.
        id_texts: ``[K, D]`` one test prompt per ID class.
        neg_texts: ``[M, D]`` negative labels (``M`` may be 0 when none were mined).
        logit_scale: The model's ``exp(logit_scale)`` (CLIP's inverse temperature).
        ood: OoD set name -> ``[n, D]`` images, in the benchmark's order.
        bad_images: Unreadable images skipped while embedding (all sets together).
        csp_texts: ``[M', D]`` CSP's negative labels (conjugated pool); ``[0, D]`` when none
            were mined (the default).
        id_subsets: Name -> ``[n]`` int64 rows of ``id_images`` forming another ID test set
            (e.g. ``"openood_imagenet"``: OpenOOD v1.5's ``test_imagenet.txt``); OoD groups
            may be measured against one (:class:`cmakit.engine.evaluate.ScoreSettings`).
    """

    id_images: np.ndarray
    id_labels: np.ndarray
    id_texts: np.ndarray
    neg_texts: np.ndarray
    logit_scale: float
    ood: dict[str, np.ndarray]
    bad_images: int = 0
    csp_texts: np.ndarray | None = None
    id_subsets: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.csp_texts is None:  # no CSP labels: an empty [0, D] layer
            empty = np.zeros((0, self.id_texts.shape[1]), dtype=self.id_texts.dtype)
            object.__setattr__(self, "csp_texts", empty)
        check_widths(self.layers())

    def layers(self) -> dict[str, np.ndarray]:
        """Every embedding layer by name: ``id_images``, ``id_texts``, ``neg_texts``,
        ``csp_texts`` and ``ood/<set>``."""
        return {"id_images": self.id_images, "id_texts": self.id_texts,
                "neg_texts": self.neg_texts, "csp_texts": self.csp_texts,
                **{_OOD_PREFIX + k: v for k, v in self.ood.items()}}  # fmt: skip

    def id_rows(self, subset: str | None = None) -> np.ndarray | slice:
        """Rows of ``id_images`` of the ID subset ``subset`` (``None``: every row).

        Raises:
            KeyError: The bundle has no such subset (the message lists those it has).
        """
        if subset is None:
            return slice(None)
        if subset not in self.id_subsets:
            raise KeyError(
                f"The embeddings hold no ID subset {subset!r} (they hold "
                f"{sorted(self.id_subsets)}); embed again with this cmakit in a fresh run folder."
            )
        return self.id_subsets[subset]

    def ood_pooled(self) -> np.ndarray:
        """All OoD images in one ``[sum n, D]`` array (set order kept)."""
        return np.concatenate(list(self.ood.values())) if self.ood else self.id_images[:0]

    def sizes(self) -> dict[str, int]:
        """Rows per layer: ``id_images``, ``id_texts``, ``neg_texts``, ``csp_texts``, each OoD set."""
        return {"id_images": len(self.id_images), "id_texts": len(self.id_texts),
                "neg_texts": len(self.neg_texts), "csp_texts": len(self.csp_texts),
                **{k: len(v) for k, v in self.ood.items()}}  # fmt: skip

    def replace(self, **changes) -> EmbeddingBundle:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the bundle atomically as ``.npz``."""
        arrays = {"id_images": self.id_images, "id_labels": self.id_labels,
                  "id_texts": self.id_texts, "neg_texts": self.neg_texts,
                  "csp_texts": self.csp_texts,
                  "logit_scale": np.asarray(self.logit_scale, dtype=np.float32),
                  "bad_images": np.asarray(self.bad_images)}  # fmt: skip
        arrays.update({_OOD_PREFIX + k: v for k, v in self.ood.items()})
        arrays.update({_SUBSET_PREFIX + k: v for k, v in self.id_subsets.items()})
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> EmbeddingBundle:
        """Read a bundle written by :meth:`save`.

        Raises:
            FileNotFoundError: no such file.
            ValueError: the file is not a readable bundle (truncated, corrupt, another format);
                the message names it.
        """
        try:
            return cls._load(path)
        except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as err:
            if isinstance(err, FileNotFoundError | PermissionError):
                raise
            raise ValueError(
                f"{path} is not a readable embeddings file ({type(err).__name__}: {err}): "
                "truncated or corrupt. Delete it and run again; it is recomputed."
            ) from err

    @classmethod
    def _load(cls, path: str | os.PathLike) -> EmbeddingBundle:
        with np.load(path, allow_pickle=False) as z:
            ood = {k[len(_OOD_PREFIX) :]: z[k] for k in z.files if k.startswith(_OOD_PREFIX)}
            subsets = {k[len(_SUBSET_PREFIX) :]: z[k] for k in z.files
                       if k.startswith(_SUBSET_PREFIX)}  # fmt: skip
            return cls(id_images=z["id_images"], id_labels=z["id_labels"],
                       id_texts=z["id_texts"], neg_texts=z["neg_texts"],
                       logit_scale=float(z["logit_scale"]), ood=ood,
                       bad_images=int(z["bad_images"]) if "bad_images" in z.files else 0,
                       csp_texts=z["csp_texts"] if "csp_texts" in z.files else None,
                       id_subsets=subsets)  # fmt: skip


def check_widths(layers: dict[str, np.ndarray], *, names: dict[str, str] | None = None) -> int:
    """Check that every non-empty layer is a 2-D ``[n, D]`` array of one width ``D``; returns ``D``.

    Args:
        layers: Layer name -> array; the first layer's width is the reference.
        names: Layer name -> how the message calls it (a file, a set); default: the name.

    Raises:
        ValueError: one line naming the first layer of another width (or not 2-D), its width
            and the reference's, and what to do.
    """
    names = names or {}
    (first, ref), *_ = layers.items()
    width = ref.shape[1] if ref.ndim == 2 else -1
    for name, x in layers.items():
        if x.size and (x.ndim != 2 or x.shape[1] != width):  # an empty layer has no rows to match
            shape = "x".join(map(str, x.shape))
            raise ValueError(
                f"{names.get(name, name)} holds {shape} embeddings but "
                f"{names.get(first, first)} holds {width}-wide rows: every array must come from "
                "one model (embed them again with the same model)."
            )
    return width


def surviving_rows(subset, paths, bad_paths) -> np.ndarray:
    """Rows of the embedded images that ``subset`` (indices into ``paths``) became.

    Unreadable images are left out while embedding, so the image at position ``i`` of the data
    set is row ``i - (bad images before i)``; members of ``subset`` that were unreadable drop out.

    Args:
        subset: ``[n]`` indices into ``paths``.
        paths: ``[N]`` the data set's image paths, in order.
        bad_paths: Paths skipped as unreadable.

    Returns:
        ``[n']`` int64 rows into the ``[N - len(bad_paths), D]`` embeddings (``n' <= n``).
    """
    bad = np.isin(np.asarray(paths, dtype=str), np.asarray(list(bad_paths), dtype=str))
    rows = np.cumsum(~bad) - 1
    subset = np.asarray(subset, dtype=np.int64)
    return rows[subset[~bad[subset]]].astype(np.int64)
