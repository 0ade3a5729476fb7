"""The reproduction's report: Markdown tables (mean ± SD over seeds), ``results.json`` and the
ablation figures, from the runs in the ledger."""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..figures import ablation_figure, write_page
from .config import (
    _BATCH_FIGURES,
    _TABLE4_KEYS,
    _TABLES,
    _TOPIC_FIGURES,
    ReproduceConfig,
    _distinct,
    m3l_loss_label,
)


def _summary(runs: list[dict], keys: list[str]) -> dict[str, tuple[float, float | None]]:
    """``{metric: (mean, standard deviation)}`` over ``runs`` (seeds): the sample standard
    deviation (``ddof=1``), ``None`` for a single run, which has no spread to show."""
    out = {}
    for key in keys:
        values = [r["metrics"][key] for r in runs if key in r["metrics"]]
        if values:
            out[key] = (float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None)
    return out


def _cell(mean: float, std: float | None) -> str:
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def _table(title: str, rows: dict[str, list[dict]], keys: list[str]) -> str:
    """A Markdown table: one row per system, ``mean ± std`` of each metric over its runs."""
    lines = [f"### {title}", "", "| system | n | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for system, found in rows.items():
        summary = _summary(found, keys)
        cells = [_cell(*summary[k]) if k in summary else "-" for k in keys]
        lines.append(f"| {system} | {len(found)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _line_figure(xs, series: dict[str, list[tuple[float, float | None]]], xlabel, ylabel, title):
    """A matplotlib figure of one line per series, ``(mean, sd)`` at each ``x``, error bars
    where any sd is known."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    for label, values in series.items():
        means = np.array([v[0] for v in values])
        stds = np.array([0.0 if v[1] is None else v[1] for v in values])
        ax.errorbar(xs, means, yerr=stds if stds.any() else None, marker="o", capsize=3, label=label)
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel), ax.set_title(title)
    if len(xs) > 1 and min(xs) > 0:
        # Topic numbers and batch sizes double from point to point: a log2 axis spaces them
        # evenly (on a linear one 16, 32 and 64 crowd into the first third of 16-128).
        ax.set_xscale("log", base=2)
        ax.minorticks_off()
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def _line_plot(path, xs, series, xlabel, ylabel, title):
    import matplotlib.pyplot as plt

    fig = _line_figure(xs, series, xlabel, ylabel, title)
    fig.savefig(path)
    plt.close(fig)


def _software_label(record: dict) -> str:
    software = record.get("software")
    if not software:
        return "not recorded (runs finished before versions were kept)"
    return f"ctm_m3l {software['ctm_m3l']}" + (f" at {software['commit']}" if "commit" in software else "") \
        + f", torch {software['torch']}"


_HEADLINE = ("mrr_en_de", "uap_en_image", "uap_de_image", "npmi_en", "npmi_de")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 \
        else f"{seconds / 3600:.1f} h"


def _report(out: Path, config: ReproduceConfig, plan, done: dict, figures: bool) -> dict:
    """``results.json`` and ``tables.md`` (and the figures) from the finished runs of ``plan``."""
    exp: dict[str, Any] = {}
    for experiment, run in plan:
        record = done.get(run.key(config))
        if record is None:
            continue
        found = {"model": record["model"], "metrics": record["metrics"], "seconds": record["seconds"],
                 "seed": run.seed}
        if experiment in ("table1", "table2"):
            exp.setdefault(experiment, {}).setdefault(record["model"], []).append(found)
        elif experiment.endswith("_topics"):
            exp.setdefault(experiment, {}).setdefault(record["model"], {}).setdefault(
                str(run.n_components), []).append(found)
        elif experiment.endswith("_batch"):
            exp.setdefault(experiment, {}).setdefault(str(run.batch_size), []).append(found)
        else:
            name = " / ".join(config.encoder_combos[run.combo]) + (", aligned by MCSE heads" if run.mcse else "")
            exp.setdefault(experiment, {}).setdefault(name, []).append(found)
    distinct = _distinct(plan, config)
    labels = Counter(_software_label(done[key]) for key in distinct if key in done)
    planned, finished = len(distinct), sum(labels.values())
    markdown = ["# M3L-Contrast on Multi30k: the paper's experiments\n",
                f"{finished} of {planned} planned runs finished; mean ± sample standard deviation over the "
                "seeds finished (n = number of seeds; a single seed shows its value alone).\n",
                "Code of the finished runs: " + "; ".join(f"{label} ({count} run{'s' * (count != 1)})"
                                                         for label, count in labels.items()) + ".\n",
                f"M3L-Contrast's loss: {m3l_loss_label(config.m3l_options)} (weights of reconstruction, KL to the prior, "
                "pairwise KL between views (on what), InfoNCE (similarity, temperature)).\n"]
    for key, title, _, _, keys in _TABLES:
        if key in exp:
            markdown.append(_table(title, {model: found for model, found in exp[key].items()}, keys))
    if "table4" in exp:
        markdown.append(_table("Table 4: M3L-Contrast by encoders (en / de / image)", exp["table4"], _TABLE4_KEYS))
    interactive = []  # the same curves as plotly figures, in one page (figures.html)
    for fig, label, _, metric, ylabel in _TOPIC_FIGURES:
        series = exp.get(f"{fig}_topics", {})
        ks = [k for k in config.topic_numbers if all(str(k) in points for points in series.values())]
        if series and ks:
            markdown.append(_table(f"Topic number ({label}): {metric}",
                                   {f"{model}, K={k}": points[str(k)] for model, points in series.items() for k in ks},
                                   [metric]))
            if figures:
                curves = {model: [_summary(points[str(k)], [metric])[metric] for k in ks]
                          for model, points in series.items()}
                _line_plot(out / f"{fig}_topics.png", ks, curves, "topics", ylabel, f"Topic number ({label})")
                interactive.append(ablation_figure(ks, curves, "topics", ylabel, f"Topic number ({label})"))
    for fig, label, _, metric, ylabel in _BATCH_FIGURES:
        points = exp.get(f"{fig}_batch", {})
        sizes = [b for b in config.batch_sizes if str(b) in points]
        if sizes:
            markdown.append(_table(f"Batch size ({label}): {metric}", {f"m3l, batch {b}": points[str(b)]
                                                                      for b in sizes}, [metric]))
            if figures:
                curves = {"m3l": [_summary(points[str(b)], [metric])[metric] for b in sizes]}
                _line_plot(out / f"{fig}_batch.png", sizes, curves, "batch size", ylabel, f"Batch size ({label})")
                interactive.append(ablation_figure(sizes, curves, "batch size", ylabel, f"Batch size ({label})"))
    if figures:
        markdown.append("Figures: fig3_topics.png, fig4_topics.png (topic number), fig5_batch.png, "
                        "fig6_batch.png (batch size), where their experiments ran; figures.html has them "
                        "to explore.\n")
        if interactive:
            write_page(out / "figures.html", figures=interactive, title="Reproduction: the ablations")
    results = {"config": asdict(config), "experiments": exp}
    _write_atomic(out / "results.json", json.dumps(results, indent=1))
    _write_atomic(out / "tables.md", "\n".join(markdown))
    return results


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
