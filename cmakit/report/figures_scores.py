"""A figure of a few scored images: the pictures a benchmark's numbers are made of.

Same conventions as :mod:`cmakit.report.figures` (a fresh figure, no pyplot).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from cmakit.common.constants import OPENAI_MEAN, OPENAI_STD
from cmakit.report.figures import figure_style


def plot_image_grid(
    images,
    titles: Sequence[str],
    *,
    mean: Sequence[float] = OPENAI_MEAN,
    std: Sequence[float] = OPENAI_STD,
    ncols: int = 6,
    title: str = "",
) -> Figure:
    """Show normalised image tensors with a caption each (e.g. their source and scores).

    Args:
        images: ``[N, 3, H, W]`` float images normalised as ``(x - mean) / std`` (the models'
            input; a numpy array or torch tensor), or ``[N, H, W, 3]`` values in ``[0, 1]``
            with ``mean=(0, 0, 0)`` and ``std=(1, 1, 1)``.
        titles: ``N`` captions.
        mean: Per-channel mean the images were normalised with (CLIP's by default).
        std: Per-channel standard deviation they were normalised with.
        ncols: Images per row.
        title: Figure title.

    Returns:
        The figure, one small panel per image, pixels un-normalised and clipped to ``[0, 1]``.

    Raises:
        ValueError: ``images`` not 4-D with 3 channels, or ``titles`` of another length.
    """
    x = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images, dtype=float)
    if x.ndim != 4 or 3 not in (x.shape[1], x.shape[3]):
        raise ValueError(f"images must be [N, 3, H, W] or [N, H, W, 3]; got {x.shape}.")
    if x.shape[1] == 3:
        x = x.transpose(0, 2, 3, 1)  # (N, H, W, 3)
    if len(titles) != len(x):
        raise ValueError(f"{len(x)} images but {len(titles)} titles.")
    x = np.clip(x * np.asarray(std) + np.asarray(mean), 0.0, 1.0)
    ncols = max(1, min(ncols, len(x)))
    nrows = -(-len(x) // ncols)
    with figure_style():
        fig = Figure(figsize=(1.9 * ncols, 2.25 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes:
            ax.axis("off")
        for ax, img, caption in zip(axes, x, titles, strict=False):
            ax.imshow(img, interpolation="nearest")
            ax.set_title(caption, fontsize=8)
        if title:
            fig.suptitle(title)
    return fig
