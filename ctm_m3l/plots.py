"""Pictures of a fitted model as PNGs (matplotlib): the topic space of texts and images (paper
Figure 2) and topic tables per language side by side.  The interactive versions (plotly) are
in :mod:`ctm_m3l.figures`."""
from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .evaluation import jsd_matrix

__all__ = ["topic_space", "plot_topic_space", "topic_table", "plot_topic_table"]

_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def topic_space(thetas: Mapping[str, np.ndarray], ids: Sequence[Any] | None = None, perplexity: float = 30.0,
                random_state: int = 0) -> pd.DataFrame:
    """t-SNE map of the topic distributions of several views.

    Args:
        thetas: ``{view: (n, K)}`` row-aligned distributions (row ``i`` = tuple ``i``; NaN
            rows, tuples without the view, are left out).
        ids: one id per tuple (default: the row number), to link a tuple's views.

    Returns:
        A DataFrame with columns ``view``, ``row``, ``id``, ``x``, ``y``, ``top_topic``.
        Distances are the square root of the Jensen-Shannon divergence (a metric).
    """
    from sklearn.manifold import TSNE

    if not thetas:
        raise ValueError("thetas is empty: give at least one view's topic distributions")
    n = len(next(iter(thetas.values())))
    if any(len(t) != n for t in thetas.values()):
        raise ValueError("every view's thetas must have one row per tuple (row-aligned)")
    ids = list(range(n)) if ids is None else list(ids)
    frames, blocks = [], []
    for view, theta in thetas.items():
        keep = np.flatnonzero(~np.isnan(theta).any(1))
        frames.append(pd.DataFrame({"view": view, "row": keep, "id": [ids[i] for i in keep],
                                    "top_topic": theta[keep].argmax(1)}))
        blocks.append(theta[keep])
    points = np.concatenate(blocks)
    if len(points) < 5:
        raise ValueError("the topic space needs at least 5 items")
    distances = np.sqrt(jsd_matrix(points, points))
    np.fill_diagonal(distances, 0.0)
    coords = TSNE(n_components=2, metric="precomputed", init="random", random_state=random_state,
                  perplexity=min(perplexity, (len(points) - 1) / 3)).fit_transform(distances)
    out = pd.concat(frames, ignore_index=True)
    out["x"], out["y"] = coords[:, 0], coords[:, 1]
    return out


def plot_topic_space(space: pd.DataFrame, path: str | Path | None = None, link: bool = True,
                     title: str = "Topic space", ax=None):
    """Scatter of :func:`topic_space`, coloured by view; ``link`` draws a faint line between
    the views of each tuple.  Saved as PNG when ``path`` is given; returns the figure."""
    import matplotlib

    if ax is None and path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 7), dpi=120)
    if link:
        for _, group in space.groupby("id"):
            if len(group) > 1:
                ax.plot(group["x"], group["y"], color="#999999", alpha=0.25, linewidth=0.6, zorder=1)
    for i, (view, group) in enumerate(space.groupby("view", sort=False)):
        ax.scatter(group["x"], group["y"], s=14, alpha=0.8, label=f"{view} ({len(group)})",
                   color=_COLOURS[i % len(_COLOURS)], zorder=2, edgecolors="none")
    ax.set_title(title)
    ax.set_xticks([]), ax.set_yticks([])
    ax.legend(loc="best", frameon=True)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig


def _thumbnail(path: Any, size: int = 96) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=80)
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
    except (OSError, ValueError):
        return None


def topic_table(model, k: int = 10, languages: Sequence[str] | None = None) -> pd.DataFrame:
    """Aligned topics side by side: one row per topic, one column per language."""
    languages = list(languages or model.language_views)
    return pd.DataFrame({language: [" ".join(words) for words in model.get_topic_lists(k=k, language=language)]
                         for language in languages}).rename_axis("topic")


def plot_topic_table(table: pd.DataFrame, path: str | Path, topics: Sequence[int] | None = None,
                     title: str = "Aligned topics"):
    """Render (some rows of) :func:`topic_table` as a PNG table."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    shown = table if topics is None else table.loc[list(topics)]
    fig, ax = plt.subplots(figsize=(4 + 4 * len(shown.columns), 0.5 + 0.32 * len(shown)), dpi=120)
    ax.axis("off")
    cells = ax.table(cellText=shown.to_numpy(), rowLabels=[str(i) for i in shown.index],
                     colLabels=list(shown.columns), loc="center", cellLoc="left")
    cells.auto_set_font_size(False)
    cells.set_fontsize(9)
    cells.auto_set_column_width(list(range(len(shown.columns))))
    # The title goes above the table as drawn (not above the axes, whose width is only a guess
    # of the text's), and the PNG is cropped to both: no wide empty margins.
    from matplotlib.transforms import Bbox

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = cells.get_window_extent(renderer)
    heading = fig.text(*fig.transFigure.inverted().transform(((box.x0 + box.x1) / 2, box.y1 + 6)), title,
                       ha="center", va="bottom", fontsize=12)
    drawn = Bbox.union([box, heading.get_window_extent(renderer)]).transformed(fig.dpi_scale_trans.inverted())
    fig.savefig(path, bbox_inches=drawn.padded(0.15))
    return fig
