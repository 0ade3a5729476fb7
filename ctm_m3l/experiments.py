"""The paper's experiments on Multi30k: Tables 1, 2 and 4 and the topic-number and batch-size
ablations (Figures 3-6), with several seeds, as JSON, Markdown tables and line plots."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data import M3LDataPreparation, load_multi30k
from .evaluation import evaluate
from .views import ImageView, TextView

__all__ = ["ReproduceConfig", "reproduce"]


@dataclass
class ReproduceConfig:
    """What to run.  The defaults are the paper's; :meth:`quick` is a small version."""

    n_train: int | None = None            # None: all 29,000 training tuples
    n_test: int | None = None             # None: all 1,014 validation tuples (242 with an image)
    n_components: int = 100
    num_epochs: int = 100
    pltm_iterations: int = 1000
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    topic_numbers: list[int] = field(default_factory=lambda: [25, 50, 100])
    batch_sizes: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    # (en encoder, de encoder, image encoder); offline by default, add e.g.
    # ("clip-ViT-B-32-multilingual-v1", "clip-ViT-B-32-multilingual-v1", "clip-ViT-B-32") with network.
    encoder_combos: list[tuple[str, str, str]] = field(
        default_factory=lambda: [("offline:minilm", "offline:minilm", "offline:efficientnet-lite0")])

    @classmethod
    def quick(cls) -> "ReproduceConfig":
        return cls(n_train=1500, n_test=150, n_components=20, num_epochs=10, pltm_iterations=100, seeds=[0],
                   topic_numbers=[10, 20], batch_sizes=[16, 32])


def _prepare(root, config: ReproduceConfig, combo, cache_dir, device):
    en, de, image = combo
    prep = M3LDataPreparation([TextView("en", encoder=en), TextView("de", encoder=de),
                               ImageView("image", encoder=image)], cache_dir=cache_dir, device=device)
    train = prep.fit(load_multi30k("train", root=root, limit=config.n_train))
    test = prep.transform(load_multi30k("val", root=root, limit=config.n_test))
    return prep, train, test


def run_system(name, views, train, test, n_components, num_epochs, seed, batch_size=None, device=None,
               lr: float = 2e-3, progress_bar: bool = False) -> dict:
    """Build system ``name`` (see ``cli.build_system``), fit it on ``train``, evaluate on ``test``:
    ``{"model", "metrics", "seconds"}``."""
    from .cli import build_system

    start = time.perf_counter()
    system = build_system(name, views, train, n_components, num_epochs, seed, batch_size, device, lr=lr)
    if name == "m3l":
        system.fit(train, progress_bar=progress_bar)
    else:
        system.fit(train)
    return {"model": system.name, "metrics": evaluate(system, train, test, seed=seed),
            "seconds": time.perf_counter() - start}


def _summary(runs: list[dict], keys: list[str]) -> dict[str, tuple[float, float]]:
    out = {}
    for key in keys:
        values = [r["metrics"][key] for r in runs if key in r["metrics"]]
        if values:
            out[key] = (float(np.mean(values)), float(np.std(values)))
    return out


def _table(title: str, rows: dict[str, dict[str, tuple[float, float]]], keys: list[str]) -> str:
    lines = [f"### {title}", "", "| system | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for system, summary in rows.items():
        cells = [f"{summary[k][0]:.3f} ± {summary[k][1]:.3f}" if k in summary else "-" for k in keys]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _line_plot(path, xs, series: dict[str, list[tuple[float, float]]], xlabel, ylabel, title):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    for label, values in series.items():
        means, stds = np.array([v[0] for v in values]), np.array([v[1] for v in values])
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel), ax.set_title(title)
    ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def reproduce(root: str | Path | None, out: str | Path, config: ReproduceConfig | None = None,
              cache_dir: str | Path | None = None, device: Any = None, log=print) -> dict:
    """Run every experiment of ``config`` and write ``results.json``, ``tables.md`` and the
    figures into ``out``.  Returns the results."""
    config = config or ReproduceConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"config": asdict(config), "experiments": {}}
    markdown = ["# M3L-Contrast on Multi30k: the paper's experiments\n"]
    exp = results["experiments"]

    def runs(name, views, train, test, k, seeds, **kw):
        found = [run_system(name, views, train, test, k, config.pltm_iterations if name == "pltm" else config.num_epochs,
                      seed, device=device, **kw) for seed in seeds]
        log(f"  {found[0]['model']}: " + ", ".join(f"{key}={value:.3f}" for key, value in
                                                     sorted(found[0]["metrics"].items())[:6]))
        return found

    for c, combo in enumerate(config.encoder_combos):
        log(f"encoders {combo}: preparing data")
        prep, train, test = _prepare(root, config, combo, cache_dir, device)
        views_all = prep.views
        views_text = [v for v in views_all if v.kind == "text"]
        if c == 0:
            tables = (
                ("table1", "Table 1: multilingual (en, de)", views_text, ("pltm", "zeroshot", "zeroshot-kd", "m3l"),
                 ["npmi_en", "npmi_de", "mrr_en_de", "jsd_en_de"]),
                ("table2", "Table 2: multilingual and multimodal (en, de, image)", views_all,
                 ("zeroshot", "zeroshot-kd", "m3l"),
                 ["npmi_en", "npmi_de", "uap_en_image", "jsd_en_image", "uap_de_image", "jsd_de_image"]),
            )
            for key, title, views, systems, keys in tables:
                summary = {}
                for name in systems:
                    log(f"{title.split(':')[0].lower()}: {name}")
                    found = runs(name, views, train, test, config.n_components, config.seeds)
                    exp.setdefault(key, {})[found[0]["model"]] = found
                    summary[found[0]["model"]] = _summary(found, keys)
                markdown.append(_table(title, summary, keys))
            fig = {"fig3": ("en,de", views_text, "mrr_en_de", "MRR en->de"),
                   "fig4": ("en,de,image", views_all, "uap_en_image", "UAP en->image")}
            for key, (label, views, metric, ylabel) in fig.items():
                series = {}
                for name in ("zeroshot", "m3l"):
                    points = []
                    for k in config.topic_numbers:
                        log(f"topic ablation ({label}): {name}, K={k}")
                        found = runs(name, views, train, test, k, config.seeds)
                        exp.setdefault(f"{key}_topics", {}).setdefault(found[0]["model"], {})[str(k)] = found
                        points.append(_summary(found, [metric])[metric])
                    series[found[0]["model"]] = points
                _line_plot(out / f"{key}_topics.png", config.topic_numbers, series, "topics", ylabel,
                           f"Topic number ({label})")
            for key, label, views, metric, ylabel in (("fig5", "en,de", views_text, "mrr_en_de", "MRR en->de"),
                                                      ("fig6", "en,de,image", views_all, "uap_en_image",
                                                       "UAP en->image")):
                points = []
                for b in config.batch_sizes:
                    log(f"batch ablation ({label}): m3l, batch {b}")
                    found = runs("m3l", views, train, test, config.n_components, config.seeds, batch_size=b)
                    exp.setdefault(f"{key}_batch", {})[str(b)] = found
                    points.append(_summary(found, [metric])[metric])
                _line_plot(out / f"{key}_batch.png", config.batch_sizes, {"m3l": points}, "batch size", ylabel,
                           f"Batch size ({label})")
        log(f"table 4: m3l with encoders {combo}")
        found = runs("m3l", views_all, train, test, config.n_components, config.seeds)
        exp.setdefault("table4", {})[" / ".join(combo)] = found
    keys4 = ["mrr_en_de", "jsd_en_de", "uap_en_image", "jsd_en_image", "uap_de_image", "jsd_de_image"]
    markdown.append(_table("Table 4: M3L-Contrast by encoders (en / de / image)",
                           {combo: _summary(found, keys4) for combo, found in exp["table4"].items()}, keys4))
    markdown.append("Figures: fig3_topics.png, fig4_topics.png (topic number), fig5_batch.png, fig6_batch.png "
                    "(batch size). Mean ± standard deviation over seeds " + str(config.seeds) + ".\n")
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    (out / "tables.md").write_text("\n".join(markdown), encoding="utf-8")
    return results
