"""``M3LTM(topic_fit=...)``: one ``fit`` that first trains the topics under other settings, then
the inference networks against them, the same as the two fits done by hand (``topics_from``)."""
import json

import numpy as np
import pytest
import torch
from helpers import VIEWS, prepare

from ctm_m3l import M3LTM, PAPER_SETTINGS, PAPER_TOPIC_FIT
from ctm_m3l._validation import InvalidParameterError
from ctm_m3l.persistence import CheckpointMismatchError
from ctm_m3l.training.topic_fit import TOPIC_FIT_DIR, topics_train

SETTINGS = dict(views=VIEWS, n_components=5, num_epochs=3, random_state=3, hidden_sizes=(12,))


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


@pytest.fixture(scope="module")
def data():
    return prepare(n_train=400, n_test=80, image_share=0.5)


@pytest.fixture(scope="module")
def by_hand(data):
    """The two fits done by hand: the paper's settings at batch 64 with s = 100, its contrastive
    weight per tuple (with the same seed, views and topics; the paper's hidden layer of 100), then
    this model's networks against its fixed topics."""
    source = M3LTM(**{**SETTINGS, **PAPER_SETTINGS, "batch_size": 64,
                      "loss_weights": {"contrastive": 100.0, "prior_kl": 0.0}})
    source.fit(data[1], progress_bar=False)
    return source, M3LTM(**SETTINGS, topic_epochs=0).fit(data[1], progress_bar=False, topics_from=source)


def test_paper_topic_fit_is_the_two_fits_by_hand(tmp_path, data, by_hand):
    source, expected = by_hand
    model = M3LTM(**SETTINGS, topic_fit="paper").fit(data[1], progress_bar=False)
    assert torch.equal(model.model.topic_words, source.model.topic_words)
    assert same_weights(model, expected)
    assert model.topics_source == expected.topics_source
    assert model.topics_source["settings"]["batch_size"] == 64
    assert model.topics_source["settings"]["loss_weights"]["contrastive"] == 100.0
    assert model.topics_source["settings"]["posterior_norm"] == "ctm"
    assert model.topics_source["settings"]["hidden_sizes"] == [100]  # the paper's, not this model's 12
    assert model.topics_source["settings"]["topic_fit"] is None  # the first fit trains its topics itself
    # A dict of settings gives the same first fit.
    same = M3LTM(**SETTINGS, topic_fit=PAPER_TOPIC_FIT).fit(data[1], progress_bar=False)
    assert same_weights(same, expected)
    # Saved and loaded: the setting and where the topics came from; the same thetas.
    loaded = M3LTM.load(model.save(tmp_path / "model"))
    assert loaded.topic_fit == "paper" and loaded.topics_source == model.topics_source
    assert json.loads((tmp_path / "model" / "config.json").read_text())["settings"]["topic_fit"] == "paper"
    assert torch.equal(torch.as_tensor(loaded.get_thetas(data[2], view="de", seed=1)),
                       torch.as_tensor(model.get_thetas(data[2], view="de", seed=1)))


def test_topic_epochs_train_the_first_fits_topics_on_at_the_end_as_topics_from_does(data, by_hand):
    """With ``topic_epochs`` the first fit's topics train on in the last ``topic_epochs`` epochs of
    the model's own fit, once its networks have learned them: the two fits by hand with
    ``fit(topics_from=...)``, whose topics train at the end too."""
    source, fixed = by_hand
    expected = M3LTM(**SETTINGS, topic_epochs=2).fit(data[1], progress_bar=False, topics_from=source)
    model = M3LTM(**SETTINGS, topic_fit="paper", topic_epochs=2).fit(data[1], progress_bar=False)
    assert same_weights(model, expected) and model.topics_source == expected.topics_source
    assert not torch.equal(model.model.topic_words, fixed.model.topic_words)  # trained on from the same start
    assert [topics_train(model, epoch) for epoch in range(3)] == [False, True, True]
    # Topics of their own train first (topic_epochs=2 of 3), and every epoch by default.
    assert [topics_train(M3LTM(**SETTINGS, topic_epochs=2), epoch) for epoch in range(3)] == [True, True, False]
    unlimited = M3LTM(**SETTINGS)
    unlimited.topics_source = expected.topics_source  # fit(topics_from=...) without topic_epochs
    assert [topics_train(unlimited, epoch) for epoch in range(3)] == [True] * 3
    assert not any(topics_train(M3LTM(**SETTINGS, topic_fit="paper"), epoch) for epoch in range(3))


def test_a_dict_sets_the_first_fit_over_the_defaults(data):
    settings = {"hidden_sizes": (20,), "num_epochs": np.int64(2), "dropout": 0.1}
    model = M3LTM(**SETTINGS, topic_fit=settings).fit(data[1], progress_bar=False)
    assert model.topic_fit == {"hidden_sizes": [20], "num_epochs": 2, "dropout": 0.1}  # kept as JSON holds it
    assert type(model.topic_fit["num_epochs"]) is int
    source = model.topics_source
    assert source["epochs"] == 2 and source["settings"]["num_epochs"] == 2
    assert source["settings"]["hidden_sizes"] == [20] and source["settings"]["dropout"] == 0.1
    assert source["settings"]["random_state"] == 3 and source["settings"]["views"] == VIEWS
    assert source["settings"]["posterior_norm"] == "ctm-shifted"  # M3LTM's default
    assert len(model.history) == 3


def test_a_run_killed_in_either_fit_resumes_to_the_uninterrupted_weights(tmp_path, data, by_hand):
    expected = by_hand[1]
    # Killed during the first fit: its checkpoint only (2 of 3 epochs), under topic-fit/.
    first = M3LTM(**{**SETTINGS, **PAPER_TOPIC_FIT, "num_epochs": 2})  # PAPER_TOPIC_FIT alone: that one fit
    first.fit(data[1], progress_bar=False, checkpoint_dir=tmp_path / "a" / TOPIC_FIT_DIR)
    resumed = M3LTM(**SETTINGS, topic_fit="paper").fit(data[1], progress_bar=False, resume_from=tmp_path / "a",
                                                       checkpoint_dir=tmp_path / "a")
    assert same_weights(resumed, expected)
    assert (tmp_path / "a" / "checkpoint.safetensors").exists()
    # Killed during the model's own fit (2 of 3 epochs; the first fit's 3 epochs given, as the
    # first fit takes the model's num_epochs otherwise): its checkpoint holds the fixed topics.
    three = {**PAPER_TOPIC_FIT, "num_epochs": 3}
    M3LTM(**{**SETTINGS, "num_epochs": 2}, topic_fit=three).fit(data[1], progress_bar=False,
                                                                checkpoint_dir=tmp_path / "b")
    assert (tmp_path / "b" / TOPIC_FIT_DIR / "checkpoint.safetensors").exists()
    resumed = M3LTM(**SETTINGS, topic_fit=three).fit(data[1], progress_bar=False, resume_from=tmp_path / "b")
    assert same_weights(resumed, expected)
    assert resumed.topics_source == expected.topics_source
    with pytest.raises(CheckpointMismatchError, match=r"different settings: \['topic_fit'\]"):
        M3LTM(**SETTINGS, topic_fit="paper").fit(data[1], progress_bar=False, resume_from=tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="neither a checkpoint .* nor the first fit's"):
        M3LTM(**SETTINGS, topic_fit="paper").fit(data[1], progress_bar=False, resume_from=tmp_path / "c")


def test_topic_fit_refuses_what_it_cannot_do(data, by_hand):
    with pytest.raises(InvalidParameterError, match=r"topic_fit may not set \['n_components', 'views'\]"):
        M3LTM(**SETTINGS, topic_fit={"views": ["en"], "n_components": 3})
    with pytest.raises(InvalidParameterError, match="settings set topic_fit='paper'; the first fit trains its topics"):
        M3LTM(**SETTINGS, topic_fit={**PAPER_TOPIC_FIT, "topic_fit": "paper"})
    with pytest.raises(InvalidParameterError, match=r"topic_fit has unknown setting\(s\) \['batch'\]"):
        M3LTM(**SETTINGS, topic_fit={"batch": 64})
    with pytest.raises(InvalidParameterError, match=r"topic_fit \(topic_fit's settings\): batch_size must be"):
        M3LTM(**SETTINGS, topic_fit={"batch_size": 1})
    with pytest.raises(InvalidParameterError, match="topic_fit must be None or one of"):
        M3LTM(**SETTINGS, topic_fit="papers")
    model = M3LTM(**SETTINGS, topic_fit="paper")
    with pytest.raises(ValueError, match="topic_fit='paper'.*topics_from would give them too.*topic_fit=None"):
        model.fit(data[1], progress_bar=False, topics_from=by_hand[0])
    assert model.model is None  # refused before anything was built: a second fit runs the first fit
    # Bad data is refused by the first fit, naming the view, before anything trains.
    with pytest.raises(ValueError, match=r"view\(s\) \['fr'\] are not in the dataset"):
        M3LTM(**{**SETTINGS, "views": ["en", "fr"]}, topic_fit="paper").fit(data[1], progress_bar=False)
