"""The embedded default world: procedurally generated image-caption data for CMA studies.

Geometric shapes are the ID classes; look-alike shapes are near-OoD; pictograms of things and
object-free textures are far-OoD. Every concept occurs in the pretraining corpus, as ImageNet's
OoD sets occur in CLIP's pretraining data.
"""

from __future__ import annotations

from cmakit.data.world.build import (
    ID_SPLITS,
    MEAN,
    OOD_SETS,
    STD,
    VAL_OOD_SETS,
    World,
    build_world,
)
from cmakit.data.world.concepts import lexicon
from cmakit.data.world.config import (
    OOD_GROUPS,
    VAL_OOD_GROUPS,
    WORLD_PRESETS,
    WorldConfig,
    world_config,
)
from cmakit.data.world.figure import plot_world_samples

__all__ = [
    "ID_SPLITS",
    "MEAN",
    "OOD_GROUPS",
    "OOD_SETS",
    "STD",
    "VAL_OOD_GROUPS",
    "VAL_OOD_SETS",
    "WORLD_PRESETS",
    "World",
    "WorldConfig",
    "build_world",
    "lexicon",
    "plot_world_samples",
    "world_config",
]
