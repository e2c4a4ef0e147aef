"""Command line of the paper path: ``python -m cmakit train|mine|embed|evaluate`` (also torchrun).

Every flag comes from a field of a config dataclass (``--grad-accum-steps`` is
``TrainConfig.grad_accum_steps``), so the command line and the notebooks share one definition of
each setting; the values go through :func:`cmakit.common.config.from_dict`. Unknown flags are errors.

    torchrun --nproc_per_node=4 -m cmakit train --model ViT-B-16 --pretrained openai \\
        --imagenet /data/imagenet --out runs/cma --lam 0.001
    python -m cmakit mine --model ViT-B-16 --pretrained openai --out neg_labels.tsv
    python -m cmakit embed --model ViT-B-16 --checkpoint runs/cma/model.pt --out runs/cma/emb \\
        --imagenet /data/imagenet --mos /data/mos --negatives neg_labels.tsv
    python -m cmakit evaluate --embeddings runs/cma/emb --score neglabel --out metrics.json
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import logging
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

from cmakit.common.config import from_dict, to_dict
from cmakit.common.constants import TEST_PROMPT, TRAIN_PROMPT

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
    """Which model, data sets and prompts to encode (see :mod:`cmakit.pipeline.commands`).

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


def _flag_type(hint: Any) -> tuple[Any, dict[str, Any]]:
    """argparse ``type``/``choices`` for a dataclass field hint (Optional -> accepts 'none')."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = next(a for a in args if a is not type(None))
        base, extra = _flag_type(inner)
        return (lambda s: None if s.lower() == "none" else base(s)), extra
    if typing.get_origin(hint) is Literal:
        return str, {"choices": list(args)}
    return hint, {}


def _field_help(cls: type) -> dict[str, str]:
    """Field descriptions from the ``Attributes:`` section of a Google-style docstring."""
    doc = inspect.getdoc(cls) or ""
    helps: dict[str, str] = {}
    names: list[str] = []
    for line in doc.partition("Attributes:")[2].splitlines():
        head, sep, text = line.strip().partition(": ")
        if sep and line.startswith("    ") and not line.startswith("     "):
            names = [n.strip() for n in head.split(",")]
            for n in names:
                helps[n] = text
        elif names and line.strip():
            for n in names:
                helps[n] += " " + line.strip()
    return helps


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, *, title: str) -> None:
    """Add one ``--field-name`` flag per field of the config dataclass ``cls``."""
    group = parser.add_argument_group(title, (cls.__doc__ or "").strip().splitlines()[0])
    hints, helps = typing.get_type_hints(cls), _field_help(cls)
    for f in dataclasses.fields(cls):
        flag, hint = "--" + f.name.replace("_", "-"), hints[f.name]
        text = f"{helps.get(f.name, '')} (default: {f.default})".replace("%", "%%")
        if hint is bool:
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=f.default, help=text)  # fmt: skip
            continue
        kind, extra = _flag_type(hint)
        group.add_argument(flag, dest=f.name, type=kind, default=f.default, help=text, **extra)


def _take(cls: type, ns: argparse.Namespace):
    return from_dict(cls, {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)})


def build_parser() -> argparse.ArgumentParser:
    from cmakit.engine.trainer import TrainConfig

    parser = argparse.ArgumentParser(prog="cmakit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of expected errors (bad input) too")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="fine-tune CLIP on ImageNet (FLYP: --lam 0, CMA: --lam 0.001)")
    add_dataclass_flags(p, TrainRun, title="run")
    add_dataclass_flags(p, TrainConfig, title="hyper-parameters")
    p = sub.add_parser("mine", help="mine negative labels from WordNet with a pretrained model")
    add_dataclass_flags(p, MineRun, title="mining")
    p = sub.add_parser("embed", help="encode ID/OoD images, ID prompts and negative labels")
    add_dataclass_flags(p, EmbedRun, title="embedding")
    p = sub.add_parser("evaluate", help="MCM / NegLabel metrics from cached embeddings")
    add_dataclass_flags(p, EvaluateRun, title="evaluation")
    return parser


def run_train(ns: argparse.Namespace) -> dict[str, Any]:
    """``train``: ImageNet train split with class prompts -> :func:`cmakit.engine.trainer.train`."""
    from cmakit.common.io import write_json
    from cmakit.data.paper import (
        PromptPairs,
        imagefolder_classnames,
        imagenet_split,
        resolve_root,
    )
    from cmakit.engine.trainer import TrainConfig, train
    from cmakit.models.factory import load_clip
    from cmakit.models.transforms import paper_transform

    run, cfg = _take(TrainRun, ns), _take(TrainConfig, ns)
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
    from cmakit.engine.distributed import get_rank

    if get_rank() == 0:
        write_json(Path(run.out) / "train_summary.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m cmakit`` and the ``cmakit`` script."""
    from cmakit.engine.trainer import TrainConfig

    parser = build_parser()
    ns = parser.parse_args(argv)
    logging.basicConfig(level=ns.log_level, format="%(asctime)s %(name)s: %(message)s")
    try:  # bad values are usage errors (exit status 2), like unknown flags
        configs = {
            "train": (TrainRun, TrainConfig),
            "mine": (MineRun,),
            "embed": (EmbedRun,),
            "evaluate": (EvaluateRun,),
        }
        for cls in configs[ns.command]:
            _take(cls, ns)
    except ValueError as err:
        parser.error(str(err))
    try:
        _run(ns)
    except USER_ERRORS as err:
        if ns.debug:
            raise
        text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"cmakit {ns.command}: error: {text}\n(a problem with the input, not a bug in "
              "cmakit; --debug shows the traceback)", file=sys.stderr)  # fmt: skip
        return 1
    return 0


#: Errors that mean "the input is wrong" (missing or corrupt files, bad values, a diverged run):
#: one message at the command line. Anything else is a bug and keeps its traceback.
USER_ERRORS = (FileNotFoundError, NotADirectoryError, PermissionError, ValueError, LookupError,
               FloatingPointError)  # fmt: skip


def _run(ns: argparse.Namespace) -> None:
    if ns.command == "train":
        run_train(ns)
    elif ns.command == "mine":
        from cmakit.pipeline.commands import run_mine

        run_mine(_take(MineRun, ns))
    elif ns.command == "embed":
        from cmakit.pipeline.commands import run_embed

        run_embed(_take(EmbedRun, ns))
    else:
        from cmakit.pipeline.commands import run_evaluate

        run_evaluate(_take(EvaluateRun, ns))
