"""The folder that ``python -m cmakit embed`` writes: ``embeddings.json`` (the manifest of the
cache files, the ID set, the prompts, the negatives and the unreadable images) and how it is read
back as one :class:`~cmakit.engine.bundle.EmbeddingBundle`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmakit.common.io import read_json
from cmakit.engine.bundle import EmbeddingBundle, check_widths

#: The manifest's file name inside an embedding folder.
MANIFEST = "embeddings.json"


def _load(folder: Path, rel: str) -> dict[str, np.ndarray]:
    """The arrays of one cache file that ``embed`` wrote, with an error that names it."""
    import zipfile

    try:
        with np.load(folder / rel, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as err:
        if isinstance(err, FileNotFoundError | PermissionError):
            raise
        raise ValueError(
            f"{folder / rel} cannot be read ({type(err).__name__}: {err}): "
            "truncated or corrupt; run `python -m cmakit embed` again."
        ) from err


def load_bundle(folder: str | Path, *, need_negatives: bool) -> tuple[EmbeddingBundle, dict]:
    """The :class:`EmbeddingBundle` that ``embed`` wrote to ``folder``, and its manifest."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(
            f"{folder / MANIFEST} not found; run `python -m cmakit embed` first."
        )
    man = read_json(folder / MANIFEST)
    if need_negatives and not man.get("neg_text"):
        raise ValueError("score='neglabel' needs negative labels; mine them with `python -m "
                         "cmakit mine --out FILE`, then embed with --negatives FILE.")  # fmt: skip
    id_data, id_text = _load(folder, man["id"]), _load(folder, man["id_text"])["embeddings"]
    neg = (_load(folder, man["neg_text"])["embeddings"] if man.get("neg_text")
           else np.zeros((0, id_text.shape[1]), dtype=np.float32))  # fmt: skip
    ood = {name: _load(folder, rel)["embeddings"] for name, rel in man["ood"].items()}
    files = {"id": man["id"], "id_text": man["id_text"], "neg": man.get("neg_text") or "",
             **{name: rel for name, rel in man["ood"].items()}}  # fmt: skip
    check_widths(
        {"id": id_data["embeddings"], "id_text": id_text, "neg": neg, **ood},
        names={key: f"{key} ({folder / rel})" for key, rel in files.items()},
    )
    bundle = EmbeddingBundle(
        id_images=id_data["embeddings"], id_labels=id_data["labels"], id_texts=id_text,
        neg_texts=neg, logit_scale=float(man.get("logit_scale", 100.0)),
        ood=ood, id_subsets={name: np.asarray(rows, dtype=np.int64)
                             for name, rows in man.get("id_subsets", {}).items()},
    )  # fmt: skip
    return bundle, man
