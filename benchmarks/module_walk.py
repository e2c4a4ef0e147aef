"""Follow a stage of the pipeline through the package: the modules its calls visit, in order.

Every call into a cmakit module is recorded with its module, except inside the training loop
(:func:`cmakit.engine.trainer.train` counts as one call of ``engine.trainer``) and the encoders'
batches (:mod:`cmakit.engine.embed` likewise), whose per-step calls would drown the walk. The
walk is that sequence of modules: ``stays`` counts its runs (consecutive calls in one module are
one stay), ``modules`` the distinct modules, and ``climbs`` the stays in a module of a higher
layer than the stay before it (``common`` < ``core`` < ``models`` < ``data`` < ``engine`` <
``report`` < ``pipeline``): each is a return up the stack to finish work begun above.

    python benchmarks/module_walk.py [--stage finetune|embed] [--run-dir DIR] [--follow config]

``--follow config`` keeps only the calls that receive the run configuration itself (the
``RunConfig`` object among the called function's arguments): the walk of the run configuration
through the package, the measure of issue 21 (14 modules, 44 stays, 16 climbs before the split).

It runs the stage on the ``smoke`` profile for seed 0 (pretraining the micro CLIP first, cached,
outside the walk); a fine-tuned model or embeddings already in ``--run-dir`` are loaded instead.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

LAYERS = ("common", "core", "models", "data", "engine", "report", "pipeline")
#: Functions whose inner calls are not followed (they count as one call of their module).
OPAQUE = {("cmakit.engine.trainer", "train"), ("cmakit.engine.embed", "images"),
          ("cmakit.engine.embed", "texts")}  # fmt: skip


def walk(stage: str, run_dir: str, *, follow_config: bool = False) -> list[str]:
    """The modules of every cmakit call the stage makes, in call order (see the docstring);
    with ``follow_config`` only the calls that are handed the run configuration."""
    from cmakit.pipeline import steps
    from cmakit.pipeline.config import resolve

    cfg = resolve(profile="smoke", run_dir=run_dir, seeds=[0], cache_dir=run_dir + "/cache")
    steps.base_model(cfg)  # pretrain (cached) outside the walk
    seen: list[str] = []
    depth = {"opaque": 0}

    def profile(frame, event, arg):  # noqa: ARG001
        name = frame.f_globals.get("__name__", "")
        if not name.startswith("cmakit"):
            return
        key = (name, frame.f_code.co_name)
        if event == "call":
            gets_cfg = not follow_config or any(v is cfg for v in frame.f_locals.values())
            if depth["opaque"] == 0 and gets_cfg:
                seen.append(name.removeprefix("cmakit."))
            if key in OPAQUE:
                depth["opaque"] += 1
        elif event == "return" and key in OPAQUE:
            depth["opaque"] -= 1

    sys.setprofile(profile)
    try:
        getattr(steps, stage)(cfg, "flyp", 0)
    finally:
        sys.setprofile(None)
    return seen


def summarise(seen: list[str]) -> dict[str, int]:
    """``modules``, ``stays`` and ``climbs`` of a walk (see the module docstring)."""
    stays = [m for i, m in enumerate(seen) if i == 0 or seen[i - 1] != m]
    layer = [LAYERS.index(m.split(".")[0]) if m.split(".")[0] in LAYERS else len(LAYERS)
             for m in stays]  # fmt: skip
    climbs = sum(1 for a, b in zip(layer[:-1], layer[1:], strict=True) if b > a)
    return {"modules": len(set(stays)), "stays": len(stays), "climbs": climbs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=["finetune", "embed"], default="finetune")
    parser.add_argument("--run-dir", default=None)
    parser.add_argument(
        "--follow",
        choices=["calls", "config"],
        default="calls",
        help="every cmakit call, or only those handed the run configuration",
    )
    args = parser.parse_args()
    run_dir = args.run_dir or tempfile.mkdtemp(prefix="cmakit-walk-")
    seen = walk(args.stage, run_dir, follow_config=args.follow == "config")
    stays = [m for i, m in enumerate(seen) if i == 0 or seen[i - 1] != m]
    print(" -> ".join(stays))
    print(summarise(seen))


if __name__ == "__main__":
    main()
