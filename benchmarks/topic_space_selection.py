"""Issue #24's full-scale selection: M3L-Contrast variants beside the baselines, per setting.

Settings (all trained on Multi30k `train`, evaluated on `val`: model selection data, never a
test split; English and German, French, Czech with MiniLM, photos with EfficientNet-Lite0):

- ``en-de``: comparable English and German descriptions (29,000 tuples);
- ``en-de-photo``: the same with the photo where there is one (Flickr8k subset);
- ``parallel4``: one caption per image in en, de, fr, cs (translations), 29,000 tuples.

Each finished run is appended to a JSONL ledger (``--ledger``) with its key; a run whose key
is there already is skipped, and M3L-Contrast checkpoints every epoch under ``--checkpoints``,
so a killed process loses at most one epoch and the ledger picks up where it stopped:

    python benchmarks/topic_space_selection.py --data ../shared/data/multi30k --cache-dir CACHE \
        --ledger benchmarks/results/topic-space/full-scale.jsonl --checkpoints CKPT \
        --settings en-de --systems m3l --variants "mu-only norm, InfoNCE summed" --seeds 0 1 2

A "topics from SOURCE" variant trains its inference networks against the topic-word weights of
the variant SOURCE's fit with the same setting and seed (``fit(topics_from=...)``): that fit
runs first if its model is not saved under ``--checkpoints``/models (it is recorded in the
ledger under its own key too).

``--report`` prints the ledger's means and sample SDs per setting, system and variant;
``--markdown FILE`` writes them as one Markdown table per setting (the docs include it).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from topic_space_multi30k import TOPIC_SOURCES, VARIANTS  # noqa: E402

from ctm_m3l import ImageView, M3LDataPreparation, TextView, load_multi30k  # noqa: E402
from ctm_m3l.experiments import append_run, read_runs, run_system, software  # noqa: E402

SETTINGS = {
    "en-de": ("comparable", ("en", "de")),
    "en-de-photo": ("comparable", ("en", "de", "image")),
    "parallel4": ("parallel4", ("en", "de", "fr", "cs")),
}
SYSTEMS = ("m3l", "pltm", "zeroshot", "zeroshot+mcse", "zeroshot-kd")


def _views(names):
    return [ImageView(n, encoder="offline:efficientnet-lite0") if n == "image"
            else TextView(n, encoder="offline:minilm") for n in names]


def _key(setting, system, variant, seed, args):
    length = f"iterations={args.pltm_iterations}" if system == "pltm" else f"epochs={args.epochs}"
    return (f"{setting}|{system}|{variant if system == 'm3l' else '-'}|n_train={args.n_train or 'all'}"
            f"|K={args.topics}|{length}|seed={seed}")


def _groups(ledger: Path) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for record in read_runs(ledger, print).values():
        groups.setdefault((record["setting"], record["system"], record["variant"]), []).append(record)
    return groups


def _report(ledger: Path) -> None:
    for (setting, system, variant), records in sorted(_groups(ledger).items()):
        keys = sorted({k for r in records for k in r["metrics"]
                       if k.startswith(("mrr_", "uap_", "npmi_", "diversity_", "largest_share_"))
                       and "100" not in k})
        print(f"\n{setting} | {system} | {variant} | seeds {sorted(r['seed'] for r in records)}")
        for k in keys:
            values = [r["metrics"].get(k, float("nan")) for r in records]
            sd = f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else ""
            print(f"  {k:22s} {np.mean(values):.3f}{sd}")


def _pair_mrrs(metrics: dict, languages) -> list[float]:
    return [metrics[f"mrr_{a}_{b}"] for a in languages for b in languages if a != b and f"mrr_{a}_{b}" in metrics]


#: (column title, metric) per setting, for the Markdown tables; "worst pair" and "mean pair" are
#: the lowest and the mean MRR over every ordered pair of the four languages.
COLUMNS = {
    "en-de": [("MRR en->de", "mrr_en_de"), ("MRR de->en", "mrr_de_en"), ("NPMI en", "npmi_en"),
              ("NPMI de", "npmi_de"), ("diversity en", "diversity_en"), ("largest share en", "largest_share_en")],
    "en-de-photo": [("MRR en->de", "mrr_en_de"), ("UAP en->photo", "uap_en_image"), ("UAP de->photo", "uap_de_image"),
                    ("NPMI en", "npmi_en"), ("NPMI de", "npmi_de"), ("diversity en", "diversity_en"),
                    ("largest share photo", "largest_share_image")],
    "parallel4": [("worst pair MRR", "worst pair"), ("mean pair MRR", "mean pair"), ("NPMI en", "npmi_en"),
                  ("NPMI de", "npmi_de"), ("NPMI fr", "npmi_fr"), ("NPMI cs", "npmi_cs"),
                  ("diversity en", "diversity_en"), ("largest share en", "largest_share_en")],
}


def _value(metrics: dict, column: str) -> float:
    if column in ("worst pair", "mean pair"):
        pairs = _pair_mrrs(metrics, ("en", "de", "fr", "cs"))
        return min(pairs) if column == "worst pair" else float(np.mean(pairs))
    return metrics.get(column, np.nan)


def markdown_tables(ledger: Path) -> str:
    """One table per setting: each system and variant's mean (± sample SD over its seeds)."""
    groups, out = _groups(ledger), []
    for setting, columns in COLUMNS.items():
        rows = sorted((k, v) for k, v in groups.items() if k[0] == setting)
        if not rows:
            continue
        out += [f"**{setting}**", "", "| system | variant | seeds | " + " | ".join(t for t, _ in columns) + " |",
                "|---|---|---|" + "---|" * len(columns)]
        for (_, system, variant), records in rows:
            cells = []
            for _, column in columns:
                values = [_value(r["metrics"], column) for r in records]
                sd = f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else ""
                cells.append(f"{np.mean(values):.3f}{sd}" if np.isfinite(values).all() else "-")
            seeds = ", ".join(str(s) for s in sorted(r["seed"] for r in records))
            out.append(f"| {system} | {variant} | {seeds} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="Multi30k root (default: $CTM_M3L_DATA)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--ledger", type=Path, required=True)
    parser.add_argument("--checkpoints", type=Path, default=None)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--systems", nargs="+", default=["m3l"], choices=SYSTEMS)
    parser.add_argument("--variants", nargs="+", default=["0.1.0 defaults"],
                        choices=[v for v in VARIANTS if v != "defaults"],
                        help="M3L-Contrast variants by name (topic_space_multi30k.VARIANTS)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--pltm-iterations", type=int, default=1000)
    parser.add_argument("--n-train", type=int, default=None, help="first N train tuples (default: all)")
    parser.add_argument("--torch-compile", action="store_true")
    parser.add_argument("--report", action="store_true", help="print the ledger's summary and stop")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="write the ledger's tables (Markdown, one per setting) to this file and stop")
    args = parser.parse_args(argv)
    if args.markdown:
        args.markdown.write_text(markdown_tables(args.ledger) + "\n")
        return None
    if args.report:
        return _report(args.ledger)
    done = read_runs(args.ledger, print)
    for setting in args.settings:
        layout, names = SETTINGS[setting]
        todo = [(system, variant, seed) for system in args.systems
                for variant in (args.variants if system == "m3l" else ["-"]) for seed in args.seeds
                if _key(setting, system, variant, seed, args) not in done]
        if not todo:
            continue
        prep = M3LDataPreparation(_views(names), cache_dir=args.cache_dir)
        words_only = all(system == "pltm" for system, _, _ in todo)
        start = time.perf_counter()
        train = prep.fit(load_multi30k("train", root=args.data, layout=layout, limit=args.n_train),
                         words_only=words_only)
        val = prep.transform(load_multi30k("val", root=args.data, layout=layout), words_only=words_only)
        print(f"{setting}: train {train}, val {val}, prepared in {time.perf_counter() - start:.0f} s", flush=True)
        views = prep.views
        for system, variant, seed in todo:
            key = _key(setting, system, variant, seed, args)
            if key in done:  # a "topics from" variant's source, run just before
                continue
            topics_from = None
            if system == "m3l" and variant in TOPIC_SOURCES:
                topics_from = _topic_source(setting, TOPIC_SOURCES[variant], seed, args, views, train, val, done)
            _run(setting, system, variant, seed, args, views, train, val, done, topics_from=topics_from)


def _folder(key: str) -> str:
    return key.replace("|", "_").replace(" ", "").replace(",", "+")


def _topic_source(setting, variant, seed, args, views, train, val, done) -> Path:
    """The saved model of ``variant``'s fit (setting, seed) that a "topics from" variant takes
    its topic-word weights from; fitted (and recorded in the ledger) if not saved yet."""
    if args.checkpoints is None:
        raise SystemExit("a \"topics from\" variant needs --checkpoints (its source model is saved there)")
    folder = args.checkpoints / "models" / _folder(_key(setting, "m3l", variant, seed, args))
    if not (folder / "config.json").is_file():
        _run(setting, "m3l", variant, seed, args, views, train, val, done, save_to=folder)
    return folder


def _run(setting, system, variant, seed, args, views, train, val, done, **m3l_fit) -> None:
    key = _key(setting, system, variant, seed, args)
    name, align = {"zeroshot+mcse": ("zeroshot", "mcse"), "zeroshot": ("zeroshot", "none")}.get(
        system, (system, "auto"))
    checkpoints = None
    if system == "m3l" and args.checkpoints is not None:
        checkpoints = args.checkpoints / _folder(key)
    result = run_system(name, views, train, val, args.topics,
                        args.pltm_iterations if system == "pltm" else args.epochs, seed,
                        m3l_options=VARIANTS[variant] if system == "m3l" else None, align=align,
                        torch_compile=args.torch_compile and system == "m3l", checkpoint_dir=checkpoints, **m3l_fit)
    if key in done:  # a source refitted only for its saved model
        return
    record = {"key": key, "setting": setting, "system": system, "variant": variant, "seed": seed,
              "model": result["model"], "metrics": result["metrics"], "seconds": result["seconds"],
              "software": software(), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    append_run(args.ledger, record)
    done[key] = record
    first_text = next(v.name for v in views if v.kind == "text")
    shown = {k: round(v, 3) for k, v in result["metrics"].items()
             if k.startswith(("mrr_", "uap_", "npmi_", "diversity_", "largest_share_")) and "100" not in k
             and (k.startswith(f"mrr_{first_text}_") or k.startswith(("uap_", "npmi", "diversity", "largest")))}
    print(f"{key}: {shown} ({result['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
