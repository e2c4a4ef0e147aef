"""The embedding explorer: an interactive scatter of one run's embeddings, as an offline page.

One scatter shows ID images, each OoD set, ID prompts and negative labels of one model at a
time (zero-shot, FLYP, CMA, the λ ablation), in a joint PCA or along the modality gap, with a
gap-shift α slider. Hovering an image shows its thumbnail, class or caption and its MCM and
NegLabel scores; tapping it lists its nearest ID prompts and negative labels. Every coordinate
and score is computed beforehand in Python (:mod:`cmakit.pipeline.explore`) and passed here as
plain arrays; the page only switches between precomputed columns, so it needs no server.

:func:`explorer_html` returns a self-contained page (Bokeh's JavaScript inlined, thumbnails as
``data:`` PNGs), :func:`write_explorer` writes it atomically, :func:`notebook_view` shows it in
a Jupyter output cell (an ``iframe`` of the same page, so JupyterLab needs no extension).
Bokeh was chosen because its hover tool takes an HTML template (thumbnails on hover) and
``file_html`` with ``INLINE`` resources exports a page that opens offline in any browser.
The page writes a JSON summary of its data (points per group) and any script errors into the
DOM (``#explorer-summary``, ``data-explorer-errors`` on ``<html>``) for tests and scripts;
opened with ``#selftest`` it also drives its controls once and records what they changed.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cmakit.common.io import atomic_path
from cmakit.core.scores import score_label

#: Views of the scatter, in the order of the page's view buttons.
VIEWS: tuple[str, ...] = ("joint PCA", "gap direction")
#: Scores shown on hover (registered names; labels from :data:`cmakit.core.scores.SCORE_LABELS`).
SCORES: tuple[str, ...] = ("mcm", "neglabel")
#: Okabe-Ito colour-blind-safe palette: ID images, ID prompts, negative labels, then OoD sets.
PALETTE = {"id": "#0072B2", "prompt": "#D55E00", "neg": "#CC79A7"}
OOD_COLORS = ("#E69F00", "#009E73", "#56B4E9", "#000000", "#F0E442", "#999999")
OOD_MARKERS = ("square", "diamond", "inverted_triangle", "hex", "plus", "star")


@dataclasses.dataclass(frozen=True)
class Group:
    """One layer of points (the same points for every model).

    Attributes:
        name: Legend name (``"ID images"``, ``"OoD: far_textures"``, ``"ID prompts"``, ...).
        kind: ``"id"``, ``"ood"``, ``"prompt"`` or ``"neg"``; images are ``id`` and ``ood``.
        labels: ``[n]`` class, caption or word of each point.
        thumbnails: ``[n, H, W, 3]`` uint8 pixels, or None (no thumbnails on hover).
    """

    name: str
    kind: str
    labels: Sequence[str]
    thumbnails: np.ndarray | None = None

    @property
    def is_image(self) -> bool:
        return self.kind in ("id", "ood")


@dataclasses.dataclass(frozen=True)
class ModelPoints:
    """One model's positions, scores and neighbours of every group.

    Attributes:
        name: Display name (``"CMA (λ = 0.01)"``).
        coords: view (one of :data:`VIEWS`) -> group name -> ``[A, n, 2]`` positions, one frame
            per gap-shift α.
        scores: score column (``"mcm"``, ``"neglabel"``) -> image group -> ``[A, n]`` scores.
        nearest: image group -> ``[n]`` pairs ``(nearest ID prompts, nearest negative
            labels)`` of each image (as trained, α = 0), each already formatted as one string.
    """

    name: str
    coords: dict[str, dict[str, np.ndarray]]
    scores: dict[str, dict[str, np.ndarray]]
    nearest: dict[str, list[tuple[str, str]]]


def thumbnail_uri(pixels: np.ndarray) -> str:
    """A ``data:image/png;base64`` URI of ``[H, W, 3]`` uint8 pixels."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _check(groups: Sequence[Group], models: Sequence[ModelPoints], alphas: Sequence[float]):
    if not groups or not models or not alphas:
        raise ValueError("The explorer needs at least one group, one model and one alpha.")
    if len({g.name for g in groups}) != len(groups):
        raise ValueError(f"Group names must be unique; got {[g.name for g in groups]}.")
    for m in models:
        for view in VIEWS:
            for g in groups:
                shape = np.shape(m.coords[view][g.name])
                if shape != (len(alphas), len(g.labels), 2):
                    raise ValueError(
                        f"{m.name}, {view}, {g.name}: coordinates of shape {shape}; expected "
                        f"{(len(alphas), len(g.labels), 2)} (alphas, points, 2)."
                    )


def _source_data(g: Group, models: Sequence[ModelPoints], alphas: Sequence[float]) -> dict:
    """Columns of one group: the shown ``x, y`` (first model, first view, α nearest 0) and one
    hidden column per (model, view, α) that the page's script copies into them."""
    a0 = int(np.argmin(np.abs(np.asarray(alphas))))
    data: dict = {"label": list(g.labels), "group": [g.name] * len(g.labels)}
    for mi, m in enumerate(models):
        for vi, view in enumerate(VIEWS):
            for ai in range(len(alphas)):
                xy = np.asarray(m.coords[view][g.name][ai], dtype=np.float32)
                data[f"x_{mi}_{vi}_{ai}"], data[f"y_{mi}_{vi}_{ai}"] = xy[:, 0], xy[:, 1]
        if g.is_image:
            for col in SCORES:
                for ai in range(len(alphas)):
                    data[f"{col}_{mi}_{ai}"] = np.asarray(m.scores[col][g.name][ai], np.float32)
            data[f"nid_{mi}"] = [p for p, _ in m.nearest[g.name]]
            data[f"nneg_{mi}"] = [n for _, n in m.nearest[g.name]]
    data["x"], data["y"] = data[f"x_0_0_{a0}"].copy(), data[f"y_0_0_{a0}"].copy()
    if g.is_image:
        for col in SCORES:
            data[col] = data[f"{col}_0_{a0}"].copy()
        data["near_id"], data["near_neg"] = list(data["nid_0"]), list(data["nneg_0"])
        if g.thumbnails is not None:
            data["thumb"] = [thumbnail_uri(p) for p in g.thumbnails]
    return data


_UPDATE_JS = """
const m = Math.max(0, model.options.indexOf(model.value));
const v = view.active;
let a = 0;
for (let i = 0; i < alphas.length; i++) {
  if (Math.abs(alphas[i] - slider.value) < Math.abs(alphas[a] - slider.value)) { a = i; }
}
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
let shown = null;
for (const s of sources) {
  const d = s.data;
  d.x = d[`x_${m}_${v}_${a}`];
  d.y = d[`y_${m}_${v}_${a}`];
  if (`nid_${m}` in d) {
    for (const col of scores) { d[col] = d[`${col}_${m}_${a}`]; }
    d.near_id = d[`nid_${m}`];
    d.near_neg = d[`nneg_${m}`];
    if (s.selected.indices.length > 0) { shown = [s, s.selected.indices[0]]; }
  }
  s.change.emit();
}
if (shown === null) {
  details.text = "<i>Tap an image to list its nearest ID prompts and negative labels.</i>";
} else {
  const [s, i] = shown;
  const d = s.data;
  const img = ("thumb" in d) ? `<img src="${d.thumb[i]}" width="96" height="96" style="image-rendering:pixelated;float:left;margin-right:8px">` : "";
  const sc = scores.map((c, k) => `${labels[k]} ${Number(d[c][i]).toFixed(3)}`).join(" · ");
  details.text = `${img}<b>${esc(d.group[i])}</b>: ${esc(d.label[i])}<br>${esc(model.value)}, α = ${alphas[a]}<br>${sc}` +
    `<br style="clear:both"><b>nearest ID prompts</b>: ${esc(d.near_id[i])}` +
    `<br><b>nearest negative labels</b>: ${esc(d.near_neg[i])}`;
}
"""

_SUMMARY_JS = """
const summary = {groups: {}, models: model.options.length, alphas: alphas.length,
                 root_views: Bokeh.index ? Object.keys(Bokeh.index).length : 0};
for (let k = 0; k < sources.length; k++) { summary.groups[names[k]] = sources[k].data.x.length; }
const write = () => {
  let el = document.getElementById("explorer-summary");
  if (el === null) {
    el = document.createElement("script");
    el.type = "application/json";
    el.id = "explorer-summary";
    document.body.appendChild(el);
  }
  el.textContent = JSON.stringify(summary);
};
write();
if (window.location.hash === "#selftest") {
  // Drive the controls as a user would: last model, gap view, largest alpha, tap an image.
  // Callbacks run asynchronously, so read the result a moment later.
  const s = sources.find((src) => "near_id" in src.data);
  const m = model.options.length - 1, a = alphas.length - 1;
  const before = s.data.x[0];
  model.value = model.options[m];
  view.active = 1;
  slider.value = alphas[a];
  s.selected.indices = [0];
  setTimeout(() => {
    summary.selftest = {group: s.name, x_before: before, x_after: s.data.x[0],
                        x_expected: s.data[`x_${m}_1_${a}`][0], details: details.text};
    write();
  }, 500);
}
"""

_PREAMBLE = """<script>
window.explorerErrors = [];
(function () {
  const record = function (msg) {
    window.explorerErrors.push(String(msg));
    document.documentElement.setAttribute("data-explorer-errors", JSON.stringify(window.explorerErrors));
  };
  window.addEventListener("error", function (e) { record(e.message || e); });
  window.addEventListener("unhandledrejection", function (e) { record("unhandled rejection: " + e.reason); });
  const original = console.error;
  console.error = function () { record(Array.from(arguments).join(" ")); original.apply(console, arguments); };
})();
</script>"""

_TEMPLATE = "{% block preamble %}" + _PREAMBLE + "{% endblock %}"


def explorer_document(groups: Sequence[Group], models: Sequence[ModelPoints],
                    alphas: Sequence[float], *, title: str = "cmakit embedding explorer"):  # fmt: skip
    """The explorer as a Bokeh document: figure, controls, details panel, and a script that
    writes the page's data summary once the document is ready.

    Args:
        groups: The layers of points, in drawing order (drawn first = bottom).
        models: One entry per model; every model holds every group and view.
        alphas: The gap-shift fractions of the coordinate frames, ascending.
        title: The page's heading.

    Raises:
        ValueError: no groups, models or alphas, duplicate group names, or coordinates whose
            shape is not ``[len(alphas), n, 2]``.
    """
    from bokeh.document import Document
    from bokeh.events import DocumentReady
    from bokeh.layouts import column, row
    from bokeh.models import (
        ColumnDataSource,
        CustomJS,
        Div,
        HoverTool,
        RadioButtonGroup,
        Select,
        Slider,
        TapTool,
    )
    from bokeh.plotting import figure

    _check(groups, models, alphas)
    alphas = [float(a) for a in alphas]
    fig = figure(width=900, height=540, tools="pan,wheel_zoom,box_zoom,reset,save",
                 active_scroll="wheel_zoom", title=title)  # fmt: skip
    sources, image_renderers, text_renderers = [], [], []
    n_ood = 0
    for g in groups:
        src = ColumnDataSource(_source_data(g, models, alphas), name=g.name)
        if g.kind == "ood":
            color, marker = OOD_COLORS[n_ood % 6], OOD_MARKERS[n_ood % 6]
            n_ood += 1
        else:
            color = PALETTE[g.kind]
            marker = {"id": "circle", "prompt": "star", "neg": "triangle"}[g.kind]
        size = 16 if g.kind == "prompt" else 7
        r = fig.scatter("x", "y", source=src, marker=marker, size=size, color=color,
                        fill_alpha=0.9 if g.kind == "prompt" else 0.55, line_alpha=0.9,
                        legend_label=f"{g.name} ({len(g.labels)})")  # fmt: skip
        (image_renderers if g.is_image else text_renderers).append(r)
        sources.append(src)
    thumbs = any(g.thumbnails is not None for g in groups if g.is_image)
    img = ('<img src="@thumb" width="64" height="64" style="image-rendering:pixelated">'
           if thumbs else "")  # fmt: skip
    fig.add_tools(
        HoverTool(renderers=image_renderers, tooltips=f"<div style='max-width:220px'>{img}"
                  "<div><b>@group</b>: @label</div>"
                  "<div>MCM @mcm{0.000} · NegLabel @neglabel{0.000}</div></div>"),
        HoverTool(renderers=text_renderers, tooltips="<div><b>@group</b>: @label</div>"),
        TapTool(renderers=image_renderers),
    )  # fmt: skip
    fig.legend.click_policy = "hide"
    fig.legend.location = "top_left"
    fig.add_layout(fig.legend[0], "right")
    model = Select(title="model", value=models[0].name, options=[m.name for m in models])
    view = RadioButtonGroup(labels=list(VIEWS), active=0)
    a0 = alphas[int(np.argmin(np.abs(alphas)))]
    step = min(np.diff(alphas)) if len(alphas) > 1 else 1.0
    slider = Slider(title="gap closed post hoc, α", start=alphas[0], value=a0,
                    end=alphas[-1] if len(alphas) > 1 else alphas[0] + 1.0, step=float(step),
                    disabled=len(alphas) == 1)  # fmt: skip
    details = Div(text="<i>Tap an image to list its nearest ID prompts and negative labels.</i>",
                  width=900)  # fmt: skip
    args = {"sources": sources, "model": model, "view": view, "slider": slider,
            "alphas": alphas, "details": details, "scores": list(SCORES),
            "labels": [score_label(c) for c in SCORES]}  # fmt: skip
    update = CustomJS(args=args, code=_UPDATE_JS)
    model.js_on_change("value", update)
    view.js_on_change("active", update)
    slider.js_on_change("value", update)
    for src in sources:
        src.selected.js_on_change("indices", update)
    help_text = Div(width=900, text=(
        "Each model's embeddings: <b>joint PCA</b> (top two principal axes of all groups of the "
        "model as trained) or <b>gap direction</b> (x: ID image centroid minus ID prompt "
        "centroid; y: top orthogonal principal axis). α moves images by −α/2·g and texts by "
        "+α/2·g, then re-normalises (α = 1: the centroids meet); the axes stay fixed. Click a "
        "legend entry to hide a group."))  # fmt: skip
    layout = column(help_text, row(model, view, slider), fig, details)
    summary = CustomJS(args={**args, "names": [g.name for g in groups]}, code=_SUMMARY_JS)
    doc = Document(title=title)
    doc.add_root(layout)
    doc.js_on_event(DocumentReady, summary)
    return doc


def explorer_html(groups: Sequence[Group], models: Sequence[ModelPoints],
                  alphas: Sequence[float], *, title: str = "cmakit embedding explorer") -> str:  # fmt: skip
    """The explorer as one self-contained HTML page (Bokeh's JavaScript and CSS inlined)."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    doc = explorer_document(groups, models, alphas, title=title)
    return file_html(doc, INLINE, title=title, template=_TEMPLATE)


def write_explorer(path: str | os.PathLike, groups: Sequence[Group],
                   models: Sequence[ModelPoints], alphas: Sequence[float], *,
                   title: str = "cmakit embedding explorer") -> Path:  # fmt: skip
    """Write :func:`explorer_html` atomically to ``path`` (e.g. ``figures/explorer.html``)."""
    page = explorer_html(groups, models, alphas, title=title)
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
