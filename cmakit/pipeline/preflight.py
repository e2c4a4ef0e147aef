"""Checks of a run's inputs before any notebook starts (the runner's ``--dry-run`` and every run).

Every profile: the architecture exists, the run folder can be written, the fine-tuning batch
splits over the processes that will train (:func:`check_batch_split`), and the run logs where
its negative labels come from (:func:`negatives_plan`). The paper profile also needs the OpenAI
ViT-B/16 weights (read, and compared key by key and shape by shape with the architecture), the
ImageNet-1k, MOS and OpenOOD v1.5 folders (every listed image set must have files that exist
and open; large lists are sampled) and WordNet. Each problem names the set and the path tried,
with the expected layout; all are reported at once, so one dry run lists everything to fix."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from cmakit.pipeline.config import RunConfig

log = logging.getLogger(__name__)

#: List entries checked for existence per image set, and images opened per set.
SAMPLE_EXISTS, SAMPLE_OPEN = 500, 3


def check_run_inputs(cfg: RunConfig) -> None:
    """Validate what a run will read and write.

    Raises:
        FileNotFoundError: every problem found (one message listing all of them): an unwritable
            run folder, an unreadable negative-label file; on the paper profile missing,
            unreadable or mismatched weights, missing data roots, folders, lists or listed
            images, empty class folders, missing WordNet.
        ValueError: an unknown model architecture, or a fine-tuning batch that does not split
            over the devices (:func:`check_batch_split`).
    """
    import open_clip

    from cmakit.models.factory import register_model_configs

    register_model_configs()
    if cfg.model not in open_clip.list_models():
        raise ValueError(
            f"model={cfg.model!r} is not an open_clip architecture; cmakit's own: "
            f"{register_model_configs()}; see open_clip.list_models() for the rest."
        )
    log.info("fine-tuning: %s", check_batch_split(cfg))
    problems = run_dir_problems(Path(cfg.run_dir))
    if cfg.embedded:  # the tiny CLIP and the worlds are cached (the paper path caches nothing)
        problems += cache_problems(cfg)
    try:
        for line in negatives_plan(cfg):
            log.info("%s", line)
    except (FileNotFoundError, ValueError) as err:
        problems.append(f"negative_labels: {err}")
    if not cfg.embedded:
        problems += _weights_problems(cfg) + _data_problems(cfg) + _wordnet_problems()
    if problems:
        raise FileNotFoundError(
            f"The {cfg.profile} profile cannot start:\n- " + "\n- ".join(problems)
        )
    if not cfg.embedded:
        log.info("paper inputs found: weights %s, ImageNet, MOS and OpenOOD v1.5", cfg.pretrained)


def run_dir_problems(run_dir: Path) -> list[str]:
    """Try to write a file in ``run_dir`` (or in its nearest existing parent, creating nothing)."""
    return folder_problems(run_dir, "run folder", "choose another --out")


def cache_problems(cfg: RunConfig) -> list[str]:
    """Try to write a file in the cache folder that pretrained models and worlds go to."""
    from cmakit.common.io import CACHE_ENV, cache_root

    folder = cache_root(cfg.cache_dir or None)
    how = "--set cache_dir=DIR" if cfg.cache_dir else f"{CACHE_ENV}=DIR (or --set cache_dir=DIR)"
    return folder_problems(folder, "cache folder", f"point {how} at a writable folder")


def folder_problems(folder: Path, what: str, fix: str) -> list[str]:
    """Try to write a file in ``folder`` (or in its nearest existing parent, creating nothing);
    one line naming the folder and ``fix`` when it cannot be written."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return [f"{what} {folder}: {probe} is a file, not a folder; {fix}."]
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        return [f"{what} {folder} cannot be written ({probe}: {err.strerror or err}); "
                f"{fix}, or fix the folder's permissions."]  # fmt: skip
    return []


def _weights_problems(cfg: RunConfig) -> list[str]:
    import open_clip

    from cmakit.models.factory import check_weights_fit

    if not cfg.pretrained:
        return [
            "pretrained is empty: give the OpenAI ViT-B/16 weights file "
            "(--set pretrained=/path/ViT-B-16.pt) or the open_clip tag 'openai' (downloads)."
        ]
    if os.path.isfile(cfg.pretrained):
        try:
            check_weights_fit(cfg.model, cfg.pretrained)
        except (ValueError, FileNotFoundError) as err:
            return [str(err)]
        return []
    if cfg.pretrained not in open_clip.list_pretrained_tags_by_model(cfg.model):
        return [
            f"pretrained={cfg.pretrained!r} is neither a file nor an open_clip tag of {cfg.model}."
        ]
    return []


def negatives_plan(cfg: RunConfig) -> list[str]:
    """Where the run's two negative-label sets come from, in words (the dry run logs them).

    Raises:
        FileNotFoundError, ValueError: ``cfg.negative_labels`` names a missing or unreadable
            file (it is read here, as the run will read it).
    """
    from cmakit.engine.negatives import read_negative_labels

    share = f"{cfg.neg_fraction:.0%} of each kind kept"
    if cfg.negative_labels:
        prompts = read_negative_labels(cfg.negative_labels)
        neglabel = (f"negative labels: {len(prompts)} prompts ({len(set(prompts))} unique) of "
                    f"{cfg.negative_labels}, used verbatim (nothing is mined)")  # fmt: skip
    elif cfg.embedded:
        neglabel = f"negative labels: mined from the {cfg.world} world's lexicon ({share})"
    else:
        neglabel = f"negative labels: mined from WordNet pool {cfg.neg_pool!r} ({share})"
    source = f"the {cfg.world} world's lexicon" if cfg.embedded else "WordNet pool 'csp'"
    return [neglabel, f"CSP labels: mined from {source}, adjectives conjugated ({share})"]


def check_batch_split(cfg: RunConfig, processes: int | None = None) -> str:
    """Check that the global fine-tuning batch splits over the devices; describe the split.

    Each process holds a share of ``finetune_batch_size`` (shares differ by at most one pair)
    and encodes it in micro-batches of at most ``finetune_micro_batch_size`` pairs (0 = the
    whole share at once); the loss is always that of the whole global batch.

    Args:
        cfg: The run configuration.
        processes: Processes that will fine-tune; default: as the run will choose
            (:func:`cmakit.pipeline.steps.finetune_processes`: every visible GPU on the paper path).

    Returns:
        One line, e.g. ``global batch 512 on 3 process(es): shares [171, 171, 170], 3
        micro-batch(es) of <= 57 pairs each``.

    Raises:
        ValueError: a batch too small for the processes and micro-batches, naming the fix.
    """
    from cmakit.engine.batching import accumulation_steps, check_split, split_sizes
    from cmakit.pipeline.steps import finetune_processes

    batch, micro = cfg.finetune_batch_size, cfg.finetune_micro_batch_size
    world = processes or finetune_processes(cfg)
    k = accumulation_steps(batch, world, micro) if micro else 1
    try:
        check_split(batch, world, k)
    except ValueError as err:
        raise ValueError(
            f"finetune_batch_size={batch} with finetune_micro_batch_size={micro} on {world} "
            f"device(s): {err}"
        ) from None
    shares = split_sizes(batch, world)
    largest = max(split_sizes(shares[0], k))
    return (f"global batch {batch} on {world} process(es): shares {shares if world <= 8 else '...'}, "
            f"{k} micro-batch(es) of <= {largest} pairs each")  # fmt: skip


def _data_problems(cfg: RunConfig) -> list[str]:
    """Every data set the paper profile reads, opened as the run will open it."""
    from cmakit.data import paper as data

    roots = {"imagenet": cfg.imagenet_root or None, "mos": cfg.mos_root or None,
             "openood": cfg.openood_root or None}  # fmt: skip
    loaders = [
        ("imagenet", lambda s=s: data.imagenet_split(s, roots["imagenet"]))
        for s in ("train", "val")
    ]
    loaders += [("mos", lambda n=n: data.mos_dataset(n, roots["mos"])) for n in data.MOS_SETS]
    loaders += [
        ("openood", lambda n=n: data.openood_dataset(n, roots["openood"]))
        for n in ("ssb_hard", "ninco", "inaturalist", "textures", "openimage_o")
    ]
    loaders.append(("openood", lambda: data.openood_id_subset(  # Table 2's ID test set
        data.imagenet_split("val", roots["imagenet"]), roots["openood"])))  # fmt: skip
    problems, missing_roots = [], set()
    for kind, load in loaders:
        if kind in missing_roots:
            continue
        try:
            images = load()
        except (FileNotFoundError, ValueError) as err:
            if str(err) not in problems:  # the ID list check reopens ImageNet val
                problems.append(str(err))
            if "root" in str(err).split("\n")[0]:
                missing_roots.add(kind)
            continue
        if hasattr(images, "samples"):  # an image set (not the ID list's indices)
            problems += image_set_problems(images.name, [p for p, _ in images.samples])
    return problems


def _spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``n <= k``)."""
    return list(range(n)) if n <= k else sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def image_set_problems(name: str, paths: list[str]) -> list[str]:
    """Problems of one image set: no images, listed files that do not exist (a spread sample of
    large lists), or sampled files that no image reader opens."""
    from PIL import Image

    if not paths:
        return [f"image set {name}: no images."]
    sample = [paths[i] for i in _spread(len(paths), SAMPLE_EXISTS)]
    absent = [p for p in sample if not os.path.isfile(p)]
    if absent:
        folder = os.path.commonpath(absent) if len(absent) > 1 else os.path.dirname(absent[0])
        return [f"image set {name}: {len(absent)} of {len(sample)} checked images do not exist "
                f"(e.g. {absent[0]}; below {folder})."]  # fmt: skip
    opened, errors = 0, []
    for path in [sample[i] for i in _spread(len(sample), SAMPLE_OPEN)]:
        try:
            with Image.open(path) as img:
                img.verify()
            opened += 1
        except Exception as err:  # PIL raises many kinds; any of them means unreadable
            errors.append(f"{path} ({type(err).__name__})")
    if not opened:
        return [f"image set {name}: none of the sampled images opens, e.g. {errors[0]}."]
    if errors:
        log.warning("image set %s: unreadable images will be skipped, e.g. %s", name, errors[0])
    return []


def _wordnet_problems() -> list[str]:
    from cmakit.data.wordnet import wordnet_source

    try:
        wordnet_source()
    except LookupError as err:
        return [f"WordNet (negative-label mining): {err}"]
    return []
