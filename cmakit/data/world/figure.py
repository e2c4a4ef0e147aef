"""Figure: a grid of samples of every split of the world, with captions or class names."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from cmakit.common.io import atomic_path
from cmakit.data.world.build import ID_SPLITS, OOD_SETS, World
from cmakit.data.world.concepts import describe

ROW_TITLES = {
    "pretrain": "pretraining (caption)",
    "train": "ID train",
    "test": "ID test",
    "near_shapes": "near-OoD",
    "far_objects": "far-OoD objects",
    "far_textures": "far-OoD textures",
}


def plot_world_samples(
    world: World, path: str | os.PathLike, *, n_per_split: int = 8
) -> list[Path]:
    """Save a grid of ``n_per_split`` samples per split (rows) as PNG and PDF.

    Pretraining samples are titled by their caption, the other splits by their concept (ID or
    OoD class name; a species with its description).

    Args:
        world: The world to show.
        path: Output path; the suffix is replaced by ``.png`` and ``.pdf``.
        n_per_split: Samples per row.

    Returns:
        The written paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = ["pretrain", ID_SPLITS[0], ID_SPLITS[2], *OOD_SETS]
    fig, axes = plt.subplots(
        len(splits), n_per_split, figsize=(1.6 * n_per_split, 2.0 * len(splits)), squeeze=False
    )
    for r, split in enumerate(splits):
        imgs = world.raw_images[split][:n_per_split]
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(imgs):
                ax.axis("off")
                continue
            ax.imshow(imgs[c].permute(1, 2, 0).numpy(), interpolation="nearest")
            label = world.captions[c] if split == "pretrain" else describe(world.concepts[split][c])
            ax.set_title("\n".join(textwrap.wrap(label, 18)), fontsize=6.5)
        axes[r][0].set_ylabel(ROW_TITLES[split], fontsize=8)
    fig.tight_layout()
    out = []
    for suffix in (".png", ".pdf"):
        target = Path(path).with_suffix(suffix)
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=suffix[1:], dpi=150)
        out.append(target)
    plt.close(fig)
    return out
