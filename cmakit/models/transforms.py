"""Image preprocessing of the paper (PAPER.md §6): PIL image -> normalised ``[3, S, S]`` tensor."""

from __future__ import annotations

from collections.abc import Sequence

import torchvision.transforms as T
from PIL import Image

from cmakit.common.constants import OPENAI_MEAN, OPENAI_STD


def _to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def paper_transform(image_size: int | Sequence[int] = 224, *, train: bool = False) -> T.Compose:
    """The paper's preprocessing (PAPER.md §6) for PIL images -> ``[3, S, S]`` float tensors.

    Args:
        image_size: Output side S (an int, or an (S, S) pair as open_clip stores it).
        train: RandomResizedCrop(S, scale=(0.9, 1), bicubic) if True, else Resize(S, bicubic)
            + CenterCrop(S). Both then convert to RGB and normalise with OpenAI's mean/std.
    """
    size = image_size if isinstance(image_size, int) else int(image_size[0])
    bicubic = T.InterpolationMode.BICUBIC
    if train:
        head = [T.RandomResizedCrop(size, scale=(0.9, 1.0), interpolation=bicubic)]
    else:
        head = [T.Resize(size, interpolation=bicubic), T.CenterCrop(size)]
    return T.Compose([*head, _to_rgb, T.ToTensor(), T.Normalize(OPENAI_MEAN, OPENAI_STD)])


def paper_transform_key(image_size: int | Sequence[int] = 224, *, train: bool = False) -> str:
    """A stable description of :func:`paper_transform` (part of embedding cache keys).

    ``repr`` of the transform cannot serve: it holds the memory address of a function, so it
    changes from one process to the next and a cache keyed by it never hits.
    """
    size = image_size if isinstance(image_size, int) else int(image_size[0])
    head = f"randomresizedcrop{size}-0.9" if train else f"resize{size}-bicubic-centercrop"
    return f"{head}-openai-norm"
