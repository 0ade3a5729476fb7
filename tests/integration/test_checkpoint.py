"""Checkpoints: atomic, complete, and a killed run resumes to the same weights."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from helpers import VIEWS, prepare

from ctm_m3l import M3LTM
from ctm_m3l.persistence import tensor_digest

EPOCHS = 12
SETTINGS = dict(views=VIEWS, n_components=5, num_epochs=EPOCHS, random_state=3, reduce_on_plateau=True)


def checkpoint_epoch(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return int(fh.metadata()["epoch"])


@pytest.fixture(scope="module")
def data():
    _, train, test = prepare(n_train=1500, n_test=100, image_share=0.5)
    return train, test


@pytest.fixture(scope="module")
def uninterrupted(data):
    model = M3LTM(**SETTINGS)
    model.fit(data[0], validation_dataset=data[1], patience=50, progress_bar=False)
    return model


def test_killed_run_resumes_to_identical_weights(tmp_path, data, uninterrupted):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parents[1])!r})
        from ctm_m3l import M3LTM
        from helpers import VIEWS, prepare
        _, train, test = prepare(n_train=1500, n_test=100, image_share=0.5)
        model = M3LTM(views=VIEWS, n_components=5, num_epochs={EPOCHS}, random_state=3, reduce_on_plateau=True)
        print("training", flush=True)
        model.fit(train, validation_dataset=test, patience=50, progress_bar=False, checkpoint_dir={str(tmp_path)!r})
        print("finished", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    checkpoint = tmp_path / "checkpoint.safetensors"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if checkpoint.exists() and checkpoint_epoch(checkpoint) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = checkpoint_epoch(checkpoint)  # the last complete checkpoint survives the kill
    assert 2 <= killed_at < EPOCHS

    resumed = M3LTM(**SETTINGS)
    resumed.fit(data[0], validation_dataset=data[1], patience=50, progress_bar=False, resume_from=tmp_path)
    assert len(resumed.history) == EPOCHS
    expected, got = uninterrupted.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in uninterrupted.history]


def test_checkpoint_every_n_epochs_and_bad_resume(tmp_path, data):
    model = M3LTM(**{**SETTINGS, "num_epochs": 5})
    model.fit(data[0], progress_bar=False, checkpoint_dir=tmp_path, checkpoint_every=2)
    assert checkpoint_epoch(tmp_path / "checkpoint.safetensors") == 5  # the last epoch is always written
    other = M3LTM(**{**SETTINGS, "n_components": 6})
    with pytest.raises(ValueError, match=r"different settings: \['n_components'\]"):
        other.fit(data[0], progress_bar=False, resume_from=tmp_path)
    with pytest.raises(ValueError, match="not a checkpoint file"):
        M3LTM(**SETTINGS).fit(data[0], progress_bar=False, resume_from=tmp_path / "nothing")
    # A checkpoint of the per-view network layout (format_version 1) is refused by name.
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = tmp_path / "checkpoint.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata()
    config = json.loads(metadata["config"])
    config["format_version"] = 1
    tensors, metadata = load_file(str(path)), {**metadata, "config": json.dumps(config)}
    del metadata["sha256"]
    metadata["sha256"] = tensor_digest(tensors, metadata)  # a consistent file, of another layout
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=metadata)
    with pytest.raises(ValueError, match="format_version 1.*cannot continue"):
        M3LTM(**SETTINGS).fit(data[0], progress_bar=False, resume_from=tmp_path / "old.safetensors")


def test_resuming_an_early_stopped_run_trains_no_further(tmp_path, data):
    train, test = data
    model = M3LTM(**{**SETTINGS, "num_epochs": 40})
    model.fit(train, validation_dataset=test, patience=1, delta=1e9, progress_bar=False, checkpoint_dir=tmp_path)
    assert len(model.history) == 2  # delta=1e9: only the first epoch counts as an improvement
    resumed = M3LTM(**{**SETTINGS, "num_epochs": 40})
    resumed.fit(train, validation_dataset=test, patience=1, delta=1e9, progress_bar=False, resume_from=tmp_path)
    assert len(resumed.history) == 2
    assert all(torch.equal(a, b) for a, b in zip(model.model.state_dict().values(), resumed.model.state_dict().values()))


def test_a_checkpoint_written_before_image_prior_kl_existed_resumes(tmp_path, data):
    """Its loss weights lack "image_prior_kl": its "prior_kl" weighed every view, which is what
    the same settings give now, so the run continues (to the weights of a run never stopped)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    settings = {**SETTINGS, "num_epochs": 3, "loss_weights": {"prior_kl": 0.5}}
    first = M3LTM(**{**settings, "num_epochs": 2})
    first.fit(data[0], progress_bar=False, checkpoint_dir=tmp_path)
    path = tmp_path / "checkpoint.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata()
    config = json.loads(metadata["config"])
    assert config["settings"]["loss_weights"]["image_prior_kl"] == 0.5
    del config["settings"]["loss_weights"]["image_prior_kl"]
    tensors, metadata = load_file(str(path)), {**metadata, "config": json.dumps(config)}
    del metadata["sha256"]
    metadata["sha256"] = tensor_digest(tensors, metadata)
    save_file(tensors, str(path), metadata=metadata)
    resumed = M3LTM(**settings)
    resumed.fit(data[0], progress_bar=False, resume_from=tmp_path)
    whole = M3LTM(**settings)
    whole.fit(data[0], progress_bar=False)
    assert len(resumed.history) == 3
    assert all(torch.equal(a, b) for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()))


def test_topic_epochs_fixes_the_topics_of_that_epoch_and_resumes_past_it(tmp_path, data):
    """With ``topic_epochs=2`` of 4 the topics end as a 2-epoch fit's (same seed) while the
    inference networks train on; a run resumed after epoch 3 keeps them fixed too."""
    train = data[0]
    two = M3LTM(**{**SETTINGS, "num_epochs": 2})
    two.fit(train, progress_bar=False)
    settings = {**SETTINGS, "num_epochs": 4, "topic_epochs": 2}
    fixed = M3LTM(**settings)
    fixed.fit(train, progress_bar=False)
    assert torch.equal(fixed.model.topic_words, two.model.topic_words)
    assert fixed.get_topic_lists(5, language="de") == two.get_topic_lists(5, language="de")
    assert not torch.equal(fixed.model.input_weight[0], two.model.input_weight[0])  # the networks trained on
    free = M3LTM(**{**SETTINGS, "num_epochs": 4})
    free.fit(train, progress_bar=False)
    assert not torch.equal(free.model.topic_words, two.model.topic_words)  # without it the topics move

    three = M3LTM(**{**settings, "num_epochs": 3})
    three.fit(train, progress_bar=False, checkpoint_dir=tmp_path)
    resumed = M3LTM(**settings)
    resumed.fit(train, progress_bar=False, resume_from=tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(fixed.model.state_dict().values(), resumed.model.state_dict().values()))
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in fixed.history]
    saved = M3LTM.load(fixed.save(tmp_path / "model"))
    assert saved.topic_epochs == 2
