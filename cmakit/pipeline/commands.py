"""The commands of the command line: ``train``, ``mine``, ``embed`` and ``evaluate`` of the paper
path (ImageNet-1k vs MOS / OpenOOD), ``explore`` (the explorer page of any embeddings) and
``compare`` of any run, each with the dataclass of its settings (the command line's flags).

``train`` fine-tunes on the ImageNet train split with class prompts (also under torchrun).

``embed`` encodes the ID images, each OoD set, the ID prompts and the negative labels through
:class:`cmakit.engine.embed.EmbeddingCache` and writes ``embeddings.json``, a manifest of the cache
files, of the unreadable images per set and, when OpenOOD is given, of the rows of the ID images
that OpenOOD v1.5's own ID list names. ``evaluate`` scores those arrays with MCM or NegLabel and
writes one metrics JSON (fractions in [0, 1], convention and estimators named, per-set metrics
and the means of OpenOOD's near / far groups, measured against OpenOOD's ID list as in the
paper's Table 2, and of MOS, measured against the full ImageNet val as in Table 1).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cmakit.common.constants import MOS_SET_NAMES, PAPER_OOD_GROUPS, TEST_PROMPT, TRAIN_PROMPT
from cmakit.common.io import write_json
from cmakit.common.strict_config import to_dict
from cmakit.data.paper import (
    OPENOOD_ID_SUBSET,
    ImageFiles,
    PromptPairs,
    imagefolder_classnames,
    imagenet_classnames,
    imagenet_split,
    mos_dataset,
    openood_dataset,
    openood_id_subset,
    resolve_root,
)
from cmakit.engine.bundle import surviving_rows
from cmakit.engine.negatives import NegativeLabel
from cmakit.engine.trainer import TrainConfig
from cmakit.pipeline.embed_folder import MANIFEST, load_bundle

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainRun:
    """What to fine-tune on which data (the hyper-parameters are :class:`TrainConfig`).

    Attributes:
        model: open_clip architecture.
        pretrained: Initial weights: open_clip tag or file (OpenAI format detected).
        imagenet: ImageNet root (default $CMAKIT_IMAGENET).
        out: Run folder.
        prompt: Training prompt template.
        resume: Continue from the newest checkpoint in ``out``.
        classnames: Class-name file for an ID set that is not ImageNet-1k or a subset of it
            named by WordNet ids: one name per line in sorted-folder order, or folder<TAB>name.
    """

    model: str = "ViT-B-16"
    pretrained: str | None = "openai"
    imagenet: str | None = None
    out: str = "runs/train"
    prompt: str = TRAIN_PROMPT
    resume: bool = False
    classnames: str | None = None


@dataclasses.dataclass(frozen=True)
class MineRun:
    """Which pretrained text encoder mines the negative labels (NegLabel's protocol).

    Attributes:
        model: open_clip architecture.
        pretrained: Weights that rank the candidates: open_clip tag or file (the paper mines
            with the pretrained model, before any fine-tuning).
        out: Negative-label TSV to write (word, pos, affinity), read by ``embed --negatives``.
        id_prompt: ID prompt template of the ImageNet classes ("The nice {}").
        pool: WordNet candidates: "neglabel" (NegLabel's lexicographer files, as the paper
            profile) or "all" (every noun and adjective lemma).
        keep: Share of the pool's nouns and of its adjectives kept (NegLabel: 0.15).
        batch_size, device: Encoding settings.
    """

    model: str = "ViT-B-16"
    pretrained: str | None = "openai"
    out: str = "neg_labels.tsv"
    id_prompt: str = TEST_PROMPT
    pool: Literal["neglabel", "all"] = "neglabel"
    keep: float = 0.15
    batch_size: int = 1024
    device: str = "auto"


@dataclasses.dataclass(frozen=True)
class EmbedRun:
    """Which model, data sets and prompts to encode (see :func:`run_embed`).

    Attributes:
        model, checkpoint: Passed to :func:`cmakit.models.factory.load_clip`.
        pretrained: open_clip tag or file loaded before ``checkpoint``; "auto" = "openai"
            without a checkpoint and no pretrained weights with one (the checkpoint holds them).
        out: Embedding folder (cache files + ``embeddings.json``).
        imagenet, mos, openood: Data roots (defaults from the environment variables).
        id_set: ID images, "imagenet-val".
        ood_sets: Comma-separated OoD sets, e.g. "mos-iNaturalist,openood-ninco".
        id_prompt: ID prompt template for scoring ("The nice {}").
        negatives: Negative-label TSV (from ``mine``, or a pipeline run's
            ``negatives/<fingerprint>.tsv``), mined with this model when the file does not exist;
            or a fixed list of prompts used verbatim (the authors' ``neg_label_10000.npy``, a
            ``.txt`` with one prompt per line).
        batch_size, num_workers, device: Encoding settings.
        classnames: Class-name file for an ID set that is not ImageNet-1k or a subset of it
            named by WordNet ids: one name per line in sorted-folder order, or folder<TAB>name.
    """

    model: str = "ViT-B-16"
    pretrained: str | None = "auto"
    checkpoint: str | None = None
    out: str = "runs/embed"
    imagenet: str | None = None
    mos: str | None = None
    openood: str | None = None
    id_set: str = "imagenet-val"
    ood_sets: str = "mos-iNaturalist,mos-SUN,mos-Places,mos-Textures"
    id_prompt: str = TEST_PROMPT
    negatives: str | None = None
    batch_size: int = 256
    num_workers: int = 8
    device: str = "auto"
    classnames: str | None = None


@dataclasses.dataclass(frozen=True)
class EvaluateRun:
    """How to score cached embeddings.

    Attributes:
        embeddings: Folder written by ``embed``.
        score: "mcm" or "neglabel".
        groups: NegLabel groups (1 = the CMA code, 100 = NegLabel's grouping).
        convention: FPR@95 convention, "id_positive" (paper) or "ood_positive" (OpenOOD v1.5).
        estimator: AUPR estimator, "trapezoid" or "ap".
        out: Metrics JSON path.
    """

    embeddings: str = "runs/embed"
    score: Literal["mcm", "neglabel"] = "neglabel"
    groups: int = 1
    convention: Literal["id_positive", "ood_positive"] = "id_positive"
    estimator: Literal["trapezoid", "ap"] = "trapezoid"
    out: str = "metrics.json"


@dataclasses.dataclass(frozen=True)
class ExploreRun:
    """Which embeddings the explorer page draws (see :func:`run_explore`).

    Attributes:
        path: Folder(s) of embeddings: a pipeline run folder, a folder written by ``embed``, or
            a folder of .npy arrays (id_images.npy, id_texts.npy, ...); several embed or array
            folders of the same data are drawn as models, in the order given, with their paths.
        out: The page to write (HTML; opens offline).
        max_points: Most points drawn per group (a fixed random sample).
        alphas: Gap-shift fractions of the slider.
        scores: Scores to colour by (registered names); none: every score the embeddings allow.
        seed: Seed of the sample; for a run folder also the seed whose models are drawn.
    """

    path: tuple[str, ...] = ()
    out: str = "explorer.html"
    max_points: int = 5000
    alphas: tuple[float, ...] = (0.0, 0.5, 1.0)
    scores: tuple[str, ...] = ()
    seed: int | None = None


@dataclasses.dataclass(frozen=True)
class CompareRun:
    """Which run to compare with which reference (see :mod:`cmakit.pipeline.compare`).

    Attributes:
        run: Run folder (or its summary.json) of the reproduction.
        reference: Reference document, run folder or summary.json; default: the kit's
            docs/reference/<profile>.json, or the paper's tables for a paper run.
        k: Tolerance = max(k x the reference's std over seeds, a floor); 3 by default.
    """

    run: str
    reference: str | None = None
    k: float = 3.0

    def __post_init__(self) -> None:
        if not (self.k > 0 and np.isfinite(self.k)):
            raise ValueError(f"k={self.k!r}: the multiple of the seeds' std must be > 0.")


def run_compare(run: CompareRun) -> Any:
    """``compare``: the run's headline numbers beside the reference's.

    Returns:
        The :class:`cmakit.pipeline.compare.Comparison` (``.text()`` to print, ``.exit_code``).

    Raises:
        cmakit.pipeline.compare.ProfileMismatch: the reference is of another profile.
    """
    from cmakit.pipeline.compare import compare_runs

    return compare_runs(run.run, run.reference, k=run.k)


def run_train(run: TrainRun, cfg: TrainConfig) -> dict[str, Any]:
    """``train``: ImageNet train split with class prompts -> :func:`cmakit.engine.trainer.train`.

    Returns:
        The run's summary (also written to ``<out>/train_summary.json`` by rank 0).
    """
    from cmakit.engine.distributed import get_rank
    from cmakit.engine.trainer import train
    from cmakit.models.factory import load_clip
    from cmakit.models.transforms import paper_transform

    names = imagefolder_classnames(resolve_root("imagenet", run.imagenet) / "train", run.classnames)
    model, _, tokenizer = load_clip(run.model, pretrained=run.pretrained, device="cpu")
    tf = paper_transform(model.visual.image_size, train=True)
    images = imagenet_split("train", run.imagenet, transform=tf, classnames=names)
    pairs = PromptPairs(images, tokenizer, names, run.prompt)
    res = train(model, pairs, cfg, out_dir=run.out, resume=run.resume, model_name=run.model)
    summary = {"run": to_dict(run), "config": to_dict(cfg), "final_step": res.final_step,
               "model_path": str(res.model_path), "wall_time_s": res.wall_time_s,
               "pairs_per_s": res.pairs_per_s, "bad_images": res.bad_samples,
               "bad_paths": list(res.bad_paths)}  # fmt: skip
    if get_rank() == 0:
        write_json(Path(run.out) / "train_summary.json", summary)
    return summary


def id_classnames(run: EmbedRun) -> list[str]:
    """Class names of the run's ID set (``imagenet-val``: any ImageNet subset, or a names file)."""
    family, _, name = run.id_set.partition("-")
    if family != "imagenet" or name not in ("train", "val"):
        raise KeyError(f"id_set={run.id_set!r}: use imagenet-val or imagenet-train.")
    return imagefolder_classnames(resolve_root("imagenet", run.imagenet) / name, run.classnames)


def open_image_set(
    spec: str, run: EmbedRun, transform: Callable, classnames: list[str] | None = None
) -> ImageFiles:
    """``"imagenet-val"``, ``"mos-SUN"``, ``"openood-ninco"`` ... -> a data set.

    Raises:
        KeyError: unknown family or set name (the valid ones are listed).
    """
    family, _, name = spec.partition("-")
    if family == "imagenet" and name in ("train", "val"):
        return imagenet_split(name, run.imagenet, transform=transform, classnames=classnames)
    if family == "mos":
        return mos_dataset(name, run.mos, transform=transform)
    if family == "openood":
        return openood_dataset(name, run.openood, transform=transform)
    raise KeyError(f"Unknown image set {spec!r}; use imagenet-val, mos-<Name>, openood-<name>.")


def _negatives(
    run: EmbedRun, model: Any, tokenizer: Any, device: str, classnames: list[str]
) -> list[NegativeLabel]:
    from cmakit.engine.distributed import barrier, get_rank
    from cmakit.engine.negatives import load_negative_labels, mine_negatives, save_negative_labels

    path = Path(run.negatives)
    if not path.exists():
        log.warning("%s not found: mining negative labels with this model (the paper's protocol "
                    "mines with the pretrained model)", path)  # fmt: skip
        if get_rank() == 0:
            labels = mine_negatives(model, tokenizer, classnames, device=device)
            save_negative_labels(path, labels)
        barrier()
    return load_negative_labels(path)


def run_mine(run: MineRun) -> list[NegativeLabel]:
    """Mine negative labels from WordNet with a pretrained text encoder and write the TSV.

    Returns:
        The :class:`~cmakit.engine.negatives.NegativeLabel` list, nouns then adjectives.
    """
    from cmakit.data.wordnet import wordnet_candidates
    from cmakit.engine.negatives import mine_negatives, save_negative_labels
    from cmakit.models.factory import load_clip

    model, _, tokenizer = load_clip(run.model, pretrained=run.pretrained, device="cpu")
    labels = mine_negatives(model, tokenizer, imagenet_classnames(),
                            candidates=wordnet_candidates(run.pool), keep=run.keep,
                            id_template=run.id_prompt, batch_size=run.batch_size,
                            device=run.device)  # fmt: skip
    save_negative_labels(run.out, labels)
    log.info("%d negative labels written to %s", len(labels), run.out)
    return labels


def embed_pretrained(pretrained: str | None, checkpoint: str | None) -> str | None:
    """``embed``'s initial weights: "auto" is "openai" without a checkpoint and none with one
    (loading OpenAI's weights that the checkpoint then replaces would only cost a download)."""
    if pretrained == "auto":
        return None if checkpoint else "openai"
    return pretrained


def run_embed(run: EmbedRun) -> dict[str, Any]:
    """Encode everything ``evaluate`` needs; returns (and writes) the manifest."""
    from cmakit.engine.distributed import get_rank, init_distributed
    from cmakit.engine.embed import EmbeddingCache
    from cmakit.engine.negatives import label_prompts, read_negative_labels
    from cmakit.models.factory import load_clip
    from cmakit.models.transforms import paper_transform_key

    names = id_classnames(run)
    info = init_distributed(run.device)
    pretrained = embed_pretrained(run.pretrained, run.checkpoint)
    model, preprocess, tokenizer = load_clip(run.model, pretrained=pretrained,
                                             checkpoint=run.checkpoint, device=info.device)  # fmt: skip
    cache, out = EmbeddingCache(Path(run.out) / "cache"), Path(run.out)
    opts = {"batch_size": run.batch_size, "device": info.device, "num_workers": run.num_workers}
    manifest: dict[str, Any] = {"model": run.model, "pretrained": pretrained,
                                "checkpoint": run.checkpoint, "id_set": run.id_set, "ood": {},
                                "bad_images": {}, "bad_paths": {}}  # fmt: skip
    specs = [run.id_set] + [s.strip() for s in run.ood_sets.split(",") if s.strip()]
    key = paper_transform_key(model.visual.image_size)  # load_clip's test transform
    # every set is opened (names checked, folders listed) before the first image is encoded
    sets = {spec: open_image_set(spec, run, preprocess, names) for spec in specs}
    for spec, data in sets.items():
        enc = cache.images(model, data, preprocessing=key, **opts)
        entry = str(cache.last_path.relative_to(out))
        manifest["bad_images"][spec], manifest["bad_paths"][spec] = (
            len(enc.bad_paths),
            enc.bad_paths[:10],
        )
        if spec == run.id_set:
            manifest["id"] = entry
            if run.openood is not None or any(s.startswith("openood-") for s in specs):
                rows = openood_id_rows(run, data, enc.bad_paths)
                manifest["id_subsets"] = {OPENOOD_ID_SUBSET: rows}
        else:
            manifest["ood"][spec] = entry
    prompts = [run.id_prompt.format(c) for c in names]
    cache.texts(model, tokenizer, prompts, device=info.device)
    manifest["id_text"], manifest["id_prompt"] = (
        str(cache.last_path.relative_to(out)),
        run.id_prompt,
    )
    manifest["neg_text"] = None
    if run.negatives:
        if Path(run.negatives).suffix.lower() in (".npy", ".txt"):  # fixed prompts, verbatim
            neg_prompts = read_negative_labels(run.negatives)
        else:
            neg_prompts = label_prompts(_negatives(run, model, tokenizer, info.device, names))
        cache.texts(model, tokenizer, neg_prompts, device=info.device)
        manifest["neg_text"], manifest["negatives"] = (
            str(cache.last_path.relative_to(out)),
            run.negatives,
        )
    manifest["logit_scale"] = float(model.logit_scale.detach().exp())
    if get_rank() == 0:
        write_json(out / MANIFEST, manifest)
    return manifest


def openood_id_rows(run: EmbedRun, id_test: ImageFiles, bad_paths: list[str]) -> list[int]:
    """Rows of the embedded ID images (``run.id_set``, ImageNet-1k val) that OpenOOD v1.5's ID
    list names: the ID test set of OpenOOD's near and far groups (the paper's Table 2).

    Args:
        run: The embedding settings (``id_set`` must be ``imagenet-val``; ``openood`` its root).
        id_test: The ID images as embedded (``open_image_set(run.id_set, ...)``).
        bad_paths: ID images left out as unreadable (their rows do not exist).

    Raises:
        ValueError: the ID set is not ImageNet-1k val, or OpenOOD's list names images it lacks.
    """
    if run.id_set != "imagenet-val":
        raise ValueError(f"OpenOOD's ID list names ImageNet-1k val images, but id_set is "
                         f"{run.id_set!r}: embed OpenOOD sets with --id-set imagenet-val.")  # fmt: skip
    rows = openood_id_subset(id_test, run.openood)
    paths = [path for path, _ in id_test.samples]
    return surviving_rows(rows, paths, bad_paths).tolist()


def cli_groups(ood_sets: Iterable[str]) -> dict[str, list[str]]:
    """The paper profile's groups (near, far, mos) among the command line's set names.

    ``openood-ssb_hard`` and ``openood-ninco`` are near, OpenOOD's iNaturalist, Textures and
    OpenImage-O far, every ``mos-*`` set MOS; a group is kept when any of its sets is given.
    """
    layout = {"near": [f"openood-{n}" for n in PAPER_OOD_GROUPS["near"]],
              "far": [f"openood-{n}" for n in PAPER_OOD_GROUPS["far"]],
              "mos": [f"mos-{MOS_SET_NAMES[n]}" for n in PAPER_OOD_GROUPS["mos"]]}  # fmt: skip
    given = set(ood_sets)
    return {g: [s for s in sets if s in given] for g, sets in layout.items() if given & set(sets)}


def run_evaluate(run: EvaluateRun) -> dict[str, Any]:
    """Score cached embeddings with the one evaluator and write the metrics JSON; returns it.

    Reports each set and the mean of each group (OpenOOD's near and far, the MOS mean), never
    one mean over MOS and OpenOOD sets together. OpenOOD's sets are measured against OpenOOD's
    ID list (the rows ``embed`` recorded; the paper's Table 2), every other set against every
    image of ``id_set`` (Table 1); ``id_sets`` in the result says which, per group.

    Raises:
        ValueError: OpenOOD sets in embeddings that record no rows of OpenOOD's ID list.
    """
    from cmakit.engine.evaluate import ScoreSettings, id_accuracy, ood_results
    from cmakit.pipeline.run_data import ID_SET_LABELS, PAPER_ID_SUBSETS

    bundle, man = load_bundle(run.embeddings, need_negatives=run.score == "neglabel")
    groups = cli_groups(bundle.ood)
    subsets = {g: name for g, name in PAPER_ID_SUBSETS.items() if g in groups}
    if subsets and OPENOOD_ID_SUBSET not in bundle.id_subsets:
        raise ValueError(f"{Path(run.embeddings) / MANIFEST} records no rows of OpenOOD's ID "
                         "list, against which OpenOOD's sets are measured: embed again with this "
                         "cmakit into a fresh folder.")  # fmt: skip
    settings = ScoreSettings(neglabel_groups=run.groups, convention=run.convention,
                             aupr_estimator=run.estimator, groups=groups,
                             id_subsets=subsets)  # fmt: skip
    score = "neglabel_grouped" if run.score == "neglabel" and run.groups > 1 else run.score
    metrics = ood_results(bundle, settings, scores=(score,))[score] if bundle.ood else {}
    per_set = {k: v for k, v in metrics.items() if k in bundle.ood}
    group_means = {g: metrics[f"{g}_mean"] for g in groups}
    acc = id_accuracy(bundle.id_images, bundle.id_labels, bundle.id_texts)
    result = {"score": run.score, "groups": run.groups, "convention": run.convention,
              "fpr95_estimator": settings.fpr95_estimator, "aupr_estimator": run.estimator,
              "units": "fraction", "id_set": man["id_set"], "id_accuracy": acc,
              "per_set": per_set, "group_sets": groups, "group_means": group_means,
              "id_sets": {g: ID_SET_LABELS[subsets.get(g)] for g in groups},
              "id_subset_sizes": {k: len(v) for k, v in bundle.id_subsets.items()},
              "bad_images": man["bad_images"], "bad_paths": man["bad_paths"],
              "embeddings": str(run.embeddings)}  # fmt: skip
    write_json(run.out, result)
    log.info("%s: group means %s, ID accuracy %.4f", run.score, group_means, acc)
    return result


def run_explore(run: ExploreRun) -> Path:
    """Write the explorer page of ``run.path`` to ``run.out``; returns its path."""
    from cmakit.pipeline.explore import explore

    return explore(list(run.path), out=run.out, alphas=run.alphas, max_points=run.max_points,
                   scores=list(run.scores) or None, seed=run.seed)  # fmt: skip
