"""The embedding explorer: an interactive scatter of embeddings, as one offline page.

One scatter shows ID images, each OoD set, ID prompts and negative labels of one model at a
time (zero-shot, FLYP, CMA, the λ ablation, or any folder of embeddings), in a joint PCA, along
the modality gap, or, with several models, in one PCA shared by all (where each image's path
across the models is drawn), with a gap-shift α slider. Images can be coloured by any score;
the threshold at a chosen ID recall (95%) outlines the OoD images it still lets through and
counts them per set (FPR95 made visible). Box and lasso selections fill a panel with the
selected points' thumbnails, labels and counts, and a histogram of their scores against the
rest. Toggles draw each ID image's segment to its class prompt and the paths across models; a
search box highlights the points whose label contains a word. Every coordinate and score is
computed beforehand in Python (:mod:`cmakit.pipeline.explore_points`); the page's script
(``explorer.js`` beside this module) only switches between precomputed columns and computes the
threshold from the ID scores shown, so it needs no server.

:func:`explorer_html` returns a self-contained page (Bokeh's JavaScript inlined, the thumbnails
of each group as one inlined sprite sheet, cropped per hovered or selected point), drawn with
WebGL; :func:`write_explorer` writes it atomically; :func:`notebook_view` shows it in a Jupyter
output cell (an ``iframe`` of the same page, so JupyterLab needs no extension). The page writes
a JSON report of its data and of the state of every control into the DOM (``#explorer-summary``)
and any script error into ``data-explorer-errors`` on ``<html>``, for tests and scripts; opened
with ``#selftest`` it drives every control once and records what each changed.
"""

from __future__ import annotations

import dataclasses
import html
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cmakit.common.io import atomic_path
from cmakit.core.scores import score_label
from cmakit.report.explorer_widgets import (
    colorbar_alphas,
    controls,
    page_layout,
    side_panels,
)
from cmakit.report.sprites import thumbnail_atlas

#: Views of the scatter, in the order of the page's view buttons; the shared PCA only with
#: several models.
VIEWS: tuple[str, ...] = ("joint PCA", "gap direction")
SHARED_VIEW = "shared PCA (all models)"
#: Okabe-Ito colour-blind-safe palette: ID images, ID prompts, negative labels, then OoD sets.
PALETTE = {"id": "#0072B2", "prompt": "#D55E00", "neg": "#CC79A7"}
OOD_COLORS = ("#E69F00", "#009E73", "#56B4E9", "#000000", "#F0E442", "#999999")
OOD_MARKERS = ("square", "diamond", "inverted_triangle", "hex", "plus", "star")
#: Most thumbnails the selection panel shows.
MAX_THUMBS = 48
#: Most paths drawn at once (the selected images', else the first few of each image group).
MAX_PATHS, DEFAULT_PATHS = 500, 20


@dataclasses.dataclass(frozen=True)
class Group:
    """One layer of points (the same points for every model).

    Attributes:
        name: Legend name (``"ID images"``, ``"OoD far_textures"``, ``"ID prompts"``, ...).
        kind: ``"id"``, ``"ood"``, ``"prompt"`` or ``"neg"``; images are ``id`` and ``ood``.
        labels: ``[n]`` class, caption or word of each point.
        thumbnails: ``[n, H, W, 3]`` uint8 pixels, or None (no thumbnails).
        pair: ID images: ``[n]`` row of each image's class prompt in the ``prompt`` group, -1
            where that prompt is not drawn; None otherwise.
    """

    name: str
    kind: str
    labels: Sequence[str]
    thumbnails: np.ndarray | None = None
    pair: np.ndarray | None = None

    @property
    def is_image(self) -> bool:
        return self.kind in ("id", "ood")


class Nearest(NamedTuple):
    """The texts nearest each image of a group (as trained, α = 0), nearest first.

    Attributes:
        id_rows, id_cos: ``[n, k]`` rows of the ID prompts (int32) and their cosines (float32).
        neg_rows, neg_cos: ``[n, k']`` the same of the negative labels (``k'`` = 0: none).
    """

    id_rows: np.ndarray
    id_cos: np.ndarray
    neg_rows: np.ndarray
    neg_cos: np.ndarray


@dataclasses.dataclass(frozen=True)
class ModelPoints:
    """One model's positions, scores and neighbours of every group.

    Attributes:
        name: Display name (``"CMA (λ = 0.01)"``).
        coords: view (:data:`VIEWS`, and :data:`SHARED_VIEW` with several models) -> group
            name -> ``[A, n, 2]`` positions, one frame per gap-shift α.
        scores: registered score name -> image group -> ``[A, n]`` scores (higher = more ID).
        nearest: image group -> its :class:`Nearest` ID prompts and negative labels; the page
            names them from ``text_names`` (:func:`explorer_document`).
    """

    name: str
    coords: dict[str, dict[str, np.ndarray]]
    scores: dict[str, dict[str, np.ndarray]]
    nearest: dict[str, Nearest]


def rgba(color: str) -> int:
    """``"#RRGGBB"`` as the 32-bit ``0xRRGGBBFF`` that Bokeh reads from a numeric colour column
    (the page's fill colours are numbers: nothing to parse per point)."""
    return int(color.lstrip("#"), 16) << 8 | 0xFF


def _views(models: Sequence[ModelPoints]) -> list[str]:
    return list(VIEWS) + ([SHARED_VIEW] if len(models) > 1 else [])


def _check(groups: Sequence[Group], models: Sequence[ModelPoints], alphas: Sequence[float]):
    if not groups or not models or not alphas:
        raise ValueError("The explorer needs at least one group, one model and one alpha.")
    if len({g.name for g in groups}) != len(groups):
        raise ValueError(f"Group names must be unique; got {[g.name for g in groups]}.")
    if not models[0].scores:
        raise ValueError("The explorer needs at least one score per image (e.g. 'mcm').")
    for m in models:
        if list(m.scores) != list(models[0].scores):
            raise ValueError(f"{m.name} has scores {list(m.scores)}; {models[0].name} has "
                             f"{list(models[0].scores)}: every model needs the same scores.")  # fmt: skip
        for view in _views(models):
            for g in groups:
                shape = np.shape(m.coords.get(view, {}).get(g.name))
                if shape != (len(alphas), len(g.labels), 2):
                    raise ValueError(
                        f"{m.name}, {view}, {g.name}: coordinates of shape {shape}; expected "
                        f"{(len(alphas), len(g.labels), 2)} (alphas, points, 2)."
                    )


def _source_data(
    g: Group, models: Sequence[ModelPoints], alphas: Sequence[float], color: str
) -> dict:
    """Columns of one group: the drawn ``x, y`` (first model, first view, α nearest 0), one
    hidden column per (model, view, α) and per (score, model, α) that the page's script copies
    into them, and the per-point style columns it rewrites (fill, alpha, size, outline)."""
    a0 = int(np.argmin(np.abs(np.asarray(alphas))))
    n = len(g.labels)
    data: dict = {"label": list(g.labels)}
    for mi, m in enumerate(models):
        for vi, view in enumerate(_views(models)):
            for ai in range(len(alphas)):
                xy = np.asarray(m.coords[view][g.name][ai], dtype=np.float32)
                data[f"x_{mi}_{vi}_{ai}"], data[f"y_{mi}_{vi}_{ai}"] = xy[:, 0], xy[:, 1]
        if g.is_image:
            for si, col in enumerate(m.scores):
                for ai in range(len(alphas)):
                    data[f"s{si}_{mi}_{ai}"] = np.asarray(m.scores[col][g.name][ai], np.float32)
            near = m.nearest[g.name]
            for j in range(near.id_rows.shape[1]):
                data[f"ni{j}_{mi}"], data[f"nc{j}_{mi}"] = near.id_rows[:, j], near.id_cos[:, j]
            for j in range(near.neg_rows.shape[1]):
                data[f"gi{j}_{mi}"], data[f"gc{j}_{mi}"] = near.neg_rows[:, j], near.neg_cos[:, j]
    data["x"], data["y"] = data[f"x_0_0_{a0}"].copy(), data[f"y_0_0_{a0}"].copy()
    if g.is_image:
        data["score"] = data[f"s0_0_{a0}"].copy()
        if g.thumbnails is not None:
            cols = int(np.ceil(np.sqrt(n)))
            data["tx"] = (np.arange(n) % cols * 64).astype(np.int32)
            data["ty"] = (np.arange(n) // cols * 64).astype(np.int32)
    if g.pair is not None:
        data["pair"] = np.asarray(g.pair, dtype=np.int32)
    data.update(fill=np.full(n, rgba(color), np.uint32), fa=np.full(n, 0.55, np.float32),
                sz=np.full(n, 16 if g.kind == "prompt" else 7, np.float32),
                la=np.zeros(n, np.float32))  # fmt: skip
    return data


def _tooltip(g: Group, atlas: tuple[str, int] | None) -> str:
    """The hover template of one group: its sprite sheet cropped at the point's ``tx, ty``, its
    label, and for images the score coloured. The page's script fills ``%ATLAS%`` (the sheet,
    held once in the page) and ``%SCORE%`` (the score's name)."""
    img = ""
    if atlas is not None:
        _, cols = atlas
        rows = int(np.ceil(len(g.labels) / cols))
        img = ('<div style="width:64px;height:64px;image-rendering:pixelated;background:url(%ATLAS%) '
               f'-@tx{{0}}px -@ty{{0}}px / {cols * 64}px {rows * 64}px no-repeat"></div>')  # fmt: skip
    score = "<div>%SCORE% @score{0.000}</div>" if g.is_image else ""
    return f"<div style='max-width:220px'>{img}<div><b>{html.escape(g.name)}</b>: @label</div>{score}</div>"


_PREAMBLE = """<script>
window.explorerErrors = [];
(function () {
  const record = function (msg) {
    window.explorerErrors.push(String(msg));
    document.documentElement.setAttribute("data-explorer-errors", JSON.stringify(window.explorerErrors));
  };
  window.addEventListener("error", function (e) {
    // a panel that grows as it is filled delays a resize notification: benign, not an error
    if (String(e.message).startsWith("ResizeObserver loop")) { return; }
    record(e.message || e);
  });
  window.addEventListener("unhandledrejection", function (e) { record("unhandled rejection: " + e.reason); });
  const original = console.error;
  console.error = function () { record(Array.from(arguments).join(" ")); original.apply(console, arguments); };
})();
</script>
<script>{{ explorer_js | safe }}</script>"""

_TEMPLATE = "{% block preamble %}" + _PREAMBLE + "{% endblock %}"


def _renderers(fig, groups: Sequence[Group]):
    """One scatter per group, styled by the columns the page's script rewrites."""
    from bokeh.models import ColumnDataSource, Legend, LegendItem

    renderers, items, n_ood = [], [], 0
    for g in groups:
        if g.kind == "ood":
            color, marker = OOD_COLORS[n_ood % 6], OOD_MARKERS[n_ood % 6]
            n_ood += 1
        else:
            color = PALETTE[g.kind]
            marker = {"id": "circle", "prompt": "star", "neg": "triangle"}[g.kind]
        src = ColumnDataSource(name=g.name)
        r = fig.scatter("x", "y", source=src, marker=marker, size="sz", fill_color="fill",
                        fill_alpha="fa", line_color="black", line_alpha="la", line_width=1.2)  # fmt: skip
        # the legend's swatch: one undrawn (NaN) point of scalar style; hiding it hides the group
        swatch = fig.scatter(
            [np.nan], [np.nan], marker=marker, size=10, color=color, fill_alpha=0.7
        )
        items.append(LegendItem(label=f"{g.name} ({len(g.labels)})", renderers=[swatch]))
        renderers.append((r, src, color, swatch))
    fig.add_layout(Legend(items=items, click_policy="hide"), "right")
    return renderers


def _plot(groups: Sequence[Group], models: Sequence[ModelPoints], alphas: list[float],
          title: str) -> tuple:  # fmt: skip
    """The scatter (WebGL) with its groups, hover and tap tools, colour bar, and the empty layers
    the page's script fills (pairs, paths and their ends); returns it and its parts by the
    script's names."""
    from bokeh.models import ColumnDataSource, HoverTool, TapTool
    from bokeh.palettes import Viridis256
    from bokeh.plotting import figure

    fig = figure(width=900, height=560, title=title, output_backend="webgl",
                 tools="pan,wheel_zoom,box_zoom,box_select,lasso_select,reset,save",
                 active_scroll="wheel_zoom", active_drag="pan")  # fmt: skip
    drawn = _renderers(fig, groups)
    segments = ColumnDataSource({"x0": [], "y0": [], "x1": [], "y1": []})
    fig.segment("x0", "y0", "x1", "y1", source=segments, line_color=PALETTE["prompt"],
                line_alpha=0.35)  # fmt: skip
    paths = ColumnDataSource({"xs": [], "ys": [], "color": []})
    fig.multi_line("xs", "ys", source=paths, line_color="color", line_width=1.5, line_alpha=0.8)
    ends = ColumnDataSource({"x": [], "y": [], "color": []})
    fig.scatter("x", "y", source=ends, marker="circle_dot", size=9, fill_color="color",
                line_color="black")  # fmt: skip
    # each sprite sheet is held once, by a model that both callbacks reference
    atlases = ColumnDataSource({"group": [], "uri": [], "cols": [], "n": []})
    hovers = []
    for k, (g, (r, src, color, _)) in enumerate(zip(groups, drawn, strict=True)):
        atlas = thumbnail_atlas(g.thumbnails) if g.is_image and g.thumbnails is not None else None
        if atlas is not None:
            for key, value in zip(atlases.data, (k, *atlas, len(g.labels)), strict=True):
                atlases.data[key].append(value)
        src.data = _source_data(g, models, alphas, color)
        hovers.append(HoverTool(renderers=[r], tooltips=_tooltip(g, atlas)))
    image_renderers = [r for g, (r, *_) in zip(groups, drawn, strict=True) if g.is_image]
    fig.add_tools(*hovers, TapTool(renderers=image_renderers))
    return fig, {"sources": [d[1] for d in drawn], "renderers": [d[0] for d in drawn],
                 "swatches": [d[3] for d in drawn], "colors": [d[2] for d in drawn],
                 "fills": [rgba(d[2]) for d in drawn], "palette": [rgba(c) for c in Viridis256],
                 "hovers": hovers, "atlases": atlases,
                 "segments": segments, "paths_src": paths, "path_ends": ends}  # fmt: skip


def explorer_document(groups: Sequence[Group], models: Sequence[ModelPoints],
                      alphas: Sequence[float], *, title: str = "cmakit embedding explorer",
                      text_names: tuple[Sequence[str], Sequence[str]] = ((), ())):  # fmt: skip
    """The explorer as a Bokeh document: figure, controls, side panels, and the page's script.

    Args:
        groups: The layers of points, in drawing order (drawn first = bottom).
        models: One entry per model, in path order; every model holds every group, view and
            score.
        alphas: The gap-shift fractions of the coordinate frames, ascending.
        title: The page's heading.
        text_names: ``([K] ID prompt names, [M] negative-label words)`` that the nearest texts
            of a tapped image are listed by (default: their row numbers).

    Raises:
        ValueError: no groups, models, alphas or scores, duplicate group names, models with
            different scores, or coordinates whose shape is not ``[len(alphas), n, 2]``.
    """
    from bokeh.document import Document
    from bokeh.events import DocumentReady
    from bokeh.models import CustomJS

    _check(groups, models, alphas)
    alphas, views, scores = [float(a) for a in alphas], _views(models), list(models[0].scores)
    labels = [score_label(s) for s in scores]
    fig, plot = _plot(groups, models, alphas, title)
    widgets = controls([m.name for m in models], views, alphas, labels)
    panels = side_panels()
    ctx = {**plot, **widgets, **panels, "names": [g.name for g in groups],
           "kinds": [g.kind for g in groups], "alphas": alphas, "views": views,
           "shared_view": views.index(SHARED_VIEW) if SHARED_VIEW in views else -1,
           "score_keys": scores, "score_labels": labels, "n_models": len(models),
           "colorbar_alphas": list(colorbar_alphas(1.0)), "max_paths": MAX_PATHS,
           "path_default": DEFAULT_PATHS, "max_thumbs": MAX_THUMBS,
           "id_names": list(text_names[0]), "neg_names": list(text_names[1])}  # fmt: skip
    call = "{" + ", ".join(ctx) + "}"
    update = CustomJS(args=ctx, code=f"cmakitExplorer.update({call}, cb_obj);")
    changes = {"model": "value", "view": "active", "slider": "value", "colour": "value",
               "recall": "value", "search": "value", "pairs": "active", "paths": "active"}  # fmt: skip
    for name, attr in changes.items():
        widgets[name].js_on_change(attr, update)
    widgets["search"].js_on_change("value_input", update)  # as the user types
    for src in ctx["sources"]:
        src.selected.js_on_change("indices", update)
    doc = Document(title=title)
    doc.add_root(page_layout(fig, widgets, panels))
    doc.js_on_event(DocumentReady, CustomJS(args=ctx, code=f"cmakitExplorer.init({call});"))
    return doc


def explorer_html(groups: Sequence[Group], models: Sequence[ModelPoints],
                  alphas: Sequence[float], *, title: str = "cmakit embedding explorer",
                  text_names: tuple[Sequence[str], Sequence[str]] = ((), ())) -> str:  # fmt: skip
    """The explorer as one self-contained HTML page (Bokeh's JavaScript and CSS inlined); the
    arguments are :func:`explorer_document`'s."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    doc = explorer_document(groups, models, alphas, title=title, text_names=text_names)
    script = resources.files("cmakit.report").joinpath("explorer.js").read_text(encoding="utf-8")
    return file_html(doc, INLINE, title=title, template=_TEMPLATE,
                     template_variables={"explorer_js": script})  # fmt: skip


def write_explorer(path: str | os.PathLike, groups: Sequence[Group],
                   models: Sequence[ModelPoints], alphas: Sequence[float], *,
                   title: str = "cmakit embedding explorer",
                   text_names: tuple[Sequence[str], Sequence[str]] = ((), ())) -> Path:  # fmt: skip
    """Write :func:`explorer_html` atomically to ``path`` (e.g. ``figures/explorer.html``)."""
    page = explorer_html(groups, models, alphas, title=title, text_names=text_names)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return Path(path)


def notebook_view(page: str | os.PathLike, *, height: int = 900):
    """Show an explorer page in a Jupyter output cell: an ``iframe`` whose ``srcdoc`` is the
    page, so JupyterLab needs no Bokeh extension. ``page`` is the HTML text or a file path.

    JupyterLab runs the scripts of outputs made in this session only: in an executed notebook
    opened later, run the cell again (or open the HTML file in a browser).
    """
    from IPython.display import HTML

    text = page if isinstance(page, str) and page.lstrip().startswith("<") else None
    text = Path(page).read_text(encoding="utf-8") if text is None else text
    return HTML(f'<div><iframe srcdoc="{html.escape(text, quote=True)}" width="100%" '
                f'height="{int(height)}" style="border:0"></iframe></div>')  # fmt: skip
