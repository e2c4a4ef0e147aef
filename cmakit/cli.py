"""Command line: ``python -m cmakit train|mine|embed|evaluate`` (the paper path, also torchrun),
``python -m cmakit explore PATH`` (the explorer page of any embeddings) and
``python -m cmakit compare RUN [REFERENCE]`` (whether a reproduction agrees).

This module parses and dispatches only; what each command does, and the dataclass of its
settings, live in :mod:`cmakit.pipeline.commands`.

Every flag comes from a field of a config dataclass (``--grad-accum-steps`` is
``TrainConfig.grad_accum_steps``), so the command line and the notebooks share one definition of
each setting; the values go through :func:`cmakit.common.strict_config.from_dict`. Unknown flags are errors.

    torchrun --nproc_per_node=4 -m cmakit train --model ViT-B-16 --pretrained openai \\
        --imagenet /data/imagenet --out runs/cma --lam 0.001
    python -m cmakit mine --model ViT-B-16 --pretrained openai --out neg_labels.tsv
    python -m cmakit embed --model ViT-B-16 --checkpoint runs/cma/model.pt --out runs/cma/emb \\
        --imagenet /data/imagenet --mos /data/mos --negatives neg_labels.tsv
    python -m cmakit evaluate --embeddings runs/cma/emb --score neglabel --out metrics.json
    python -m cmakit explore runs/cma/emb --out explorer.html
    python -m cmakit compare runs/cpu        # exit 0: agrees with docs/reference/cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import logging
import sys
import types
import typing
from typing import Any, Literal

from cmakit.common.strict_config import from_dict
from cmakit.pipeline.commands import (
    CompareRun,
    EmbedRun,
    EvaluateRun,
    ExploreRun,
    MineRun,
    TrainRun,
)
from cmakit.pipeline.compare import ProfileMismatch

log = logging.getLogger(__name__)


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


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, *, title: str,
                        positional: tuple[str, ...] = ()) -> None:  # fmt: skip
    """Add one ``--field-name`` flag per field of the config dataclass ``cls``; the fields named
    in ``positional`` become positional arguments instead. A tuple field takes one or more values."""
    group = parser.add_argument_group(title, (cls.__doc__ or "").strip().splitlines()[0])
    hints, helps = typing.get_type_hints(cls), _field_help(cls)
    for f in dataclasses.fields(cls):
        flag, hint = "--" + f.name.replace("_", "-"), hints[f.name]
        text = f"{helps.get(f.name, '')} (default: {f.default})".replace("%", "%%")
        if typing.get_origin(hint) is tuple:
            kind = typing.get_args(hint)[0]
            if f.name in positional:
                group.add_argument(f.name, type=kind, nargs="+", help=helps.get(f.name, ""))
            else:
                group.add_argument(flag, dest=f.name, type=kind, nargs="*", default=f.default,
                                   help=text)  # fmt: skip
            continue
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
    p = sub.add_parser("explore", help="an interactive page of any embeddings: scores, "
                       "threshold, selections, pairs, paths across models, search")  # fmt: skip
    add_dataclass_flags(p, ExploreRun, title="explorer", positional=("path",))
    p = sub.add_parser("compare", help="does a run agree with the reference? (exit 0 yes, 1 no)",
                       description="Print every headline number of RUN beside the reference's "
                       "with its tolerance; exit 0 when all agree, 1 when one does not, 2 when "
                       "nothing can be compared (a reference of another profile, a missing or "
                       "unreadable file).")  # fmt: skip
    helps = _field_help(CompareRun)
    p.add_argument("run", help=helps["run"])
    p.add_argument("reference", nargs="?", default=None, help=helps["reference"])
    p.add_argument("--k", type=float, default=CompareRun.k, help=helps["k"])
    return parser


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
            "explore": (ExploreRun,),
            "compare": (CompareRun,),
        }
        for cls in configs[ns.command]:
            _take(cls, ns)
    except ValueError as err:
        parser.error(str(err))
    try:
        return _run(ns)
    except ProfileMismatch as err:  # nothing can be compared: a usage error
        print(f"cmakit compare: error: {err}", file=sys.stderr)
        return 2
    except USER_ERRORS as err:
        if ns.debug:
            raise
        text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"cmakit {ns.command}: error: {text}\n(a problem with the input, not a bug in "
              "cmakit; --debug shows the traceback)", file=sys.stderr)  # fmt: skip
        return 2 if ns.command == "compare" else 1  # compare's 1 means "disagrees" only


#: Errors that mean "the input is wrong" (missing or corrupt files, bad values, a diverged run):
#: one message at the command line. Anything else is a bug and keeps its traceback.
USER_ERRORS = (FileNotFoundError, NotADirectoryError, PermissionError, ValueError, LookupError,
               FloatingPointError)  # fmt: skip


def _run(ns: argparse.Namespace) -> int:
    """Run the command; its exit status (``compare``: 0 agrees, 1 disagrees)."""
    from cmakit.engine.trainer import TrainConfig
    from cmakit.pipeline import commands

    if ns.command == "train":
        commands.run_train(_take(TrainRun, ns), _take(TrainConfig, ns))
    elif ns.command == "mine":
        commands.run_mine(_take(MineRun, ns))
    elif ns.command == "embed":
        commands.run_embed(_take(EmbedRun, ns))
    elif ns.command == "evaluate":
        commands.run_evaluate(_take(EvaluateRun, ns))
    elif ns.command == "explore":
        commands.run_explore(_take(ExploreRun, ns))
    else:
        comparison = commands.run_compare(_take(CompareRun, ns))
        print(comparison.text())
        return comparison.exit_code
    return 0
