"""The ``embed`` and ``evaluate`` steps of the paper path (ImageNet-1k vs MOS / OpenOOD).

``embed`` encodes the ID images, each OoD set, the ID prompts and the negative labels through
:class:`cmakit.embed.EmbeddingCache` and writes ``embeddings.json``, a manifest of the cache
files and of the unreadable images per set. ``evaluate`` scores those arrays with MCM or
NegLabel and writes one metrics JSON (fractions in [0, 1], convention and estimator named).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from cmakit.data import (
    ImageFiles,
    imagenet_classnames,
    imagenet_split,
    mos_dataset,
    openood_dataset,
)
from cmakit.io import read_json, write_json

log = logging.getLogger(__name__)
MANIFEST = "embeddings.json"


def open_image_set(spec: str, run, transform) -> ImageFiles:
    """``"imagenet-val"``, ``"mos-SUN"``, ``"openood-ninco"`` ... -> a data set.

    Raises:
        KeyError: unknown family or set name (the valid ones are listed).
    """
    family, _, name = spec.partition("-")
    if family == "imagenet" and name in ("train", "val"):
        return imagenet_split(name, run.imagenet, transform=transform)
    if family == "mos":
        return mos_dataset(name, run.mos, transform=transform)
    if family == "openood":
        return openood_dataset(name, run.openood, transform=transform)
    raise KeyError(f"Unknown image set {spec!r}; use imagenet-val, mos-<Name>, openood-<name>.")


def _negatives(run, model, tokenizer, device: str):
    from cmakit.distributed import barrier, get_rank
    from cmakit.negatives import load_negative_labels, mine_negatives, save_negative_labels

    path = Path(run.negatives)
    if not path.exists():
        log.warning("%s not found: mining negative labels with this model (the paper's protocol "
                    "mines with the pretrained model)", path)  # fmt: skip
        if get_rank() == 0:
            labels = mine_negatives(model, tokenizer, imagenet_classnames(), device=device)
            save_negative_labels(path, labels)
        barrier()
    return load_negative_labels(path)


def run_embed(run) -> dict[str, Any]:
    """Encode everything ``evaluate`` needs; returns (and writes) the manifest."""
    from cmakit.distributed import get_rank, init_distributed
    from cmakit.embed import EmbeddingCache
    from cmakit.models import load_clip
    from cmakit.negatives import negative_prompts

    info = init_distributed(run.device)
    model, preprocess, tokenizer = load_clip(run.model, pretrained=run.pretrained,
                                             checkpoint=run.checkpoint, device=info.device)  # fmt: skip
    cache, out = EmbeddingCache(Path(run.out) / "cache"), Path(run.out)
    opts = {"batch_size": run.batch_size, "device": info.device, "num_workers": run.num_workers}
    manifest: dict[str, Any] = {"model": run.model, "pretrained": run.pretrained,
                                "checkpoint": run.checkpoint, "id_set": run.id_set, "ood": {},
                                "bad_images": {}, "bad_paths": {}}  # fmt: skip
    specs = [run.id_set] + [s.strip() for s in run.ood_sets.split(",") if s.strip()]
    for spec in specs:
        enc = cache.images(model, open_image_set(spec, run, preprocess),
                           preprocessing=repr(preprocess), **opts)  # fmt: skip
        entry = str(cache.last_path.relative_to(out))
        manifest["bad_images"][spec], manifest["bad_paths"][spec] = (
            len(enc.bad_paths),
            enc.bad_paths[:10],
        )
        if spec == run.id_set:
            manifest["id"] = entry
        else:
            manifest["ood"][spec] = entry
    prompts = [run.id_prompt.format(c) for c in imagenet_classnames()]
    cache.texts(model, tokenizer, prompts, device=info.device)
    manifest["id_text"], manifest["id_prompt"] = (
        str(cache.last_path.relative_to(out)),
        run.id_prompt,
    )
    manifest["neg_text"] = None
    if run.negatives:
        labels = _negatives(run, model, tokenizer, info.device)
        cache.texts(model, tokenizer, negative_prompts(labels), device=info.device)
        manifest["neg_text"], manifest["negatives"] = (
            str(cache.last_path.relative_to(out)),
            run.negatives,
        )
    if get_rank() == 0:
        write_json(out / MANIFEST, manifest)
    return manifest


def _load(folder: Path, rel: str) -> dict[str, np.ndarray]:
    with np.load(folder / rel, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def run_evaluate(run) -> dict[str, Any]:
    """Score cached embeddings and write the metrics JSON; returns it."""
    from cmakit.metrics import ood_metrics
    from cmakit.scores import mcm_score, neglabel_score

    folder = Path(run.embeddings)
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(
            f"{folder / MANIFEST} not found; run `python -m cmakit embed` first."
        )
    man = read_json(folder / MANIFEST)
    id_data, id_text = _load(folder, man["id"]), _load(folder, man["id_text"])["embeddings"]
    if run.score == "neglabel" and not man.get("neg_text"):
        raise ValueError("score='neglabel' needs negative labels; embed with --negatives FILE.")
    neg = _load(folder, man["neg_text"])["embeddings"] if run.score == "neglabel" else None

    def score(x: np.ndarray) -> np.ndarray:
        if neg is None:
            return mcm_score(x, id_text)
        return neglabel_score(x, id_text, neg, groups=run.groups)

    id_scores = score(id_data["embeddings"])
    acc = float(np.mean((id_data["embeddings"] @ id_text.T).argmax(1) == id_data["labels"]))
    per_set = {}
    for name, rel in man["ood"].items():
        per_set[name] = ood_metrics(id_scores, score(_load(folder, rel)["embeddings"]),
                                    convention=run.convention, estimator=run.estimator)  # fmt: skip
    keys = ("fpr95", "auroc", "aupr_in", "aupr_out")
    mean = {k: float(np.mean([m[k] for m in per_set.values()])) for k in keys} if per_set else {}
    result = {"score": run.score, "groups": run.groups, "convention": run.convention,
              "aupr_estimator": run.estimator, "units": "fraction", "id_set": man["id_set"],
              "id_accuracy": acc, "per_set": per_set, "mean": mean,
              "bad_images": man["bad_images"], "bad_paths": man["bad_paths"],
              "embeddings": str(folder)}  # fmt: skip
    write_json(run.out, result)
    log.info("%s: mean %s, ID accuracy %.4f", run.score, mean, acc)
    return result
