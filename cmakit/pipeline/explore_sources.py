"""What the explorer draws, read from any folder of embeddings or taken from arrays.

An :class:`ExploreSource` holds one or more models' :class:`~cmakit.engine.bundle.EmbeddingBundle`
(all of the same rows), a label per row of every layer, the class and negative-label names,
thumbnails (pixels, or a reader of image files) and the score settings. It comes from:

* a pipeline run folder (``config.json``): :mod:`cmakit.pipeline.explore_run`;
* a folder written by ``python -m cmakit embed`` (``embeddings.json`` and its cache files);
* a folder of plain arrays: ``id_images.npy`` ``[N, D]``, ``id_texts.npy`` ``[C, D]``, and
  optionally ``id_labels.npy`` ``[N]``, ``class_names.txt``, ``neg_texts.npy`` with
  ``neg_names.txt``, ``ood/<set>.npy``, and image paths for thumbnails (``id_images.txt``,
  ``ood/<set>.txt``, one per line);
* arrays given directly (:func:`from_arrays`).

Embeddings are L2-normalised on load; a bad input (widths that differ, counts of names that do not
match, NaNs) raises one ``ValueError`` line naming the file and what to do.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from cmakit.engine.bundle import EmbeddingBundle, check_widths
from cmakit.engine.evaluate import ScoreSettings
from cmakit.pipeline.embed_folder import load_bundle

log = logging.getLogger(__name__)

Thumbnails = np.ndarray | Callable[[np.ndarray], np.ndarray]
#: What each kind of folder is recognised by.
MARKERS = {"run": "config.json", "embed": "embeddings.json", "arrays": "id_images.npy"}


@dataclasses.dataclass(frozen=True)
class ExploreSource:
    """Everything the explorer page is built from.

    Attributes:
        bundles: Model display name -> embeddings; every model has the same rows per layer.
        labels: Layer key (``id_images``, ``ood/<set>``, ``id_texts``, ``neg_texts``) -> one label
            per row (class, caption, file name or word).
        class_names: ``[C]`` names of the ID prompts.
        neg_names: ``[M]`` words of the negative labels.
        thumbnails: Image layer key -> ``[N, H, W, 3]`` uint8 pixels, or a function of row indices
            that returns their pixels; a missing key: no thumbnails.
        settings: How the scores are computed.
        title: The page's heading.
    """

    bundles: dict[str, EmbeddingBundle]
    labels: dict[str, list[str]]
    class_names: list[str]
    neg_names: list[str]
    thumbnails: dict[str, Thumbnails]
    settings: ScoreSettings
    title: str


def folder_kind(path: str | os.PathLike) -> str:
    """``"run"``, ``"embed"`` or ``"arrays"``: which kind of folder ``path`` is.

    Raises:
        FileNotFoundError: ``path`` is not a folder, or holds none of the three markers.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder; give a pipeline run folder, a folder "
                                "written by `python -m cmakit embed`, or a folder of .npy arrays.")  # fmt: skip
    for kind, marker in MARKERS.items():
        if (path / marker).is_file():
            return kind
    raise FileNotFoundError(f"{path} holds none of {list(MARKERS.values())}: give a pipeline run "
                            "folder, an `embed` folder, or id_images.npy + id_texts.npy.")  # fmt: skip


def unit_rows(x: np.ndarray, where: str) -> np.ndarray:
    """``x [n, D]`` as float32 rows of unit length.

    Raises:
        ValueError: not 2-D, a NaN or infinite value, or a row of zero length (``where`` names
            the file or argument).
    """
    x = np.asarray(x)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{where} holds a {x.dtype} array of shape {x.shape}; expected [n, D] "
                         "numbers (one embedding per row).")  # fmt: skip
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(f"{where} has NaN or infinite values in {int(bad.sum())} rows (first: row "
                         f"{int(np.argmax(bad))}); embed those inputs again or drop them.")  # fmt: skip
    norm = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    if len(x) and (norm == 0).any():
        raise ValueError(f"{where} has {int((norm == 0).sum())} all-zero rows (first: row "
                         f"{int(np.argmax(norm[:, 0] == 0))}); they have no direction to draw.")  # fmt: skip
    return (x / np.where(norm == 0, 1.0, norm)).astype(np.float32)


def _names(names: Sequence[str] | None, n: int, where: str, rows_where: str, default: str):
    if names is None:
        return [default.format(i) for i in range(n)]
    names = [str(s) for s in names]
    if len(names) != n:
        raise ValueError(f"{where} has {len(names)} entries but {rows_where} has {n} rows: give "
                         "one per row, in row order.")  # fmt: skip
    return names


def from_arrays(id_images: np.ndarray, id_texts: np.ndarray, *, id_labels: np.ndarray | None = None,
                class_names: Sequence[str] | None = None, neg_texts: np.ndarray | None = None,
                neg_names: Sequence[str] | None = None, ood: Mapping[str, np.ndarray] | None = None,
                image_paths: Mapping[str, Sequence[str]] | None = None, logit_scale: float = 100.0,
                model: str = "embeddings", where: Mapping[str, str] | None = None,
                title: str = "cmakit embedding explorer") -> ExploreSource:  # fmt: skip
    """The :class:`ExploreSource` of one model's arrays, checked and normalised.

    Args:
        id_images: ``[N, D]`` ID image embeddings.
        id_texts: ``[C, D]`` one ID prompt per class.
        id_labels: ``[N]`` class of each ID image (default: its nearest prompt).
        class_names: ``[C]`` names of the classes (default: ``class 0``, ...).
        neg_texts, neg_names: ``[M, D]`` negative labels and their ``[M]`` words.
        ood: OoD set name -> ``[n, D]`` image embeddings.
        image_paths: Image layer key (``id_images``, ``ood/<set>``) -> one image file per row,
            read for thumbnails.
        logit_scale: The model's ``exp(logit_scale)``, for the classifier scores.
        model: The model's display name.
        where: Array key -> how messages name it (a file); default: the argument's name.

    Raises:
        ValueError: one line naming the input: not ``[n, D]``, NaNs, zero rows, widths that
            differ, names or labels whose count does not match, labels outside ``[0, C)``.
    """
    name = {"id_images": "id_images", "id_texts": "id_texts", "id_labels": "id_labels",
            "class_names": "class_names", "neg_texts": "neg_texts", "neg_names": "neg_names",
            **{f"ood/{k}": f"ood[{k!r}]" for k in ood or {}}, **(where or {})}  # fmt: skip
    layers = {"id_images": unit_rows(id_images, name["id_images"]),
              "id_texts": unit_rows(id_texts, name["id_texts"])}  # fmt: skip
    if neg_texts is not None:
        layers["neg_texts"] = unit_rows(neg_texts, name["neg_texts"])
    for k, x in (ood or {}).items():
        layers[f"ood/{k}"] = unit_rows(x, name.get(f"ood/{k}", f"ood[{k!r}]"))
    check_widths(layers, names=name)
    width, n_cls = layers["id_texts"].shape[1], len(layers["id_texts"])
    neg = layers.get("neg_texts", np.zeros((0, width), np.float32))
    if id_labels is None:
        id_labels = (layers["id_images"] @ layers["id_texts"].T).argmax(1)
    id_labels = np.asarray(id_labels)
    if id_labels.shape != (len(layers["id_images"]),) or not np.issubdtype(
        id_labels.dtype, np.integer
    ):
        raise ValueError(f"{name['id_labels']} holds a {id_labels.dtype} array of shape "
                         f"{id_labels.shape}; expected [{len(layers['id_images'])}] integer classes.")  # fmt: skip
    if len(id_labels) and (id_labels.min() < 0 or id_labels.max() >= n_cls):
        raise ValueError(f"{name['id_labels']} has classes outside [0, {n_cls}) (the rows of "
                         f"{name['id_texts']}): {int(id_labels.min())}..{int(id_labels.max())}.")  # fmt: skip
    classes = _names(class_names, n_cls, name["class_names"], name["id_texts"], "class {}")
    negs = _names(neg_names, len(neg), name["neg_names"], name["neg_texts"], "negative {}")
    bundle = EmbeddingBundle(id_images=layers["id_images"], id_labels=id_labels.astype(np.int64),
                             id_texts=layers["id_texts"], neg_texts=neg, logit_scale=float(logit_scale),
                             ood={k.removeprefix("ood/"): v for k, v in layers.items()
                                  if k.startswith("ood/")})  # fmt: skip
    labels = {"id_images": [classes[k] for k in id_labels], "id_texts": list(classes),
              "neg_texts": list(negs),
              **{f"ood/{k}": [f"{k} #{i}" for i in range(len(v))] for k, v in bundle.ood.items()}}  # fmt: skip
    thumbnails: dict[str, Thumbnails] = {}
    for key, paths in (image_paths or {}).items():
        if key not in labels or key in ("id_texts", "neg_texts"):
            raise ValueError(f"image_paths[{key!r}]: no such image layer; use id_images or "
                             f"one of {[k for k in labels if k.startswith('ood/')]}.")  # fmt: skip
        where_paths = name.get(f"{key}.paths", f"image_paths[{key!r}]")
        paths = _names(paths, len(labels[key]), where_paths, name.get(key, key), "")
        thumbnails[key] = file_thumbnails(paths)
        if key != "id_images":
            labels[key] = [f"{Path(p).parent.name}/{Path(p).name}" for p in paths]
    return ExploreSource(bundles={model: bundle}, labels=labels, class_names=classes,
                         neg_names=negs, thumbnails=thumbnails, settings=ScoreSettings(),
                         title=title)  # fmt: skip


def _read_lines(path: Path) -> list[str] | None:
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else None


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        if isinstance(err, FileNotFoundError | PermissionError):
            raise
        raise ValueError(f"{path} is not a readable .npy array ({type(err).__name__}: {err}); "
                         "write it with numpy.save.") from err  # fmt: skip


def _optional_files(folder: Path, ood_sets: Sequence[str]) -> tuple[dict, dict]:
    """Image paths (``id_images.txt``, ``ood/<set>.txt``) and their names for messages."""
    paths, where = {}, {}
    for key in ["id_images", *[f"ood/{s}" for s in ood_sets]]:
        lines = _read_lines(folder / f"{key}.txt")
        if lines is not None:
            paths[key], where[f"{key}.paths"] = lines, str(folder / f"{key}.txt")
    return paths, where


def arrays_source(folder: str | os.PathLike) -> ExploreSource:
    """The :class:`ExploreSource` of a folder of plain arrays (see the module's docstring)."""
    folder = Path(folder)
    for must in ("id_images.npy", "id_texts.npy"):
        if not (folder / must).is_file():
            raise FileNotFoundError(f"{folder / must} not found: a folder of arrays needs "
                                    "id_images.npy [N, D] and id_texts.npy [C, D].")  # fmt: skip
    ood = {p.stem: _read_npy(p) for p in sorted((folder / "ood").glob("*.npy"))}
    neg_file = folder / "neg_texts.npy"
    if (folder / "neg_names.txt").is_file() and not neg_file.is_file():
        raise FileNotFoundError(f"{folder / 'neg_names.txt'} is given without {neg_file}; "
                                "add the negative labels' embeddings or remove the names.")  # fmt: skip
    paths, where = _optional_files(folder, list(ood))
    where.update({k: str(folder / f"{k}.npy") for k in ("id_images", "id_texts", "id_labels",
                                                         "neg_texts")})  # fmt: skip
    where.update({"class_names": str(folder / "class_names.txt"),
                  "neg_names": str(folder / "neg_names.txt"),
                  **{f"ood/{k}": str(folder / "ood" / f"{k}.npy") for k in ood}})  # fmt: skip
    labels_file = folder / "id_labels.npy"
    return from_arrays(
        _read_npy(folder / "id_images.npy"), _read_npy(folder / "id_texts.npy"),
        id_labels=_read_npy(labels_file) if labels_file.is_file() else None,
        class_names=_read_lines(folder / "class_names.txt"),
        neg_texts=_read_npy(neg_file) if neg_file.is_file() else None,
        neg_names=_read_lines(folder / "neg_names.txt"), ood=ood, image_paths=paths,
        model=folder.resolve().name, where=where, title=f"cmakit embedding explorer: {folder}",
    )  # fmt: skip


def embed_source(folder: str | os.PathLike) -> ExploreSource:
    """The :class:`ExploreSource` of a folder written by ``python -m cmakit embed``.

    Class names come from ``class_names.txt`` in the folder, else ImageNet's when there are
    1,000 prompts; negative-label words from the manifest's negatives file when it still exists;
    image paths, as for a folder of arrays, from ``id_images.txt`` and ``ood/<set>.txt``.
    """
    from cmakit.engine.negatives import read_negative_labels

    folder = Path(folder)
    bundle, man = load_bundle(folder, need_negatives=False)
    classes = _read_lines(folder / "class_names.txt")
    if classes is None and len(bundle.id_texts) == 1000:
        from cmakit.data.paper import imagenet_classnames

        classes = imagenet_classnames()
    negs = None
    if man.get("negatives") and Path(man["negatives"]).is_file():
        negs = read_negative_labels(man["negatives"])
        negs = negs if len(negs) == len(bundle.neg_texts) else None
    paths, where = _optional_files(folder, list(bundle.ood))
    where["class_names"] = str(folder / "class_names.txt")
    return from_arrays(
        bundle.id_images, bundle.id_texts, id_labels=bundle.id_labels, class_names=classes,
        neg_texts=bundle.neg_texts, neg_names=negs, ood=bundle.ood, image_paths=paths,
        logit_scale=bundle.logit_scale, model=folder.resolve().name, where=where,
        title=f"cmakit embedding explorer: {folder}",
    )  # fmt: skip


def read_thumbnails(paths: Sequence[str], size: int = 48) -> np.ndarray:
    """``[n, size, size, 3]`` uint8 thumbnails of image files: the centre square, resized.

    An unreadable file gives a mid-grey square (the explorer still shows its point).
    """
    from PIL import Image, ImageOps

    out = np.full((len(paths), size, size, 3), 128, dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                out[i] = np.asarray(ImageOps.fit(img.convert("RGB"), (size, size)))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            log.warning("explorer: no thumbnail for %s (%s)", path, err)
    return out


def file_thumbnails(paths: Sequence[str]) -> Callable[[np.ndarray], np.ndarray]:
    """A reader of the thumbnails of ``paths[rows]`` (only the sampled rows are opened)."""

    def read(rows: np.ndarray) -> np.ndarray:
        return read_thumbnails([paths[i] for i in rows])

    return read
