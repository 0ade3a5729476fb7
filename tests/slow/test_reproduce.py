"""The paper's experiments end to end, in a tiny configuration on real Multi30k data."""
import json
import shutil
import warnings
from pathlib import Path

import pytest
from helpers import needs_cpp

import ctm_m3l
from ctm_m3l import PAPER_SETTINGS
from ctm_m3l.experiments import ReproduceConfig, m3l_loss_label, reproduce


def test_reproduce_tiny(tmp_path, multi30k_dir):
    config = ReproduceConfig(n_train=400, n_test=60, n_components=4, num_epochs=2, pltm_iterations=10, seeds=[0],
                             topic_numbers=[3, 4], batch_sizes=[16, 32])
    results = reproduce(multi30k_dir, tmp_path, config, log=lambda *_: None)
    exp = results["experiments"]
    assert set(exp["table1"]) == {"pltm", "zeroshot", "zeroshot-kd", "m3l"}
    assert set(exp["table2"]) == {"zeroshot+mcse", "zeroshot-kd", "m3l"}  # images: aligned by MCSE, and said so
    assert 0 < exp["table1"]["m3l"][0]["metrics"]["mrr_en_de"] <= 1
    assert "uap_en_image" in exp["table2"]["m3l"][0]["metrics"]
    # ZeroshotTM-KD's en/de models do not depend on the image student: one run serves both tables.
    assert exp["table1"]["zeroshot-kd"][0]["metrics"] == exp["table2"]["zeroshot-kd"][0]["metrics"]
    kd_runs = [line for line in _lines(tmp_path / "runs.jsonl") if '"system": "zeroshot-kd"' in line]
    assert len(kd_runs) == 1 and '"views": "all"' in kd_runs[0]
    assert set(exp["fig5_batch"]) == {"16", "32"} and set(exp["fig3_topics"]["m3l"]) == {"3", "4"}
    # Table 4: the encoders' own embeddings, and the same mapped into one space by MCSE heads.
    combo = "offline:minilm / offline:minilm / offline:efficientnet-lite0"
    assert set(exp["table4"]) == {combo, f"{combo}, aligned by MCSE heads"}
    assert exp["table4"][combo][0]["metrics"] == exp["table2"]["m3l"][0]["metrics"]  # one run, shared
    assert exp["table4"][f"{combo}, aligned by MCSE heads"][0]["metrics"] != exp["table2"]["m3l"][0]["metrics"]
    tables = (tmp_path / "tables.md").read_text()
    assert "Table 1" in tables and "| m3l |" in tables and "Table 4" in tables
    for figure in ("fig3_topics", "fig4_topics", "fig5_batch", "fig6_batch"):
        assert (tmp_path / f"{figure}.png").stat().st_size > 5000
    page = (tmp_path / "figures.html").read_text()  # the same four curves, interactive, in one page
    assert page.count('class="plotly-graph-div"') == 4 and "Topic number (en,de)" in page
    assert json.loads((tmp_path / "results.json").read_text())["config"]["n_train"] == 400
    # Every run says what produced it, and the tables say which code their runs ran.
    record = json.loads(_lines(tmp_path / "runs.jsonl")[0])
    assert record["software"]["ctm_m3l"] == ctm_m3l.__version__ and record["torch_compile"] is False
    assert record["finished"].endswith("+00:00")
    assert f"Code of the finished runs: ctm_m3l {ctm_m3l.__version__}" in tables
    # M3L-Contrast's runs are keyed by their loss, so results of another loss are never reused.
    m3l_runs = [r for r in map(json.loads, _lines(tmp_path / "runs.jsonl")) if r["run"]["system"] == "m3l"]
    assert {r["run"]["views"] for r in m3l_runs} == {"text", "all"}
    assert all(f"|loss={m3l_loss_label(images=r['run']['views'] == 'all')}|" in r["key"] for r in m3l_runs)
    assert f"M3L-Contrast's loss: {m3l_loss_label()}" in tables


def test_m3l_loss_label_names_every_loss_setting():
    assert m3l_loss_label() == ("rec1+prior0+pair1(theta)+s100(cosine,tau0.07)+posterior_norm=ctm-shifted"
                                "+contrastive_reduction=sum+inference_input=combined"
                                "+image_posterior_norm=ctm-shifted")
    # Runs without an image view: the image views' settings change nothing, so they are not named.
    assert m3l_loss_label(images=False) == ("rec1+prior0+pair1(theta)+s100(cosine,tau0.07)+posterior_norm=ctm-shifted"
                                            "+contrastive_reduction=sum+inference_input=combined")
    image_prior = {"loss_weights": {"image_prior_kl": 1.0}, "image_posterior_norm": "mean"}
    assert m3l_loss_label(image_prior, images=False) == m3l_loss_label(images=False)
    # The paper's settings (0.1.0's defaults) keep the keys their runs were recorded under.
    assert m3l_loss_label(PAPER_SETTINGS) == "rec1+prior0+pair1(theta)+s50(cosine,tau0.07)"
    earlier = {**PAPER_SETTINGS, "pair_kl_on": "posterior", "similarity": "dot", "temperature": 0.1,
               "loss_weights": {"contrastive": 50, "prior_kl": 1, "pair_kl": 0.03}}
    assert m3l_loss_label(earlier) == "rec1+prior1+pair0.03(posterior)+s50(dot,tau0.1)"
    images = {**PAPER_SETTINGS, "image_posterior_norm": "mean", "loss_weights": {"image_prior_kl": 0.5}}
    assert m3l_loss_label(images) == ("rec1+prior0+pair1(theta)+s100(cosine,tau0.07)+image_prior0.5"
                                      "+image_posterior_norm=mean")
    # Training the topics for fewer epochs is named too, so those runs never stand in for the defaults'.
    assert m3l_loss_label({"topic_epochs": 50}, images=False) == m3l_loss_label(images=False) + "+topic_epochs=50"
    # So is another width of the inference networks (every run before had one layer of 100).
    assert m3l_loss_label({"hidden_sizes": (100,)}) == m3l_loss_label()
    assert m3l_loss_label({"hidden_sizes": [200]}) == m3l_loss_label() + "+hidden_sizes=[200]"


def _lines(path):
    return [line for line in path.read_text().splitlines() if line.strip()]


def test_reproduce_continues_an_interrupted_run_and_shares_runs(tmp_path, multi30k_dir):
    config = ReproduceConfig(n_train=300, n_test=40, n_components=3, num_epochs=1, pltm_iterations=5, seeds=[0],
                             topic_numbers=[3], batch_sizes=[16, 32])
    messages = []
    reproduce(multi30k_dir, tmp_path, config, log=messages.append, only=["table1"])
    runs = tmp_path / "runs.jsonl"
    first = [json.loads(line) for line in _lines(runs)]
    assert [r["run"]["system"] for r in first] == ["pltm", "zeroshot", "zeroshot-kd", "m3l"]
    assert "| m3l | 1 |" in (tmp_path / "tables.md").read_text()
    # A process killed while writing leaves a torn last line.
    with open(runs, "a") as handle:
        handle.write('{"key": "m3l|text|off')
    messages.clear()
    results = reproduce(multi30k_dir, tmp_path, config, log=messages.append, only=["table1", "batch"])
    # Table 1's runs are not repeated; its M3L run (batch 32, the default) is also Figure 5's
    # point at 32; what is left: Figure 5 at 16, Figure 6 at 16 and 32.
    assert any("line 5 is incomplete" in m for m in messages)
    assert any("7 distinct runs planned, 3 to do" in m for m in messages)
    records = [json.loads(line) for i, line in enumerate(_lines(runs)) if i != 4]
    assert len(records) == 7 and records[:4] == first
    exp = results["experiments"]
    assert exp["fig5_batch"]["32"][0]["metrics"] == exp["table1"]["m3l"][0]["metrics"]
    assert set(exp["fig6_batch"]) == {"16", "32"}
    assert (tmp_path / "fig5_batch.png").stat().st_size > 5000
    # Another configuration (more epochs) is another run: it is done, not read from the file.
    longer = ReproduceConfig(**{**config.__dict__, "num_epochs": 2, "batch_sizes": [16]})
    messages.clear()
    reproduce(multi30k_dir, tmp_path, longer, log=messages.append, only=["batch"])
    assert any("2 distinct runs planned, 2 to do" in m for m in messages)


def test_tables_show_mean_and_sample_sd_over_seeds_and_a_single_seed_alone():
    from ctm_m3l.experiments.report import _table

    runs = {"m3l": [{"metrics": {"mrr_en_de": 0.2}}, {"metrics": {"mrr_en_de": 0.4}},
                    {"metrics": {"mrr_en_de": 0.6}}],
            "pltm": [{"metrics": {"mrr_en_de": 0.5}}]}
    lines = _table("T", runs, ["mrr_en_de", "npmi_de"]).splitlines()
    # mean 0.4, sample sd sqrt(((0.2)^2 + 0 + (0.2)^2) / 2) = 0.2 (the population sd would be 0.163)
    assert "| m3l | 3 | 0.400 ± 0.200 | - |" in lines
    assert "| pltm | 1 | 0.500 | - |" in lines  # one seed: no spread to show, not "± 0.000"


def test_ablation_plots_space_doubling_values_evenly_and_label_them():
    import matplotlib.pyplot as plt
    import numpy as np

    from ctm_m3l.experiments.report import _line_figure

    sizes = [16, 32, 64, 128]
    fig = _line_figure(sizes, {"m3l": [(0.3, 0.01), (0.4, 0.02), (0.4, None), (0.35, 0.0)]},
                       "batch size", "MRR", "Batch size")
    ax = fig.axes[0]
    x_pixels = ax.transData.transform([(x, 0.35) for x in sizes])[:, 0]
    gaps = np.diff(x_pixels)
    assert gaps.min() > 0 and np.allclose(gaps, gaps[0], rtol=1e-6)  # evenly spaced, in order
    assert [t.get_text() for t in ax.get_xticklabels()] == ["16", "32", "64", "128"]
    plt.close(fig)


def test_report_only_writes_the_tables_of_the_finished_runs_and_trains_nothing(tmp_path):
    from ctm_m3l.experiments.config import _distinct, _plan

    config = ReproduceConfig(seeds=[0, 1])
    runs = list(_distinct(_plan(config, ["table1"]), config).items())
    assert len(runs) == 8  # four systems, two seeds
    mrr = {"pltm": 0.8, "zeroshot": 0.1, "zeroshot-kd": 0.3, "m3l": 0.4}
    with open(tmp_path / "runs.jsonl", "w") as handle:
        for key, run in runs[:7]:  # seed 1's M3L run is missing
            record = {"key": key, "run": {}, "model": run.system, "seconds": 1.0,
                      "metrics": {"mrr_en_de": mrr[run.system] + 0.02 * run.seed}}
            handle.write(json.dumps(record) + "\n")
    messages = []
    # No data (root None): a run that tried to train would fail.
    results = reproduce(None, tmp_path, config, only=["table1"], train=False, log=messages.append)
    assert any("8 distinct runs planned, 7 finished" in m and "none of the 1 missing" in m for m in messages)
    tables = (tmp_path / "tables.md").read_text()
    assert "7 of 8 planned runs finished" in tables
    assert "| pltm | 2 | - | - | 0.810 ± 0.014 | - |" in tables  # mean of 0.80 and 0.82, sample sd
    assert "| m3l | 1 | - | - | 0.400 | - |" in tables
    assert len(results["experiments"]["table1"]["m3l"]) == 1
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 7  # the ledger is left as it was
    # The command line does the same with --report-only.
    from ctm_m3l.cli import main

    (tmp_path / "tables.md").unlink()
    assert main(["reproduce", "--out", str(tmp_path), "--only", "table1", "--seeds", "0", "1", "--report-only"]) == 0
    assert (tmp_path / "tables.md").read_text() == tables


def test_paper_settings_find_the_committed_ledger_s_m3l_runs(tmp_path):
    """The committed full-scale ledger trained M3L-Contrast with the paper's settings (0.1.0's
    defaults), with earlier defaults and with today's: ``--paper-settings`` finds the first
    runs (their keys name the loss), the defaults only their own, so none stands in for
    another."""
    from ctm_m3l.cli import main

    ledger = Path(__file__).parents[2] / "benchmarks" / "results" / "multi30k-full" / "runs.jsonl"
    for flag, row in ((["--paper-settings"], "| m3l | 3 | 0.147 ± 0.000 | 0.140 ± 0.003 | 0.387 ± 0.005 |"),
                      ([], "| m3l | 3 | 0.124 ± 0.002 | 0.104 ± 0.005 | 0.801 ± 0.003 |")):
        out = tmp_path / ("paper" if flag else "defaults")
        out.mkdir()
        shutil.copy(ledger, out / "runs.jsonl")
        assert main(["reproduce", "--out", str(out), "--only", "table1", "--report-only", *flag]) == 0
        tables = (out / "tables.md").read_text()
        label = m3l_loss_label(PAPER_SETTINGS) if flag else m3l_loss_label()
        assert row in tables and f"loss: {label} " in tables


def test_time_left_is_the_mean_run_time_over_the_runs_left_and_the_jobs():
    from ctm_m3l.experiments.runner import _time_left

    assert _time_left([240.0, 300.0], remaining=4, jobs=2) == 540.0  # 270 s each, two at a time
    assert _time_left([100.0], remaining=1, jobs=2) == 100.0  # a second job has nothing to share
    assert _time_left([100.0], remaining=3, jobs=1) == 300.0
    assert _time_left([100.0], remaining=0, jobs=2) == 0.0


def test_reproduce_names_an_unknown_experiment(tmp_path):
    with pytest.raises(ValueError, match="table9"):
        reproduce(None, tmp_path, ReproduceConfig.quick(), only=["table1", "table9"])


def test_reproduce_jobs_train_runs_in_worker_processes_with_the_same_results(tmp_path, multi30k_dir):
    import os

    import torch

    config = ReproduceConfig(n_train=300, n_test=40, n_components=3, num_epochs=2, pltm_iterations=5, seeds=[0],
                             topic_numbers=[3], batch_sizes=[16, 32])
    messages = []
    parallel = reproduce(multi30k_dir, tmp_path / "parallel", config, log=messages.append, only=["table1"], jobs=2)
    assert any("4 runs, 2 at a time" in m for m in messages)
    assert sum("done]" in m for m in messages) == 4
    records = [json.loads(line) for line in _lines(tmp_path / "parallel" / "runs.jsonl")]
    assert sorted(r["run"]["system"] for r in records) == ["m3l", "pltm", "zeroshot", "zeroshot-kd"]
    # Each worker trains with cpu_count // jobs threads; the same thread count here gives the
    # same numbers: a worker process changes nothing but where a run is computed.
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
    try:
        serial = reproduce(multi30k_dir, tmp_path / "serial", config, log=lambda *_: None, only=["table1"])
    finally:
        torch.set_num_threads(threads)
    for system in ("pltm", "zeroshot", "zeroshot-kd", "m3l"):
        assert parallel["experiments"]["table1"][system][0]["metrics"] == serial["experiments"]["table1"][system][0][
            "metrics"], system


def test_reproduce_rejects_zero_jobs(tmp_path):
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        reproduce(None, tmp_path, ReproduceConfig.quick(), jobs=0)


def test_reproduce_jobs_records_the_finished_runs_when_one_fails(tmp_path, multi30k_dir):
    # The topic ablation at K=0 cannot be built: Table 1's runs (planned first) finish and are
    # kept; the error names the run that failed.
    config = ReproduceConfig(n_train=200, n_test=30, n_components=3, num_epochs=1, pltm_iterations=5, seeds=[0],
                             topic_numbers=[0], batch_sizes=[16])
    with pytest.raises(RuntimeError, match=r"on text views, K=0, .* failed: ZeroShotBaseline: n_components must be"):
        reproduce(multi30k_dir, tmp_path, config, log=lambda *_: None, only=["table1", "topics"], jobs=2)
    records = [json.loads(line) for line in _lines(tmp_path / "runs.jsonl")]
    assert sorted(r["run"]["system"] for r in records) == ["m3l", "pltm", "zeroshot", "zeroshot-kd"]
    assert all(r["run"]["n_components"] == 3 for r in records)


@needs_cpp
def test_reproduce_with_torch_compile_trains_m3l_compiled_to_the_same_results(tmp_path, multi30k_dir):
    from torch._dynamo.utils import counters

    config = ReproduceConfig(n_train=300, n_test=40, n_components=3, num_epochs=2, pltm_iterations=5, seeds=[0],
                             topic_numbers=[3], batch_sizes=[32])
    eager = reproduce(multi30k_dir, tmp_path / "eager", config, log=lambda *_: None, only=["table1"])
    graphs = counters["stats"]["unique_graphs"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = reproduce(multi30k_dir, tmp_path / "compiled", config, log=lambda *_: None, only=["table1"],
                             torch_compile=True)
    assert not [w for w in caught if "torch.compile failed" in str(w.message)]
    assert counters["stats"]["unique_graphs"] > graphs  # M3L-Contrast's step was compiled
    # A compiled fit follows the eager fit with the same seed; the CTM baselines are untouched.
    for system in ("pltm", "zeroshot", "zeroshot-kd", "m3l"):
        found, expected = (r["experiments"]["table1"][system][0]["metrics"] for r in (compiled, eager))
        assert found.keys() == expected.keys()
        for key in expected:
            assert found[key] == pytest.approx(expected[key], abs=1e-3), (system, key)


def test_an_m3l_run_killed_mid_fit_continues_from_its_checkpoint(tmp_path, multi30k_dir):
    """A run stopped after 2 of 4 epochs (its checkpoint left behind) continues from epoch 2
    and ends with the metrics of an uninterrupted run; an unusable checkpoint is set aside."""
    from ctm_m3l.experiments.runner import _prepare, run_system

    config = ReproduceConfig(n_train=300, n_test=40, seeds=[0])
    prep, train, test = _prepare(multi30k_dir, config, config.encoder_combos[0], None, "cpu")
    args = dict(views=prep.views, train=train, test=test, n_components=3, seed=0, device="cpu", log=lambda *_: None)
    whole = run_system("m3l", num_epochs=4, **args)
    killed = run_system("m3l", num_epochs=2, checkpoint_dir=tmp_path / "run", **args)  # the kill: after epoch 2
    assert "resumed_from_epoch" not in killed and (tmp_path / "run" / "checkpoint.safetensors").is_file()
    continued = run_system("m3l", num_epochs=4, checkpoint_dir=tmp_path / "run", **args)
    assert continued["resumed_from_epoch"] == 2
    assert continued["metrics"] == whole["metrics"]
    assert continued["seconds"] > killed["seconds"] * 0.5  # the earlier epochs' time is counted
    # A checkpoint of other settings (here: 4 topics) cannot be continued: set aside, started over.
    messages = []
    other = run_system("m3l", num_epochs=2, checkpoint_dir=tmp_path / "run",
                       **{**args, "n_components": 4, "log": messages.append})
    assert "resumed_from_epoch" not in other and "starting this run over" in messages[0]
    assert (tmp_path / "run" / "checkpoint.safetensors.unusable").is_file()


def test_reproduce_removes_a_run_checkpoint_once_the_run_is_recorded(tmp_path, multi30k_dir):
    config = ReproduceConfig(n_train=200, n_test=30, n_components=3, num_epochs=1, seeds=[0])
    reproduce(multi30k_dir, tmp_path, config, log=lambda *_: None, only=["table1"])
    records = [json.loads(line) for line in _lines(tmp_path / "runs.jsonl")]
    assert any(r["run"]["system"] == "m3l" for r in records)
    assert not any((tmp_path / "checkpoints").iterdir())  # the M3L run checkpointed and was cleaned up


_POOL_PARENT = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from ctm_m3l.experiments.runner import _start_worker
if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context, initializer=_start_worker, initargs=(1, os.getpid())) as pool:
        futures = [pool.submit(time.sleep, 600) for _ in range(2)]
        time.sleep(1)
        print(" ".join(str(pid) for pid in pool._processes), flush=True)
        time.sleep(600)
"""


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_reproduce_workers_end_with_a_parent_killed_by_a_signal(tmp_path, signal_name):
    """``kill PID`` of ``reproduce --jobs 2`` used to leave its two workers training (SIGTERM's
    default action runs no clean-up); they now leave within seconds of their parent."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(_POOL_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    workers = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(workers) == 2
    assert all(_alive(pid) for pid in workers)
    parent.send_signal(getattr(signal, signal_name))
    parent.wait(timeout=30)
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.2)
    left = [pid for pid in workers if _alive(pid)]
    for pid in left:  # do not leave them behind if the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived their parent"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_run_record_names_the_commit_of_the_checkout_it_ran_from():
    """Run from its git checkout, the package names the commit (``-dirty`` with uncommitted
    changes to tracked files), so tables that mix code versions say so."""
    import subprocess

    from ctm_m3l.experiments import software

    root = Path(ctm_m3l.__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("the package is not installed from its git checkout")
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert software()["commit"].removesuffix("-dirty") == head
