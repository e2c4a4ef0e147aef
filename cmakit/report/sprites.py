"""Thumbnails as one sprite sheet: many small images in one inlined picture, cropped per point.

A page that inlines one ``data:`` URI per point pays a PNG header and base64 for each; one sheet
per group compresses across its images and is decoded once by the browser, which then shows any
point's thumbnail by its offset (``background-position``) in the sheet.
"""

from __future__ import annotations

import base64
import io

import numpy as np

#: Thumbnail side in the sheet, in pixels.
THUMB = 48


def thumbnail_atlas(pixels: np.ndarray, size: int = THUMB) -> tuple[str, int]:
    """One ``data:`` URI of ``[n, H, W, 3]`` uint8 thumbnails as a sprite sheet of squares of
    ``size`` pixels (or the images' own size, if smaller), ``cols`` to a row (row-major);
    returns ``(uri, cols)``. PNG or JPEG, the smaller. The page scales the sheet to any size."""
    from PIL import Image

    pixels = np.asarray(pixels)
    n, size = len(pixels), min(size, pixels.shape[1], pixels.shape[2])  # never upscaled
    cols = max(1, int(np.ceil(np.sqrt(n))))
    sheet = Image.new("RGB", (cols * size, int(np.ceil(n / cols)) * size), (255, 255, 255))
    for i, p in enumerate(pixels):
        img = Image.fromarray(np.ascontiguousarray(p, dtype=np.uint8))
        sheet.paste(img.resize((size, size), Image.Resampling.NEAREST if img.width <= size
                               else Image.Resampling.LANCZOS), ((i % cols) * size, (i // cols) * size))  # fmt: skip
    encoded = []
    for fmt, mime, opts in (("PNG", "png", {"optimize": True}), ("JPEG", "jpeg", {"quality": 85})):
        buf = io.BytesIO()
        sheet.save(buf, format=fmt, **opts)
        encoded.append(f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode())
    return min(encoded, key=len), cols
