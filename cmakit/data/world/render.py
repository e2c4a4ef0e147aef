"""Scene sampling and vectorised rendering of the world's RGB images.

A scene is a background (plain, gradient or noisy; light or dark) with zero to three objects, or
a full-frame texture. :func:`sample_scenes` draws every parameter with a numpy ``Generator`` (the
only source of randomness, so a seed fixes the bytes); :func:`render_scenes` rasterises a batch
with torch: all objects of one concept are drawn in a few tensor operations on a supersampled
grid and averaged down, which gives anti-aliased edges.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from cmakit.data.world.concepts import COLOURS, FAMILIES, anatomy
from cmakit.data.world.shapes import part_mask, shape_mask

OBJECTS: tuple[str, ...] = FAMILIES["geometric"] + FAMILIES["pictogram"]
TEXTURES: tuple[str, ...] = FAMILIES["texture"]
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
_RGB = torch.tensor([rgb for rgb, _ in COLOURS.values()], dtype=torch.float32)  # [C, 3]
BACKGROUNDS: tuple[str, ...] = ("plain", "gradient", "noisy")
TONES: tuple[str, ...] = ("light", "dark")
MAX_OBJECTS = 3
MAX_TILT = math.radians(25.0)  # objects stand roughly upright, as in photos
_CHUNK = 2048  # images rasterised at once (bounds peak memory)


@dataclasses.dataclass
class Scenes:
    """Parameters of N scenes (numpy arrays; M = :data:`MAX_OBJECTS` object slots).

    ``concept``/``colour``/``pattern`` index :data:`OBJECTS`, :data:`COLOUR_NAMES` and
    :data:`TEXTURES`; ``-1`` means empty slot / solid fill / no texture. Positions and scales
    are in units of the image half-width, angles in radians.
    """

    background: np.ndarray  # [N] index into BACKGROUNDS
    tone: np.ndarray  # [N] index into TONES
    texture: np.ndarray  # [N] full-frame texture, -1 for object scenes
    texture_colour: np.ndarray  # [N]
    concept: np.ndarray  # [N, M]
    colour: np.ndarray  # [N, M]
    colour2: np.ndarray  # [N, M] colour of a pictogram's second part
    pattern: np.ndarray  # [N, M]
    scale: np.ndarray  # [N, M]
    cx: np.ndarray  # [N, M]
    cy: np.ndarray  # [N, M]
    angle: np.ndarray  # [N, M]

    def __len__(self) -> int:
        return len(self.tone)


def _colours_for(rng: np.random.Generator, tone: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Object colours, avoiding white on light and black on dark backgrounds."""
    col = rng.integers(0, len(COLOUR_NAMES), size=shape)
    white, black = COLOUR_NAMES.index("white"), COLOUR_NAMES.index("black")
    t = np.broadcast_to(tone.reshape(-1, *([1] * (len(shape) - 1))), shape)
    col = np.where((t == 0) & (col == white), COLOUR_NAMES.index("gray"), col)
    return np.where((t == 1) & (col == black), COLOUR_NAMES.index("gray"), col)


def sample_scenes(
    rng: np.random.Generator,
    concept: list[str],
    n_objects: np.ndarray,
    pattern_prob: float = 0.2,
    min_scale: float = 0.55,
    markings: tuple[str, ...] | None = None,
) -> Scenes:
    """Draw the parameters of one scene per entry of ``concept``.

    Args:
        rng: The random generator (fixes every parameter).
        concept: ``N`` concept names; a texture name gives an object-free texture image,
            an object name fills slot 0 (further slots get random objects).
        n_objects: ``[N]`` number of objects (1-3) for object scenes; ignored for textures.
        pattern_prob: Probability that an object is filled with a texture pattern.
        min_scale: Smallest radius of a single object (the largest is 0.9).
        markings: Species world: the markings of its species. A concept may then be a species
            word, whose marking becomes the object's fill; further objects are random species.
            ``None``: fills are drawn with ``pattern_prob`` (shape world).
    """
    n, m = len(concept), MAX_OBJECTS
    tone = rng.integers(0, 2, size=n)
    is_tex = np.array([c in TEXTURES for c in concept], dtype=bool)
    texture = np.array(
        [TEXTURES.index(c) if t else -1 for c, t in zip(concept, is_tex, strict=True)]
    )
    k = np.where(is_tex, 0, np.clip(n_objects, 1, m))
    slot = np.arange(m)[None, :]
    body = [anatomy(c) if not t else ("circle", None) for c, t in zip(concept, is_tex, strict=True)]
    first = np.array([OBJECTS.index(b) for b, _ in body])
    others = rng.integers(0, len(OBJECTS), size=(n, m))
    obj = np.where(slot == 0, first[:, None], others)
    obj = np.where(slot < k[:, None], obj, -1)
    if markings is None:
        pattern = np.where(
            rng.random((n, m)) < pattern_prob, rng.integers(0, len(TEXTURES), (n, m)), -1
        )
    else:  # a species' marking is its fill; -1 = plain
        codes = np.array([-1, *(TEXTURES.index(x) for x in markings)])
        pattern = codes[rng.integers(0, len(codes), (n, m))]
        pattern[:, 0] = [TEXTURES.index(mk) if mk else -1 for _, mk in body]
    single = k[:, None] == 1
    scale = np.where(single, rng.uniform(min_scale, 0.9, (n, m)), rng.uniform(0.3, 0.45, (n, m)))
    spread = np.clip(0.95 - scale, 0.0, None)
    quadrant = np.argsort(rng.random((n, 4)), axis=1)[:, :m]  # distinct quadrants per slot
    qx = np.where(quadrant % 2 == 0, -0.5, 0.5) + rng.uniform(-0.08, 0.08, (n, m))
    qy = np.where(quadrant < 2, -0.5, 0.5) + rng.uniform(-0.08, 0.08, (n, m))
    cx = np.where(single, rng.uniform(-1, 1, (n, m)) * spread, qx)
    cy = np.where(single, rng.uniform(-1, 1, (n, m)) * spread, qy)
    colour = _colours_for(rng, tone, (n, m))
    return Scenes(
        background=rng.integers(0, len(BACKGROUNDS), size=n),
        tone=tone,
        texture=texture,
        texture_colour=_colours_for(rng, tone, (n,)),
        concept=obj,
        colour=colour,
        colour2=(colour + rng.integers(1, len(COLOUR_NAMES), (n, m))) % len(COLOUR_NAMES),
        pattern=pattern,
        scale=scale,
        cx=cx,
        cy=cy,
        angle=rng.uniform(-MAX_TILT, MAX_TILT, (n, m)),
    )


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates ``x, y`` in ``[-1, 1]`` (``y`` up), each ``[size, size]``."""
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(-t, t, indexing="ij")
    return x, y


def _backgrounds(s: Scenes, size: int, gen: torch.Generator) -> torch.Tensor:
    """Background images ``[N, 3, H, W]`` in ``[0, 1]``."""
    n = len(s)
    tone = torch.as_tensor(s.tone)
    level = torch.where(
        tone == 0,
        0.75 + 0.2 * torch.rand(n, generator=gen),
        0.05 + 0.2 * torch.rand(n, generator=gen),
    )
    base = level[:, None] + 0.06 * (torch.rand(n, 3, generator=gen) - 0.5)  # [N, 3] slight tint
    x, y = _grid(size)
    a = 2 * math.pi * torch.rand(n, generator=gen)
    ramp = (
        x[None] * torch.cos(a)[:, None, None] + y[None] * torch.sin(a)[:, None, None]
    )  # [N, H, W]
    kind = torch.as_tensor(s.background)[:, None, None]
    shade = torch.where(
        kind == 1, 0.2 * ramp * torch.where(tone == 0, -1.0, 1.0)[:, None, None], 0.0
    )
    noise = torch.where(kind == 2, 0.09 * torch.randn(n, size, size, generator=gen), 0.0)
    img = base[:, :, None, None] + (shade + noise)[:, None]
    return img.clamp(0, 1)


def pattern_masks(kind: int, n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """Binary texture patterns ``[n, H, W]`` (float 0/1) of texture ``TEXTURES[kind]``.

    Period 3-6 pixels, random orientation and phase; coordinates in pixels.
    """
    x, y = _grid(size)
    x, y = x * size / 2, y * size / 2
    period = 3.0 + 3.0 * torch.rand(n, 1, 1, generator=gen)
    a = math.pi * torch.rand(n, 1, 1, generator=gen)
    p0, p1 = torch.rand(2, n, 1, 1, generator=gen) * period
    xr = x * torch.cos(a) + y * torch.sin(a) + p0
    yr = -x * torch.sin(a) + y * torch.cos(a) + p1
    name = TEXTURES[kind]
    if name == "stripes":
        out = torch.remainder(xr, period) < period / 2
    elif name == "checkerboard":
        out = (torch.floor(xr / period) + torch.floor(yr / period)) % 2 == 0
    elif name == "dots":
        dx = torch.remainder(xr, period) - period / 2
        dy = torch.remainder(yr, period) - period / 2
        out = dx**2 + dy**2 < (0.32 * period) ** 2
    elif name == "waves":
        out = (
            torch.remainder(yr + 0.35 * period * torch.sin(2 * math.pi * xr / (2 * period)), period)
            < period / 2
        )
    elif name == "grid":
        out = (torch.remainder(xr, period) < 1.0) | (torch.remainder(yr, period) < 1.0)
    else:  # speckles
        out = torch.rand(n, size, size, generator=gen) < 0.3
    return out.float()


def _fill(
    colour: torch.Tensor, pattern: torch.Tensor, size: int, gen: torch.Generator
) -> torch.Tensor:
    """Object fill ``[n, 3, H, W]``: the colour, modulated by a pattern where ``pattern >= 0``."""
    rgb = _RGB[colour] + 0.08 * (torch.rand(len(colour), 3, generator=gen) - 0.5)  # [n, 3]
    lum = rgb.mean(1, keepdim=True)
    second = torch.where(lum > 0.4, 0.35 * rgb, rgb + 0.55 * (1 - rgb))  # contrasting shade
    p = torch.ones(len(colour), size, size)
    for kind in torch.unique(pattern[pattern >= 0]).tolist():
        idx = torch.nonzero(pattern == kind).squeeze(1)
        p[idx] = pattern_masks(kind, len(idx), size, gen)
    p = p[:, None]
    return (rgb[:, :, None, None] * p + second[:, :, None, None] * (1 - p)).clamp(0, 1)


def _coverage(mask: torch.Tensor, ss: int) -> torch.Tensor:
    """Average ``ss x ss`` blocks of a boolean ``[n, S, S]`` mask: ``[n, S/ss, S/ss]`` floats."""
    m = mask.float()[:, None]
    return (torch.nn.functional.avg_pool2d(m, ss) if ss > 1 else m)[:, 0]


def _alpha(
    s: Scenes, slot: int, idx: np.ndarray, size: int, ss: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anti-aliased coverage ``[len(idx), H, W]`` of object ``slot`` in images ``idx``, and
    that of its second-colour part (zero for one-colour shapes)."""
    x, y = _grid(size * ss)
    out, part = torch.zeros(len(idx), size, size), torch.zeros(len(idx), size, size)
    concepts = s.concept[idx, slot]
    for c in np.unique(concepts):
        sel = np.nonzero(concepts == c)[0]
        j = idx[sel]
        sc, cx, cy, an = (torch.as_tensor(getattr(s, f)[j, slot], dtype=torch.float32)[:, None, None]
                          for f in ("scale", "cx", "cy", "angle"))  # fmt: skip
        dx, dy = (x[None] - cx) / sc, (y[None] - cy) / sc
        u = dx * torch.cos(an) + dy * torch.sin(an)  # rotate by -angle into the object frame
        v = -dx * torch.sin(an) + dy * torch.cos(an)
        rows = torch.as_tensor(sel)
        out[rows] = _coverage(shape_mask(OBJECTS[c], u, v), ss)
        second = part_mask(OBJECTS[c], u, v)
        if second is not None:
            part[rows] = _coverage(second, ss)
    return out, part


def _render_chunk(s: Scenes, size: int, ss: int, gen: torch.Generator) -> torch.Tensor:
    """Render all scenes of ``s`` to floats ``[N, 3, H, W]`` in ``[0, 1]``."""
    img = _backgrounds(s, size, gen)
    tex = np.nonzero(s.texture >= 0)[0]
    if len(tex):
        t = torch.as_tensor(s.texture[tex])
        col = torch.as_tensor(s.texture_colour[tex])
        fill = _fill(col, t, size, gen)
        img[torch.as_tensor(tex)] = 0.25 * img[torch.as_tensor(tex)] + 0.75 * fill
    for slot in range(MAX_OBJECTS):
        idx = np.nonzero(s.concept[:, slot] >= 0)[0]
        if not len(idx):
            continue
        alpha, part = (a[:, None] for a in _alpha(s, slot, idx, size, ss))  # [n, 1, H, W]
        pattern = torch.as_tensor(s.pattern[idx, slot])
        fill = _fill(torch.as_tensor(s.colour[idx, slot]), pattern, size, gen)
        fill2 = _fill(torch.as_tensor(s.colour2[idx, slot]), pattern, size, gen)
        ti = torch.as_tensor(idx)
        img[ti] = img[ti] * (1 - alpha) + fill * (alpha - part) + fill2 * part
    return img


def render_scenes(s: Scenes, size: int, supersample: int = 2, seed: int = 0) -> torch.Tensor:
    """Rasterise scenes to ``uint8`` images ``[N, 3, size, size]``, deterministically.

    Args:
        s: Scene parameters.
        size: Image side in pixels.
        supersample: Rasterise object edges at this factor and average down (anti-aliasing).
        seed: Seed of the pixel-level randomness (noise, pattern phases, colour jitter).
    """
    out = torch.empty(len(s), 3, size, size, dtype=torch.uint8)
    for start in range(0, len(s), _CHUNK):
        part = Scenes(
            **{f.name: getattr(s, f.name)[start : start + _CHUNK] for f in dataclasses.fields(s)}
        )
        gen = torch.Generator().manual_seed(seed * 1_000_003 + start)
        img = _render_chunk(part, size, supersample, gen)
        out[start : start + _CHUNK] = (img * 255).round().to(torch.uint8)
    return out
