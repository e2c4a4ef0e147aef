"""The explorer page's controls and side panels (Bokeh widgets), and its layout.

:func:`controls` makes the widgets that choose what the scatter shows (model, view, α, colour
score, threshold recall, search, pairs and paths toggles); :func:`side_panels` the threshold
summary, the score histogram with its threshold line, the selection panel and the details of a
tapped image; :func:`page_layout` places them around the scatter. What each does is the page
script's (``explorer.js``); :mod:`cmakit.report.explorer` wires them to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: The ID recall of the operating threshold the page opens with (FPR95's).
RECALL = 0.95

HELP = (
    "Each model's embeddings: <b>joint PCA</b> (top two principal axes of all groups of the model "
    "as trained), <b>gap direction</b> (x: ID image centroid minus ID prompt centroid; y: top "
    "orthogonal principal axis) or, with several models, <b>shared PCA</b> (one set of axes for "
    "all models, where <b>paths</b> join each image's positions under them, in model order, and "
    "end in a dot at the last). α moves images by −α/2·g and texts by +α/2·g, then re-normalises "
    "(α = 1: the centroids meet). <b>Colour by</b> a score: the threshold keeps the chosen share "
    "of the ID images shown (score ≥ t) and outlines the OoD images it lets through. <b>Pairs</b> "
    "join each ID image to its class prompt. <b>Search</b> highlights the points whose label "
    "contains the text. Box-select or lasso (toolbar) to list points; tap an image for its "
    "nearest texts; click a legend entry to hide a group."
)


def controls(model_names: Sequence[str], views: Sequence[str], alphas: Sequence[float],
             score_labels: Sequence[str]) -> dict:  # fmt: skip
    """The widgets that choose what the scatter shows, by the page script's names."""
    from bokeh.models import RadioButtonGroup, Select, Slider, TextInput, Toggle

    a0 = alphas[int(np.argmin(np.abs(alphas)))]
    step = min(np.diff(alphas)) if len(alphas) > 1 else 1.0
    return {
        "model": Select(title="model", value=model_names[0], options=list(model_names)),
        "view": RadioButtonGroup(labels=list(views), active=0),
        "slider": Slider(title="gap closed post hoc, α", start=alphas[0], value=a0,
                         end=alphas[-1] if len(alphas) > 1 else alphas[0] + 1.0,
                         step=float(step), disabled=len(alphas) == 1),
        "colour": Select(title="colour by", value="group", options=["group", *score_labels]),
        "recall": Slider(title="threshold at ID recall", start=0.5, end=1.0, step=0.01,
                         value=RECALL),
        "search": TextInput(title="search (class, word, negative label)",
                            placeholder="e.g. a class name"),
        "pairs": Toggle(label="pairs: ID image → class prompt", active=False),
        "paths": Toggle(label="paths across models", active=False, disabled=len(model_names) < 2),
    }  # fmt: skip


def side_panels() -> dict:
    """The threshold summary, the histogram of the scores (selected against the rest, with the
    threshold as a line, over the points' colour scale), the selection panel and the tapped
    image's details."""
    from bokeh.models import ColorBar, ColumnDataSource, Div, LinearColorMapper, Span
    from bokeh.palettes import Viridis256
    from bokeh.plotting import figure

    hist_fig = figure(width=380, height=280, title="scores", tools="", toolbar_location=None)
    bars = {}
    for name, color in (("rest", "#999999"), ("selected", "#0072B2")):
        bars[name] = ColumnDataSource({"left": [], "right": [], "top": [], "bottom": []})
        hist_fig.quad(source=bars[name], left="left", right="right", top="top", bottom="bottom",
                      fill_color=color, fill_alpha=0.5, line_alpha=0, legend_label=name)  # fmt: skip
    hist_fig.legend.location = "top_left"
    span = Span(dimension="height", line_color="#D55E00", line_width=2, visible=False)
    hist_fig.add_layout(span)
    # the colour scale of the scatter, under the histogram of the same score; out of the
    # scatter's figure, since showing it there laid out (and redrew) every point again
    mapper = LinearColorMapper(palette=Viridis256, low=0, high=1)
    colorbar = ColorBar(color_mapper=mapper, orientation="horizontal", height=8,
                        title="colour scale of the points", **colorbar_alphas(0.0))  # fmt: skip
    hist_fig.add_layout(colorbar, "below")
    return {"hist_fig": hist_fig, "hist_items": list(hist_fig.legend[0].items),
            "mapper": mapper, "colorbar": colorbar,
            "hist_sel": bars["selected"], "hist_rest": bars["rest"], "span": span,
            "thresh_div": Div(width=380), "panel": Div(width=380), "details": Div(width=900)}  # fmt: skip


def page_layout(fig, widgets: dict, panels: dict):
    """The scatter with its controls above and its details below; the side panels at its right."""
    from bokeh.layouts import column, row
    from bokeh.models import Div

    w, p = widgets, panels
    return row(
        column(Div(text=HELP, width=900), row(w["model"], w["view"], w["slider"]),
               row(w["colour"], w["recall"], w["search"]), row(w["pairs"], w["paths"]), fig,
               p["details"]),
        column(p["thresh_div"], p["hist_fig"], p["panel"]),
    )  # fmt: skip


def colorbar_alphas(alpha: float) -> dict[str, float]:
    """Every alpha of a colour bar: it is shown and hidden by these, since a change of its
    visibility would lay its figure out again."""
    keys = ("scale_alpha", "bar_line_alpha", "major_label_text_alpha", "major_tick_line_alpha",
            "minor_tick_line_alpha", "title_text_alpha", "border_line_alpha",
            "background_fill_alpha")  # fmt: skip
    return dict.fromkeys(keys, alpha)
