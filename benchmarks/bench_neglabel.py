"""Time ``neglabel_score`` at the full ImageNet size on the CPU (prints figures; not a test).

Default size: 50,000 images x (1,000 ID + 10,000 negative labels) x 512 dimensions, float32,
as in the paper's evaluation. Usage::

    python benchmarks/bench_neglabel.py                 # full size, groups 1 and 100
    python benchmarks/bench_neglabel.py --images 5000   # quicker
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from cmakit.core.scores import neglabel_score


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--id-labels", type=int, default=1_000)
    parser.add_argument("--neg-labels", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    image = _unit(args.images, args.dim, 0)
    id_text = _unit(args.id_labels, args.dim, 1)
    neg_text = _unit(args.neg_labels, args.dim, 2)
    print(
        f"neglabel_score: {args.images:,} images x ({args.id_labels:,} ID + "
        f"{args.neg_labels:,} neg) x {args.dim}, float32, {torch.get_num_threads()} threads"
    )
    for groups in args.groups:
        start = time.perf_counter()
        scores = neglabel_score(image, id_text, neg_text, groups=groups)
        seconds = time.perf_counter() - start
        print(
            f"  groups={groups:>4}: {seconds:7.2f} s  "
            f"({args.images / seconds:,.0f} images/s, mean score {scores.mean():.4f})"
        )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"  peak resident memory: {peak_mib:,.0f} MiB (inputs: {image.numel() * 4 / 2**20:,.0f} MiB)"
    )


if __name__ == "__main__":
    main()
