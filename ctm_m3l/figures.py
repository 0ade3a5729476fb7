"""Interactive figures of a fitted model, with plotly (as BERTopic's ``visualize_*``): the
topic space of texts and images, aligned topics per language with their top images, and the
ablation curves.  Each function returns a ``plotly.graph_objects.Figure`` (``fig.show()`` in
a notebook); :func:`write_page` writes figures into one self-contained HTML file (plotly.js
embedded, so it opens offline) where hovering a point of the topic space shows its item (an
image as a thumbnail) and clicking it marks the other views of its tuple.  ``plots.py``
keeps the matplotlib PNGs.
"""
from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .plots import _COLOURS, _thumbnail

__all__ = ["topic_space_figure", "topics_figure", "ablation_figure", "write_page", "explore_page", "TOPIC_SPACE_ID"]

#: The ``div`` id of the topic space in a page from :func:`write_page` (its script finds it by it).
TOPIC_SPACE_ID = "topic-space"
_SIZE, _MARKED = 7, 16


def _wrap(text: str, width: int = 70) -> str:
    """Escaped ``text`` with a ``<br>`` before the word that would pass ``width`` characters."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "<br>".join(html.escape(x) for x in lines + ([line] if line else []))


def _top_topics(theta_row: np.ndarray, n: int) -> list[int]:
    return [int(t) for t in np.argsort(-theta_row)[:n]]


def topic_space_figure(space: pd.DataFrame, thetas: Mapping[str, np.ndarray] | None = None,
                       items: Mapping[str, Sequence[Any]] | None = None,
                       topic_words: Mapping[str, Sequence[Sequence[str]]] | None = None,
                       image_views: Sequence[str] = (), n_topics: int = 2, n_words: int = 5,
                       title: str = "Topic space"):
    """The topic space of :func:`ctm_m3l.plots.topic_space` as a plotly scatter, one trace per
    view (the legend toggles them).

    Hovering a point shows its view, tuple id, item (a text's first words; an image's path, and
    in a page of :func:`write_page` its thumbnail) and its ``n_topics`` top topics with their
    share and ``n_words`` words in every language of ``topic_words``.

    Args:
        space: :func:`~ctm_m3l.plots.topic_space`'s frame (``view``, ``row``, ``id``, ``x``, ``y``,
            ``top_topic``).
        thetas: ``{view: (n, K)}`` the distributions mapped (for the top topics and shares; without
            them only ``top_topic`` is shown).
        items: ``{view: raw items}``, row-aligned (texts, or image paths for ``image_views``).
        topic_words: ``{language: words of every topic}`` (``model.get_topic_lists(k, language=l)``).
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    views = list(dict.fromkeys(space["view"]))
    for i, view in enumerate(views):
        part = space[space["view"] == view]
        hover, extra = [], []
        for rec in part.itertuples(index=False):
            item = items[view][rec.row] if items and view in items else None
            text = "" if item is None else str(item)
            shown = text if view in image_views else (text[:160] + ("..." if len(text) > 160 else ""))
            topics = (_top_topics(thetas[view][rec.row], n_topics) if thetas is not None and view in thetas
                      else [int(rec.top_topic)])
            lines = []
            for t in topics:
                share = f" ({thetas[view][rec.row, t]:.2f})" if thetas is not None and view in thetas else ""
                words = [f"{lang}: {' '.join(ws[t][:n_words])}" for lang, ws in (topic_words or {}).items()]
                lines.append(f"<i>topic {t}{share}</i>" + "".join(f"<br>  {_wrap(w)}" for w in words))
            hover.append(f"<b>{html.escape(view)}</b> · {html.escape(str(rec.id))}<br>{_wrap(shown)}<br>"
                         + "<br>".join(lines))
            extra.append([str(rec.id), view, text if view in image_views else ""])
        fig.add_trace(go.Scatter(
            x=part["x"], y=part["y"], mode="markers", name=f"{view} ({len(part)})",
            marker={"size": [_SIZE] * len(part), "color": _COLOURS[i % len(_COLOURS)], "opacity": 0.8,
                    "line": {"width": [0] * len(part), "color": "#000"}},
            text=hover, hovertemplate="%{text}<extra></extra>", customdata=extra))
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x"},
                      legend={"title": "view (click to hide)"}, hoverlabel={"align": "left"},
                      width=900, height=760, template="plotly_white")
    return fig


def topics_figure(topic_words: Mapping[str, Sequence[Sequence[str]]], topics: Sequence[int] | None = None,
                  images: Mapping[int, Sequence[Any]] | None = None, n_words: int = 8, title: str = "Aligned topics"):
    """Aligned topics side by side: one row per topic, one column of words per language, and a
    column of the topic's top images (``images``: ``{topic: image paths}``, e.g. the photos
    whose image view gives the topic its largest share)."""
    import plotly.graph_objects as go

    languages = list(topic_words)
    topics = list(range(len(next(iter(topic_words.values()))))) if topics is None else list(topics)
    per_image, n_images = 0.9, max((len(v) for v in (images or {}).values()), default=0)
    fig = go.Figure()
    columns = len(languages) + (1 if n_images else 0)
    for c, language in enumerate(languages):
        fig.add_annotation(x=c + 0.02, y=-0.4, text=f"<b>{html.escape(language)}</b>", showarrow=False,
                           xanchor="left", xref="x", yref="y")
        for r, t in enumerate(topics):
            fig.add_annotation(x=c + 0.02, y=r, text=_wrap(" ".join(topic_words[language][t][:n_words]), 36),
                               showarrow=False, xanchor="left", xref="x", yref="y", font={"size": 12})
    for r, t in enumerate(topics):
        fig.add_annotation(x=-0.02, y=r, text=f"<b>{t}</b>", showarrow=False, xanchor="right", xref="x", yref="y")
        for j, path in enumerate((images or {}).get(t, [])):
            source = _thumbnail(path, size=96)
            if source is not None:
                fig.add_layout_image(source=source, x=len(languages) + j * per_image / max(n_images, 1),
                                     y=r - 0.45, sizex=per_image / max(n_images, 1), sizey=0.9,
                                     xref="x", yref="y", xanchor="left", yanchor="top", layer="above")
    if n_images:
        fig.add_annotation(x=len(languages) + 0.02, y=-0.65, text="<b>top images</b>", showarrow=False,
                           xanchor="left", xref="x", yref="y")
    fig.update_xaxes(visible=False, range=[-0.15, columns])
    fig.update_yaxes(visible=False, range=[len(topics) - 0.5, -0.8])
    fig.update_layout(title=title, width=300 * columns + 80,
                      height=80 * len(topics) + 140, template="plotly_white", showlegend=False)
    return fig


def ablation_figure(xs: Sequence[float], series: Mapping[str, Sequence[tuple[float, float | None]]],
                    xlabel: str, ylabel: str, title: str):
    """Mean ± SD over seeds per system against a setting (topic number, batch size), as the
    reproduction's Figures 3-6."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, points in series.items():
        means = [m for m, _ in points]
        sds = [0.0 if s is None else s for _, s in points]
        fig.add_trace(go.Scatter(x=list(xs), y=means, name=name, mode="lines+markers",
                                 error_y={"type": "data", "array": sds, "visible": True}))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel, template="plotly_white",
                      xaxis={"type": "log", "tickvals": list(xs)} if len(xs) > 2 else {})
    return fig


# The page's script: the panel beside the topic space shows the hovered item (an image's
# thumbnail); a click marks every view of the clicked point's tuple, a second click clears.
_SCRIPT = """
(function () {
  var space = document.getElementById(%(id)s);
  var thumbs = %(thumbs)s;
  var size = %(size)d, marked = %(marked)d;
  function describe(point) {
    var id = point.customdata[0], view = point.customdata[1], path = point.customdata[2];
    var body = point.text;
    if (path && thumbs[path]) { body = '<img alt="' + view + '" src="' + thumbs[path] + '"><br>' + body; }
    return body;
  }
  // The panels follow the plot in the page: looked up when used, not while this runs.
  space.on("plotly_hover", function (event) {
    document.getElementById("item-panel").innerHTML = describe(event.points[0]);
  });
  space.on("plotly_click", function (event) {
    var id = event.points[0].customdata[0];
    var clear = space.dataset.marked === id;
    space.dataset.marked = clear ? "" : id;
    var sizes = [], widths = [], views = [];
    space.data.forEach(function (trace) {
      var s = [], w = [];
      trace.customdata.forEach(function (c) {
        var same = !clear && c[0] === id;
        s.push(same ? marked : size); w.push(same ? 2 : 0);
        if (same) { views.push(c[1]); }
      });
      sizes.push(s); widths.push(w);
    });
    Plotly.restyle(space, {"marker.size": sizes, "marker.line.width": widths});
    document.getElementById("tuple-panel").textContent =
      clear ? "" : "tuple " + id + ": " + views.join(", ");
  });
})();
"""


def write_page(path: str | Path, topic_space: Any = None, figures: Sequence[Any] = (),
               title: str = "ctm-m3l", image_paths: Sequence[str] = ()) -> Path:
    """One self-contained HTML file (plotly.js embedded: it opens offline) with the topic space
    (hover panel with thumbnails of ``image_paths``, click marks a tuple) and other figures."""
    import plotly.io as pio

    parts, first = [], True
    if topic_space is not None:
        thumbs = {p: t for p in dict.fromkeys(str(p) for p in image_paths) if (t := _thumbnail(p, 160))}
        script = _SCRIPT % {"id": json.dumps(TOPIC_SPACE_ID), "thumbs": json.dumps(thumbs), "size": _SIZE,
                            "marked": _MARKED}
        plot = pio.to_html(topic_space, full_html=False, include_plotlyjs=True, div_id=TOPIC_SPACE_ID,
                           post_script=script, config={"displaylogo": False})
        parts.append(f'<div class="row"><div>{plot}</div><div class="side"><div id="tuple-panel"></div>'
                     f'<div id="item-panel">Hover a point to see its item; click it to mark its tuple.</div>'
                     f'</div></div>')
        first = False
    for fig in figures:
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=first, config={"displaylogo": False}))
        first = False
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 16px; }}
.row {{ display: flex; gap: 16px; align-items: flex-start; }}
.side {{ width: 340px; font-size: 13px; }}
#tuple-panel {{ font-weight: bold; min-height: 1.2em; margin-bottom: 8px; }}
#item-panel img {{ max-width: 160px; display: block; margin-bottom: 6px; }}
</style></head>
<body><h2>{html.escape(title)}</h2>
{''.join(parts)}
</body></html>
"""
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path


def explore_page(model, preparation, rows: Any, path: str | Path, custom_embeddings: Mapping[str, Any] | None = None,
                 n_topics: int = 20, n_words: int = 8, seed: int = 0, title: str | None = None) -> Path:
    """The page ``ctm-m3l explore`` writes: the topic space of ``rows`` (every view of the model
    they have) and the ``n_topics`` most frequent topics side by side per language, with the
    images that give each its largest share."""
    import warnings

    from .data.io import read_rows
    from .plots import topic_space

    records, folder = read_rows(rows)
    data = preparation.transform(records, custom_embeddings=custom_embeddings)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*their rows are NaN")
        thetas = {v: model.get_thetas(data, view=v, seed=seed) for v in model.views
                  if v in data.view_names and data.has_view(v).any()}
    if not thetas:
        raise ValueError(f"the rows have none of the model's views {model.views}")
    images = [v for v in thetas if v in model.image_views]

    def raw(view):
        out = []
        for record in records:
            value = record.get(view) if isinstance(record, Mapping) else None
            if value is not None and view in images and folder is not None and not Path(str(value)).is_absolute():
                value = str(folder / str(value))
            out.append(value)
        return out

    items = {v: raw(v) for v in thetas}
    space = topic_space(thetas, ids=data.ids, random_state=seed)
    words = {language: model.get_topic_lists(k=n_words, language=language) for language in model.language_views}
    share = np.nanmean(np.concatenate([t[~np.isnan(t).any(1)] for t in thetas.values()]), axis=0)
    topics = [int(t) for t in np.argsort(-share)[:n_topics]]
    top_images: dict[int, list[str]] = {}
    for view in images:
        theta, paths = thetas[view], items[view]
        has = np.flatnonzero(~np.isnan(theta).any(1))
        for t in topics:
            best = has[np.argsort(-theta[has, t])[:3]]
            top_images.setdefault(t, []).extend(str(paths[i]) for i in best if paths[i] is not None)
    space_fig = topic_space_figure(space, thetas=thetas, items=items, topic_words=words, image_views=images,
                                   n_words=5)
    topics_fig = topics_figure(words, topics=topics, images=top_images or None, n_words=n_words,
                               title=f"The {len(topics)} most frequent topics, aligned across languages")
    image_paths = [p for v in images for p in items[v] if p is not None]
    return write_page(path, space_fig, [topics_fig], title=title or "ctm-m3l: topic space", image_paths=image_paths)
