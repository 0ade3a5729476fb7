"""The paper's experiments on Multi30k: Tables 1, 2 and 4 and the topic-number and batch-size
ablations (Figures 3-6), with several seeds, as JSON, Markdown tables and line plots."""
from __future__ import annotations

import datetime
import functools
import json
import multiprocessing
import os
import pickle
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .baselines.registry import DEFAULT_BATCH_SIZES, build_system
from .data import M3LDataPreparation, load_multi30k
from .evaluation import evaluate
from .persistence import CheckpointMismatchError
from .training.checkpoint import CHECKPOINT_FILE, checkpoint_epoch
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
    # Table 4 also runs every combination with its embeddings mapped into one space by MCSE
    # heads fitted on the training tuples: aligned vs unaligned inputs with the encoders at hand.
    table4_mcse: bool = True

    @classmethod
    def quick(cls) -> "ReproduceConfig":
        return cls(n_train=1500, n_test=150, n_components=20, num_epochs=10, pltm_iterations=100, seeds=[0],
                   topic_numbers=[10, 20], batch_sizes=[16, 32])


def m3l_loss_label(options: dict | None = None) -> str:
    """M3L-Contrast's loss as ``M3LTM(**options)`` trains it, in a few characters (part of a
    run's key: results of another loss, e.g. an earlier default, never stand in for these)."""
    from .model import M3LTM

    model = M3LTM(views=["_"], **(options or {}))
    w = model.weights
    return (f"rec{w['reconstruction']:g}+prior{w['prior_kl']:g}+pair{w['pair_kl']:g}({model.pair_kl_on})"
            f"+s{w['contrastive']:g}({model.similarity},tau{model.temperature:g})")


def _prepare(root, config: ReproduceConfig, combo, cache_dir, device, words_only: bool = False):
    """Multi30k prepared for the runs of one encoder combination; ``words_only`` when none of
    them reads embeddings (PLTM): then no encoder runs."""
    en, de, image = combo
    prep = M3LDataPreparation([TextView("en", encoder=en), TextView("de", encoder=de),
                               ImageView("image", encoder=image)], cache_dir=cache_dir, device=device)
    train = prep.fit(load_multi30k("train", root=root, limit=config.n_train), words_only=words_only)
    test = prep.transform(load_multi30k("val", root=root, limit=config.n_test), words_only=words_only)
    return prep, train, test


def _words_only(todo, combo) -> bool:
    return all(run.system == "pltm" for run in todo if run.combo == combo)


def run_system(name, views, train, test, n_components, num_epochs, seed, batch_size=None, device=None,
               lr: float = 2e-3, progress_bar: bool = False, m3l_options: dict | None = None,
               torch_compile: bool = False, align: str = "auto", checkpoint_dir: str | Path | None = None,
               log=print) -> dict:
    """Build system ``name`` (see ``baselines.registry.build_system``, also for ``align``), fit it on ``train``,
    evaluate on ``test``: ``{"model", "metrics", "seconds"}``.  ``torch_compile``: M3L-Contrast
    trains with ``M3LTM(torch_compile=True)`` (the baselines train as CTM does).

    ``checkpoint_dir`` (M3L-Contrast only; the baselines train in CTM's own loop): checkpoint
    every epoch there, and continue from the checkpoint found there, if any, which ends with
    the weights of an uninterrupted fit.  A checkpoint that cannot be continued (other settings,
    an older network layout) is set aside and the fit starts over.  A continued run adds
    ``"resumed_from_epoch"``, and its ``seconds`` include the earlier epochs' training time.
    """
    def build():
        return build_system(name, views, train, n_components, num_epochs, seed, batch_size, device, lr=lr,
                            torch_compile=torch_compile, m3l_options=m3l_options, align=align)

    start = time.perf_counter()
    system = build()
    extra: dict[str, Any] = {}
    if name == "m3l" and checkpoint_dir is not None:
        checkpoint = Path(checkpoint_dir) / CHECKPOINT_FILE
        resume = checkpoint if checkpoint.is_file() else None
        resumed_at = checkpoint_epoch(checkpoint) if resume is not None else 0
        try:
            system.fit(train, progress_bar=progress_bar, checkpoint_dir=checkpoint_dir, resume_from=resume)
        except CheckpointMismatchError as error:
            if resume is None:
                raise
            log(f"{error}; starting this run over")
            os.replace(checkpoint, checkpoint.with_name(checkpoint.name + ".unusable"))
            resume, system = None, build()
            system.fit(train, progress_bar=progress_bar, checkpoint_dir=checkpoint_dir)
        if resume is not None:
            extra = {"resumed_from_epoch": resumed_at,
                     "earlier_seconds": sum(r["seconds"] for r in system.history[:resumed_at])}
    elif name == "m3l":
        system.fit(train, progress_bar=progress_bar)
    else:
        system.fit(train)
    seconds = time.perf_counter() - start + extra.pop("earlier_seconds", 0.0)
    return {"model": system.name, "metrics": evaluate(system, train, test, seed=seed), "seconds": seconds, **extra}


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


EXPERIMENTS = ("table1", "table2", "topics", "batch", "table4")
RUNS_FILE = "runs.jsonl"
CHECKPOINTS_DIR = "checkpoints"  # M3L-Contrast runs in progress, one folder each (see run_system)

# (key, title, views, systems, metric columns) of Tables 1 and 2.
_TABLES = (
    ("table1", "Table 1: multilingual (en, de)", "text", ("pltm", "zeroshot", "zeroshot-kd", "m3l"),
     ["npmi_en", "npmi_de", "mrr_en_de", "jsd_en_de"]),
    ("table2", "Table 2: multilingual and multimodal (en, de, image)", "all", ("zeroshot", "zeroshot-kd", "m3l"),
     ["npmi_en", "npmi_de", "uap_en_image", "jsd_en_image", "uap_de_image", "jsd_de_image"]),
)
# (key, label, views, metric, y label) of the topic-number (Figures 3, 4) and batch-size (5, 6) ablations.
_TOPIC_FIGURES = (("fig3", "en,de", "text", "mrr_en_de", "MRR en->de"),
                  ("fig4", "en,de,image", "all", "uap_en_image", "UAP en->image"))
_BATCH_FIGURES = (("fig5", "en,de", "text", "mrr_en_de", "MRR en->de"),
                  ("fig6", "en,de,image", "all", "uap_en_image", "UAP en->image"))
_TABLE4_KEYS = ["mrr_en_de", "jsd_en_de", "uap_en_image", "jsd_en_image", "uap_de_image", "jsd_de_image"]


@dataclass(frozen=True)
class _Run:
    """One training and evaluation: everything its result depends on."""

    system: str
    views: str            # "text" (en, de) or "all" (en, de, image)
    combo: int            # index into config.encoder_combos
    n_components: int
    batch_size: int | None
    seed: int
    mcse: bool = False    # embeddings aligned by MCSE heads (fitted on the training tuples) first

    def key(self, config: ReproduceConfig) -> str:
        """Identifies the run across invocations: the same key, the same result (runs are
        seeded), so a finished run is never repeated, and a run of another configuration
        (other data size, epochs...) never stands in for this one."""
        length = f"iterations={config.pltm_iterations}" if self.system == "pltm" else f"epochs={config.num_epochs}"
        batch = self.batch_size or DEFAULT_BATCH_SIZES.get(self.system)
        return "|".join([self.system, self.views, "/".join(config.encoder_combos[self.combo])]
                        + (["aligned=mcse"] if self.mcse else [])
                        + ([f"loss={m3l_loss_label()}"] if self.system == "m3l" else [])
                        + [f"train={config.n_train or 'all'}", f"test={config.n_test or 'all'}",
                           f"K={self.n_components}", f"batch={batch or '-'}", length, f"seed={self.seed}"])


def _plan(config: ReproduceConfig, only) -> list[tuple[str, _Run]]:
    """``(experiment, run)`` pairs, one seed after another so that an interrupted run has
    complete tables for its first seeds."""
    plan = []
    for seed in config.seeds:
        for key, _, views, systems, _ in _TABLES:
            if key in only:
                plan += [(key, _Run(name, _table_views(name, views, only), 0, config.n_components, None, seed))
                         for name in systems]
        if "topics" in only:
            for fig, _, views, _, _ in _TOPIC_FIGURES:
                plan += [(f"{fig}_topics", _Run(name, views, 0, k, None, seed))
                         for name in ("zeroshot", "m3l") for k in config.topic_numbers]
        if "batch" in only:
            for fig, _, views, _, _ in _BATCH_FIGURES:
                plan += [(f"{fig}_batch", _Run("m3l", views, 0, config.n_components, b, seed))
                         for b in config.batch_sizes]
        if "table4" in only:
            plan += [("table4", _Run("m3l", "all", c, config.n_components, None, seed, mcse))
                     for c in range(len(config.encoder_combos))
                     for mcse in ((False, True) if config.table4_mcse else (False,))]
    return plan


def _table_views(system: str, views: str, only) -> str:
    """The views a table's run of ``system`` trains on.  ZeroshotTM-KD distils its students
    from the English teacher one view at a time, each re-seeded as the teacher was, so the
    all-views run's English teacher and German student are the text-only run's, to the bit
    (``tests/test_baselines.py``): when Table 2 runs too, Table 1 reads its en/de metrics
    from Table 2's run instead of training the teacher and the German student twice."""
    return "all" if system == "zeroshot-kd" and views == "text" and "table2" in only else views


def _distinct(plan, config: ReproduceConfig) -> dict[str, _Run]:
    """The plan's runs by key, in plan order: a run two experiments share appears once."""
    distinct: dict[str, _Run] = {}
    for _, run in plan:
        distinct.setdefault(run.key(config), run)
    return distinct


def _read_runs(path: Path, log) -> dict[str, dict]:
    """Finished runs of ``runs.jsonl`` by key; a line cut short by a killed process is skipped."""
    done = {}
    if not path.exists():
        return done
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            done[record["key"]] = record
        except (json.JSONDecodeError, KeyError, TypeError):
            log(f"{path}: line {number} is incomplete or not a run record (an interrupted write?); "
                "that run will be done again")
    return done


def _append_run(path: Path, record: dict) -> None:
    """Appends one finished run and forces it to disk before the next run starts."""
    torn = False
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as existing:
            existing.seek(-1, os.SEEK_END)
            torn = existing.read(1) != b"\n"
    with open(path, "a", encoding="utf-8") as handle:
        # After a write cut short, start a new line: the record must not join the torn one.
        handle.write(("\n" if torn else "") + json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def reproduce(root: str | Path | None, out: str | Path, config: ReproduceConfig | None = None,
              cache_dir: str | Path | None = None, device: Any = None, log=print,
              only: Sequence[str] | None = None, jobs: int = 1, torch_compile: bool = False,
              train: bool = True) -> dict:
    """Run the experiments of ``config`` and write ``results.json``, ``tables.md`` and the
    figures into ``out``.  Returns the results.

    Every finished run is appended to ``out/runs.jsonl`` at once, and the tables are
    rewritten: a run that is interrupted (killed, out of time) loses at most the run in
    progress, and calling ``reproduce`` again with the same ``out`` continues where it stopped.
    M3L-Contrast's runs lose less: they checkpoint every epoch into ``out/checkpoints/`` and a
    restarted ``reproduce`` continues them from their last epoch, ending with the weights of an
    uninterrupted run (the baselines train in CTM's loop, which has no such state, and start over).
    Runs are identified by everything their result depends on, so a run shared by two
    experiments (Table 1's M3L-Contrast is also the topic ablation's point at 100 topics and
    the batch ablation's at 32) is done once, and changing the configuration (more seeds, other
    epochs) adds runs instead of mixing results.

    Args:
        only: experiments to run, some of :data:`EXPERIMENTS` (``"table1"``, ``"table2"``,
            ``"topics"``, ``"batch"``, ``"table4"``); default all.
        jobs: runs trained at once, each in its own process with ``cpu_count // jobs`` torch
            threads.  A step of these small networks is bound by per-operator overhead more
            than by arithmetic, so on 2 cores 2 one-thread jobs finish ~1.7x the runs per hour
            of one two-thread job (``benchmarks/train_speed.py`` with ``OMP_NUM_THREADS``).
            Runs finish out of order; each is still recorded as soon as it finishes.  Workers
            are started with ``spawn``: in a script, call ``reproduce`` under
            ``if __name__ == "__main__":`` (the CLI and notebooks need nothing).
        torch_compile: M3L-Contrast runs train with ``M3LTM(torch_compile=True)``: on CPU ~0.85x
            the time of an eager run with one thread per job (``benchmarks/train_speed.py``), for
            a compilation of under a minute per run.  Not part of a run's identity: a compiled fit
            follows the eager fit with the same seed (to rounding), so finished runs count either way.
        train: ``False`` trains nothing and needs no data: the tables, ``results.json`` and the
            figures are written from the runs of this plan already in ``out/runs.jsonl`` (e.g.
            three seeds of Tables 1 and 2 while the ablations have one so far), and the log says
            how many planned runs are missing.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    config = config or ReproduceConfig()
    only = tuple(EXPERIMENTS if only is None else only)
    unknown = [name for name in only if name not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs_path = out / RUNS_FILE
    done = _read_runs(runs_path, log)
    plan = _plan(config, only)
    distinct = _distinct(plan, config)
    todo = [run for key, run in distinct.items() if key not in done]
    if not train:
        log(f"{len(distinct)} distinct runs planned, {len(distinct) - len(todo)} finished in {runs_path}; "
            f"writing the tables of those, training none of the {len(todo)} missing")
        return _report(out, config, plan, done, figures=True)
    log(f"{len(distinct)} distinct runs planned, {len(todo)} to do (finished runs are kept in {runs_path})")
    software = _software()
    durations = []
    checkpoints = out / CHECKPOINTS_DIR
    if jobs > 1 and len(todo) > 1:
        finished = _run_in_parallel(todo, config, root, cache_dir, device, jobs, log, torch_compile, str(checkpoints))
    else:
        finished = _run_serially(todo, config, root, cache_dir, device, log, torch_compile, checkpoints)
    for number, (run, result) in enumerate(finished, 1):
        record = {"key": run.key(config), "run": asdict(run), **result, "software": software,
                  "torch_compile": torch_compile,
                  "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        _append_run(runs_path, record)
        done[record["key"]] = record
        finished_checkpoint = _checkpoint_dir(checkpoints, run, config)
        if finished_checkpoint is not None:
            shutil.rmtree(finished_checkpoint, ignore_errors=True)  # recorded: nothing left to continue
        durations.append(result["seconds"])
        left = _time_left(durations, len(todo) - number, jobs)
        shown = [key for key in _HEADLINE if key in result["metrics"]]
        log(f"  [{number}/{len(todo)} done] {result['model']} ({_describe(run)}) in {_duration(result['seconds'])}: "
            + ", ".join(f"{key}={result['metrics'][key]:.3f}" for key in shown)
            + (f"; about {_duration(left)} left" if left else ""))
        _report(out, config, plan, done, figures=False)
    return _report(out, config, plan, done, figures=True)


def _time_left(durations: Sequence[float], remaining: int, jobs: int) -> float:
    """Seconds until the ``remaining`` runs are done, ``jobs`` at a time, if they take as long as
    the finished ones (``durations``) on average.  From the runs' own times rather than the wall
    clock since the start, which also holds the encoding of the data (a quarter of an hour at
    full scale) and would inflate every estimate."""
    if not durations or remaining <= 0:
        return 0.0
    return sum(durations) / len(durations) * remaining / min(jobs, remaining)


def _software() -> dict[str, str]:
    """What produced a run: versions, and the git commit when the package runs from a checkout
    (``dirty`` when it has uncommitted changes), so a table that mixes code versions says so."""
    import platform
    import subprocess

    import torch

    from . import __version__

    info = {"ctm_m3l": __version__, "torch": torch.__version__, "python": platform.python_version()}
    root = Path(__file__).resolve().parent.parent
    if (root / ".git").exists():  # the package's own checkout, not some repository it is installed in
        try:
            commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                    text=True, timeout=10, check=True).stdout.strip()
            status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10, check=True).stdout.strip()
            info["commit"] = commit + ("-dirty" if status else "")
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def _software_label(record: dict) -> str:
    software = record.get("software")
    if not software:
        return "not recorded (runs finished before versions were kept)"
    return f"ctm_m3l {software['ctm_m3l']}" + (f" at {software['commit']}" if "commit" in software else "") \
        + f", torch {software['torch']}"


def _describe(run: _Run) -> str:
    return (f"{run.views} views{', aligned by MCSE' if run.mcse else ''}, K={run.n_components}, "
            f"batch {run.batch_size or 'default'}, seed {run.seed}")


def _checkpoint_dir(checkpoints: str | Path | None, run: _Run, config: ReproduceConfig) -> Path | None:
    """Where an M3L-Contrast run of ``reproduce`` keeps its checkpoint: one folder per run key."""
    if checkpoints is None or run.system != "m3l":
        return None
    import hashlib

    return Path(checkpoints) / hashlib.sha256(run.key(config).encode("utf-8")).hexdigest()[:16]


def _train_and_evaluate(run: _Run, config: ReproduceConfig, views, train, test, device,
                        torch_compile: bool = False, checkpoints: str | Path | None = None, log=print) -> dict:
    views = [v for v in views if run.views == "all" or v.kind == "text"]
    length = config.pltm_iterations if run.system == "pltm" else config.num_epochs
    aligning = 0.0
    if run.mcse:
        from .baselines import MCSEAligner

        start = time.perf_counter()
        aligner = MCSEAligner([v.name for v in views], device=device, random_state=run.seed).fit(train)
        train, test = aligner.transform_dataset(train), aligner.transform_dataset(test)
        aligning = time.perf_counter() - start
    result = run_system(run.system, views, train, test, run.n_components, length, run.seed,
                        batch_size=run.batch_size, device=device, torch_compile=torch_compile,
                        checkpoint_dir=_checkpoint_dir(checkpoints, run, config), log=log)
    return {**result, "seconds": result["seconds"] + aligning}


def _run_serially(todo, config, root, cache_dir, device, log, torch_compile: bool = False, checkpoints=None):
    """``(run, result)`` of every run of ``todo``, one after another in this process."""
    prepared: dict[int, tuple] = {}
    for number, run in enumerate(todo, 1):
        if run.combo not in prepared:
            log(f"encoders {config.encoder_combos[run.combo]}: preparing data")
            prepared = {run.combo: _prepare(root, config, config.encoder_combos[run.combo], cache_dir, device,
                                            words_only=_words_only(todo, run.combo))}
        prep, train, test = prepared[run.combo]
        log(f"[{number}/{len(todo)}] {run.system} on {_describe(run)}")
        yield run, _train_and_evaluate(run, config, prep.views, train, test, device, torch_compile, checkpoints, log)


def _start_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


@functools.lru_cache(maxsize=1)
def _load_prepared(data_path: str) -> tuple:
    """``(views, train, test)`` the parent process prepared; loaded once per worker (and per
    encoder combination)."""
    with open(data_path, "rb") as handle:
        return pickle.load(handle)


def _worker_run(data_path: str, run: _Run, config: ReproduceConfig, device, torch_compile: bool,
                checkpoints: str | None = None) -> dict:
    views, train, test = _load_prepared(data_path)
    return _train_and_evaluate(run, config, views, train, test, device, torch_compile, checkpoints)


def _run_in_parallel(todo, config, root, cache_dir, device, jobs: int, log, torch_compile: bool = False,
                     checkpoints=None):
    """``(run, result)`` of every run of ``todo`` as they finish, ``jobs`` at a time in worker
    processes.  Data is encoded once, here, and handed to the workers through a temporary
    file.  When a run fails, no new run starts; the runs in progress finish (and are yielded,
    so they are recorded) before the failure is raised."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with tempfile.TemporaryDirectory(prefix="ctm-m3l-reproduce-") as scratch:
        data_paths = {}
        for combo in dict.fromkeys(run.combo for run in todo):
            log(f"encoders {config.encoder_combos[combo]}: preparing data")
            prep, train, test = _prepare(root, config, config.encoder_combos[combo], cache_dir, device,
                                         words_only=_words_only(todo, combo))
            data_paths[combo] = str(Path(scratch) / f"data{combo}.pickle")
            with open(data_paths[combo], "wb") as handle:
                pickle.dump((prep.views, train, test), handle, protocol=pickle.HIGHEST_PROTOCOL)
            del prep, train, test
        log(f"{len(todo)} runs, {jobs} at a time ({threads} torch thread(s) each)")
        context = multiprocessing.get_context("spawn")  # fork and torch's thread pools do not mix
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(threads,)) as pool:
            futures = {pool.submit(_worker_run, data_paths[run.combo], run, config, device, torch_compile,
                                   checkpoints): run
                       for run in todo}
            failure = None
            try:
                for future in as_completed(futures):
                    run = futures[future]
                    if future.cancelled():
                        continue
                    try:
                        result = future.result()
                    except Exception as error:  # noqa: BLE001 - re-raised below, after the runs in progress
                        if failure is None:
                            failure = (run, error)
                            pool.shutdown(wait=False, cancel_futures=True)  # no new run starts
                        continue
                    yield run, result
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
            if failure is not None:
                run, error = failure
                raise RuntimeError(f"{run.system} on {_describe(run)} failed: {error}") from error


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
                f"M3L-Contrast's loss: {m3l_loss_label()} (weights of reconstruction, KL to the prior, "
                "pairwise KL between views (on what), InfoNCE (similarity, temperature)).\n"]
    for key, title, _, _, keys in _TABLES:
        if key in exp:
            markdown.append(_table(title, {model: found for model, found in exp[key].items()}, keys))
    if "table4" in exp:
        markdown.append(_table("Table 4: M3L-Contrast by encoders (en / de / image)", exp["table4"], _TABLE4_KEYS))
    for fig, label, _, metric, ylabel in _TOPIC_FIGURES:
        series = exp.get(f"{fig}_topics", {})
        ks = [k for k in config.topic_numbers if all(str(k) in points for points in series.values())]
        if series and ks:
            markdown.append(_table(f"Topic number ({label}): {metric}",
                                   {f"{model}, K={k}": points[str(k)] for model, points in series.items() for k in ks},
                                   [metric]))
            if figures:
                _line_plot(out / f"{fig}_topics.png", ks,
                           {model: [_summary(points[str(k)], [metric])[metric] for k in ks]
                            for model, points in series.items()}, "topics", ylabel, f"Topic number ({label})")
    for fig, label, _, metric, ylabel in _BATCH_FIGURES:
        points = exp.get(f"{fig}_batch", {})
        sizes = [b for b in config.batch_sizes if str(b) in points]
        if sizes:
            markdown.append(_table(f"Batch size ({label}): {metric}", {f"m3l, batch {b}": points[str(b)]
                                                                      for b in sizes}, [metric]))
            if figures:
                _line_plot(out / f"{fig}_batch.png", sizes,
                           {"m3l": [_summary(points[str(b)], [metric])[metric] for b in sizes]},
                           "batch size", ylabel, f"Batch size ({label})")
    if figures:
        markdown.append("Figures: fig3_topics.png, fig4_topics.png (topic number), fig5_batch.png, "
                        "fig6_batch.png (batch size), where their experiments ran.\n")
    results = {"config": asdict(config), "experiments": exp}
    _write_atomic(out / "results.json", json.dumps(results, indent=1))
    _write_atomic(out / "tables.md", "\n".join(markdown))
    return results


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
