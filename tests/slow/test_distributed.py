"""Data-parallel training: 2 ranks with gloo on CPU equal one process on the global batch."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ctm_m3l import M3LTM

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.distributed  # torchrun with 2 gloo ranks

PER_RANK_BATCH = 8
ZERO_GRADIENT = ("prior_mean",)
GLOBAL_BATCH = 2 * PER_RANK_BATCH
# The one-step check weighs CTM's prior KL too (0 by default), so that every parameter,
# the learned prior included, has a gradient to compare.
STEP_SETTINGS = dict(loss_weights={"prior_kl": 1.0})


def make_train():
    from helpers import prepare

    train = prepare(n_train=96, n_test=4, image_share=0.6, seed=5)[1]
    # Rank 0's slice of the first global batch has every view, rank 1's lacks some images:
    # the ranks' batch norms must still exchange statistics of the same shape.
    image = train.view_index("image")
    train.view_mask[:PER_RANK_BATCH, image] = True
    assert not train.view_mask[PER_RANK_BATCH:GLOBAL_BATCH, image].all()
    return train


def make_model(**kwargs):
    # dropout=0: dropout masks are per rank and cannot match a single process's.
    settings = dict(views=["en", "de", "image"], n_components=5, batch_size=PER_RANK_BATCH, dropout=0.0,
                    random_state=0)
    return M3LTM(**{**settings, **kwargs})


def torchrun(tmp_path, mode):
    path = os.pathsep.join([str(HERE.parents[1]), str(HERE.parent), str(HERE)])  # the package, helpers, the worker
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(HERE / "distributed_worker.py"), str(tmp_path), mode],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_two_ranks_equal_one_process_on_the_global_batch(tmp_path):
    torchrun(tmp_path, "step")
    got = load_file(str(tmp_path / "step.safetensors"))

    model = make_model(batch_size=GLOBAL_BATCH, **STEP_SETTINGS)
    train = make_train()
    from helpers import start_fit

    loop, data = start_fit(model, train)
    torch.manual_seed(0)
    terms = loop.batch_terms(data, np.arange(GLOBAL_BATCH))
    terms["loss"].backward()
    assert got["loss"].item() == pytest.approx(terms["loss"].item(), rel=1e-5)
    assert got["contrastive"].item() == pytest.approx(terms["contrastive"].item(), rel=1e-5)
    # Biases right before a batch norm, and the prior mean (batch-normalised means sum to 0),
    # have a gradient of exactly 0 in theory: both runs hold float rounding noise there.
    scale = max(float(p.grad.abs().max()) for p in model.model.parameters())
    for name, p in model.model.named_parameters():
        mine = got[f"grad.{name}"]
        if name.endswith(ZERO_GRADIENT):
            assert mine.abs().max() < 1e-4 * scale and p.grad.abs().max() < 1e-4 * scale, name
        else:
            assert (mine - p.grad).norm() <= 1e-4 * p.grad.norm(), name
            assert p.grad.abs().max() > 1e-3 * scale, name


def test_distributed_fit_trains_and_rank_zero_saves(tmp_path):
    torchrun(tmp_path, "fit")
    model = M3LTM.load(tmp_path / "model")
    assert len(model.history) == 3 and all(np.isfinite(r["loss"]) for r in model.history)
    single = make_model(batch_size=GLOBAL_BATCH, num_epochs=3)
    single.fit(make_train(), progress_bar=False)
    # Same global batches, noise and batch statistics: the runs agree up to float rounding,
    # except the parameters whose true gradient is 0, where Adam turns rounding noise into
    # steps of size lr in either direction.
    for mine, theirs in zip(model.history, single.history):
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-3)
    distributed_state = model.model.state_dict()
    for key, value in single.model.named_parameters():
        if not key.endswith(ZERO_GRADIENT):
            assert (distributed_state[key] - value).norm() <= 1e-2 * value.norm(), key


def test_distributed_without_torchrun_is_a_clear_error():
    env_backup = {k: os.environ.pop(k) for k in ("RANK", "WORLD_SIZE") if k in os.environ}
    try:
        with pytest.raises(RuntimeError, match="torchrun"):
            make_model(num_epochs=1).fit(make_train(), distributed=True, progress_bar=False)
    finally:
        os.environ.update(env_backup)
