"""Checks of a run's inputs before any notebook starts (the runner's ``--dry-run``).

The embedded profiles need nothing from outside. The paper profile needs the OpenAI ViT-B/16
weights and the ImageNet-1k, MOS and OpenOOD v1.5 folders; each missing piece is reported with
the path tried and the expected layout, all at once, so one dry run lists everything to fix.
Every profile logs where its negative labels come from (:func:`negatives_plan`): the candidate
pool it mines or the negative-label file it reads, and CSP's pool.
Every profile's fine-tuning batch must split over the processes that will train
(:func:`check_batch_split`).
"""

from __future__ import annotations

import logging
import os

from cmakit.pipeline.config import RunConfig

log = logging.getLogger(__name__)


def check_run_inputs(cfg: RunConfig) -> None:
    """Validate what a run will read.

    Raises:
        FileNotFoundError: on the paper profile, for every missing weights file, data root,
            folder or image list (one message naming all of them, with the expected layouts).
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
    problems = []
    try:
        for line in negatives_plan(cfg):
            log.info("%s", line)
    except (FileNotFoundError, ValueError) as err:
        problems.append(f"negative_labels: {err}")
    if cfg.embedded:
        if problems:
            raise FileNotFoundError("The run cannot start:\n- " + "\n- ".join(problems))
        return
    if not cfg.pretrained:
        problems.append(
            "pretrained is empty: give the OpenAI ViT-B/16 weights file "
            "(--set pretrained=/path/ViT-B-16.pt) or the open_clip tag 'openai' (downloads)."
        )
    elif not os.path.isfile(
        cfg.pretrained
    ) and cfg.pretrained not in open_clip.list_pretrained_tags_by_model(cfg.model):
        problems.append(
            f"pretrained={cfg.pretrained!r} is neither a file nor an open_clip tag of {cfg.model}."
        )
    problems += _data_problems(cfg)
    if problems:
        raise FileNotFoundError("The paper profile cannot start:\n- " + "\n- ".join(problems))
    log.info("paper inputs found: weights %s, ImageNet, MOS and OpenOOD v1.5 roots", cfg.pretrained)


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
            load()
        except (FileNotFoundError, ValueError) as err:
            if str(err) not in problems:  # the ID list check reopens ImageNet val
                problems.append(str(err))
            if "root" in str(err).split("\n")[0]:
                missing_roots.add(kind)
    return problems
