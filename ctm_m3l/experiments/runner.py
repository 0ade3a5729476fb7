"""Running the reproduction: the ledger (``runs.jsonl``, one finished run per line, appended
as runs finish), serial or parallel workers, checkpoints of runs in progress."""
from __future__ import annotations

import datetime
import functools
import json
import multiprocessing
import os
import pickle
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..baselines.registry import build_system
from ..data import M3LDataPreparation, load_multi30k
from ..evaluation import evaluate
from ..persistence import CheckpointMismatchError
from ..training.checkpoint import CHECKPOINT_FILE, checkpoint_epoch
from ..views import ImageView, TextView
from .config import EXPERIMENTS, ReproduceConfig, _distinct, _plan, _Run
from .report import _HEADLINE, _duration, _report


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
               log=print, topics_from: Any = None, save_to: str | Path | None = None) -> dict:
    """Build system ``name`` (see ``baselines.registry.build_system``, also for ``align``), fit it on ``train``,
    evaluate on ``test``: ``{"model", "metrics", "seconds"}``.  ``torch_compile``: M3L-Contrast
    trains with ``M3LTM(torch_compile=True)`` (the baselines train as CTM does).

    ``checkpoint_dir`` (M3L-Contrast only; the baselines train in CTM's own loop): checkpoint
    every epoch there, and continue from the checkpoint found there, if any, which ends with
    the weights of an uninterrupted fit.  A checkpoint that cannot be continued (other settings,
    an older network layout) is set aside and the fit starts over.  A continued run adds
    ``"resumed_from_epoch"``, and its ``seconds`` include the earlier epochs' training time.
    ``topics_from`` and ``save_to`` (M3L-Contrast only): ``fit(topics_from=...)``, and the fitted
    model saved to that folder before it is evaluated.
    """
    if name != "m3l" and (topics_from is not None or save_to is not None):
        raise ValueError(f"topics_from and save_to are M3L-Contrast's; {name} has neither")
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
            system.fit(train, progress_bar=progress_bar, checkpoint_dir=checkpoint_dir, resume_from=resume,
                       topics_from=topics_from)
        except CheckpointMismatchError as error:
            if resume is None:
                raise
            log(f"{error}; starting this run over")
            os.replace(checkpoint, checkpoint.with_name(checkpoint.name + ".unusable"))
            resume, system = None, build()
            system.fit(train, progress_bar=progress_bar, checkpoint_dir=checkpoint_dir, topics_from=topics_from)
        if resume is not None:
            extra = {"resumed_from_epoch": resumed_at,
                     "earlier_seconds": sum(r["seconds"] for r in system.history[:resumed_at])}
    elif name == "m3l":
        system.fit(train, progress_bar=progress_bar, topics_from=topics_from)
    else:
        system.fit(train)
    seconds = time.perf_counter() - start + extra.pop("earlier_seconds", 0.0)
    if save_to is not None:  # after the clock: a run's seconds are its training time
        system.save(save_to)
    return {"model": system.name, "metrics": evaluate(system, train, test, seed=seed), "seconds": seconds, **extra}


RUNS_FILE = "runs.jsonl"


CHECKPOINTS_DIR = "checkpoints"  # M3L-Contrast runs in progress, one folder each (see run_system)


def read_runs(path: Path, log) -> dict[str, dict]:
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


def append_run(path: Path, record: dict) -> None:
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
            than by arithmetic, so one-thread jobs, one per core, finish more runs per hour than
            one job with every core (``benchmarks/train_speed.py`` with ``OMP_NUM_THREADS``).
            Runs finish out of order; each is still recorded as soon as it finishes.  Workers
            are started with ``spawn``: in a script, call ``reproduce`` under
            ``if __name__ == "__main__":`` (the CLI and notebooks need nothing).
        torch_compile: M3L-Contrast runs train with ``M3LTM(torch_compile=True)``
            (``benchmarks/train_speed.py`` measures the gain), after a compilation per run.  Not
            part of a run's identity: a compiled fit follows the eager fit with the same seed (to
            rounding), so finished runs count either way.
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
    done = read_runs(runs_path, log)
    plan = _plan(config, only)
    distinct = _distinct(plan, config)
    todo = [run for key, run in distinct.items() if key not in done]
    if not train:
        log(f"{len(distinct)} distinct runs planned, {len(distinct) - len(todo)} finished in {runs_path}; "
            f"writing the tables of those, training none of the {len(todo)} missing")
        return _report(out, config, plan, done, figures=True)
    log(f"{len(distinct)} distinct runs planned, {len(todo)} to do (finished runs are kept in {runs_path})")
    versions = software()
    durations = []
    checkpoints = out / CHECKPOINTS_DIR
    if jobs > 1 and len(todo) > 1:
        finished = _run_in_parallel(todo, config, root, cache_dir, device, jobs, log, torch_compile, str(checkpoints))
    else:
        finished = _run_serially(todo, config, root, cache_dir, device, log, torch_compile, checkpoints)
    for number, (run, result) in enumerate(finished, 1):
        record = {"key": run.key(config), "run": asdict(run), **result, "software": versions,
                  "torch_compile": torch_compile,
                  "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        append_run(runs_path, record)
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


def software() -> dict[str, str]:
    """What produced a run: versions, and the git commit when the package runs from a checkout
    (``dirty`` when it has uncommitted changes), so a table that mixes code versions says so."""
    import platform
    import subprocess

    import torch

    from .._version import __version__

    info = {"ctm_m3l": __version__, "torch": torch.__version__, "python": platform.python_version()}
    root = Path(__file__).resolve().parents[2]  # ctm_m3l/experiments/runner.py -> the checkout
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
        from ..baselines import MCSEAligner

        start = time.perf_counter()
        aligner = MCSEAligner([v.name for v in views], device=device, random_state=run.seed).fit(train)
        train, test = aligner.transform_dataset(train), aligner.transform_dataset(test)
        aligning = time.perf_counter() - start
    result = run_system(run.system, views, train, test, run.n_components, length, run.seed,
                        batch_size=run.batch_size, device=device, torch_compile=torch_compile,
                        m3l_options=(config.m3l_options or None) if run.system == "m3l" else None,
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


def _start_worker(threads: int, parent: int | None = None) -> None:
    """Set a worker's torch threads; end it with ``parent`` (the pid of the process that
    started it: given, since a worker still importing when its parent died is re-parented by
    the time it gets here)."""
    import torch

    torch.set_num_threads(threads)
    # A worker outlives a parent killed by a signal it cannot clean up after (SIGTERM's default
    # action, SIGKILL): the pool's shutdown never runs, and the orphan would train on beside
    # whatever runs next.  It checkpoints every epoch, so leaving with the parent loses at most
    # the epoch in flight.
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="exit-with-parent").start()


def _exit_with_parent(parent: int, interval: float = 1.0) -> None:
    """End this process once ``parent`` is no longer its parent (it died; the orphan was
    re-parented)."""
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


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
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker,
                                 initargs=(threads, os.getpid())) as pool:
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
