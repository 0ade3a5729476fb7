"""``fit(topics_from=...)``: a model trains its inference networks against another model's
topic-word weights (kept fixed with ``topic_epochs=0``), saved with where they came from."""
import pytest
import torch
from helpers import VIEWS, prepare

from ctm_m3l import M3LTM, PAPER_SETTINGS, ImageView, M3LDataPreparation, TextView
from ctm_m3l.data.synthetic import planted_tuples

SETTINGS = dict(views=VIEWS, n_components=5, num_epochs=3, random_state=3)


@pytest.fixture(scope="module")
def data():
    return prepare(n_train=600, n_test=100, image_share=0.5)


@pytest.fixture(scope="module")
def source(data):
    """The topics' model: the paper's network and loss, another seed."""
    model = M3LTM(**{**SETTINGS, **PAPER_SETTINGS, "random_state": 7})
    return model.fit(data[1], progress_bar=False)


def test_fixed_topics_are_the_source_s_and_the_networks_train(tmp_path, data, source):
    train, test = data[1], data[2]
    fixed = M3LTM(**SETTINGS, topic_epochs=0).fit(train, progress_bar=False, topics_from=source)
    assert torch.equal(fixed.model.topic_words, source.model.topic_words)
    assert fixed.get_topic_lists(5, language="de") == source.get_topic_lists(5, language="de")
    # The networks are this model's own: seeded as a fit without topics_from, then trained.
    untrained = M3LTM(**{**SETTINGS, "num_epochs": 0}, topic_epochs=0).fit(train, progress_bar=False,
                                                                           topics_from=source)
    plain = M3LTM(**{**SETTINGS, "num_epochs": 0}).fit(train, progress_bar=False)
    assert torch.equal(untrained.model.input_weight[0], plain.model.input_weight[0])
    assert not torch.equal(fixed.model.input_weight[0], untrained.model.input_weight[0])
    assert fixed.get_thetas(test, view="de").shape == (len(test), 5)

    # From the saved folder: the same fit; the saved model says where its topics came from.
    folder = source.save(tmp_path / "source")
    again = M3LTM(**SETTINGS, topic_epochs=0).fit(train, progress_bar=False, topics_from=folder)
    assert all(torch.equal(a, b) for a, b in zip(fixed.model.state_dict().values(), again.model.state_dict().values()))
    loaded = M3LTM.load(again.save(tmp_path / "fixed"))
    assert loaded.topic_epochs == 0
    assert loaded.topics_source == {"settings": source._settings(), "epochs": 3}
    assert loaded.topics_source["settings"]["posterior_norm"] == "ctm"
    assert M3LTM.load(source.save(tmp_path / "source")).topics_source is None


def test_without_topic_epochs_the_source_topics_are_a_start(data, source):
    warm = M3LTM(**{**SETTINGS, "num_epochs": 1}).fit(data[1], progress_bar=False, topics_from=source)
    assert not torch.equal(warm.model.topic_words, source.model.topic_words)
    # One epoch from the source's topics stays nearer to them than the random start of a plain fit.
    cold = M3LTM(**{**SETTINGS, "num_epochs": 1}).fit(data[1], progress_bar=False)
    assert (warm.model.topic_words - source.model.topic_words).norm() < \
        (cold.model.topic_words - source.model.topic_words).norm()


def test_fixed_topics_resume_to_the_uninterrupted_weights(tmp_path, data, source):
    whole = M3LTM(**SETTINGS, topic_epochs=0).fit(data[1], progress_bar=False, topics_from=source)
    M3LTM(**{**SETTINGS, "num_epochs": 2}, topic_epochs=0).fit(data[1], progress_bar=False, topics_from=source,
                                                              checkpoint_dir=tmp_path)
    resumed = M3LTM(**SETTINGS, topic_epochs=0).fit(data[1], progress_bar=False, resume_from=tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()))
    assert resumed.topics_source == whole.topics_source is not None  # the checkpoint says where they came from


def test_topics_from_refuses_what_does_not_fit(tmp_path, data, source):
    train = data[1]
    with pytest.raises(ValueError, match="topic_epochs=0 .* topics_from="):
        M3LTM(**SETTINGS, topic_epochs=0).fit(train, progress_bar=False)
    with pytest.raises(ValueError, match="never fitted"):
        M3LTM(**SETTINGS).fit(train, progress_bar=False, topics_from=M3LTM(**SETTINGS))
    with pytest.raises(TypeError, match="topics_from must be a fitted M3LTM"):
        M3LTM(**SETTINGS).fit(train, progress_bar=False, topics_from=source.model)
    with pytest.raises(ValueError, match="n_components=5 and this model 4"):
        M3LTM(**{**SETTINGS, "n_components": 4}).fit(train, progress_bar=False, topics_from=source)
    english = M3LTM(**{**SETTINGS, "views": ["en", "image"]}).fit(train, progress_bar=False)
    with pytest.raises(ValueError, match=r"no topics for language 'de' \(its languages: \['en'\]\)"):
        M3LTM(**SETTINGS).fit(train, progress_bar=False, topics_from=english)
    # German prepared with a smaller vocabulary: the same words' columns mean other words.
    rows, emb, _ = planted_tuples(300, n_topics=5, seed=0)
    prep = M3LDataPreparation([TextView("en", stopwords=None), TextView("de", stopwords=None, vocabulary_size=20),
                               ImageView("image")])
    other = prep.fit(rows, custom_embeddings=emb)
    folder = source.save(tmp_path / "source")
    with pytest.raises(ValueError, match=r"source\), language 'de': its vocabulary \(40 words\) is not this "
                                         r"dataset's \(20 words"):
        M3LTM(**SETTINGS).fit(other, progress_bar=False, topics_from=folder)


def test_the_experiment_runner_passes_topics_from_and_saves_the_model(tmp_path, data, source):
    from ctm_m3l.baselines.registry import build_system
    from ctm_m3l.experiments import run_system

    prep, train, test = data
    result = run_system("m3l", prep.views, train, test, 5, 2, 0, m3l_options={"topic_epochs": 0, "batch_size": 64},
                        topics_from=source, save_to=tmp_path / "model")
    saved = M3LTM.load(tmp_path / "model")
    assert torch.equal(saved.model.topic_words, source.model.topic_words) and saved.batch_size == 64
    assert result["metrics"]["npmi_de"] == pytest.approx(
        run_system("m3l", prep.views, train, test, 5, 2, 1, m3l_options={"topic_epochs": 0},
                   topics_from=source)["metrics"]["npmi_de"])  # the source's topics, whatever the networks
    with pytest.raises(ValueError, match="batch_size 32 and m3l_options' batch_size 64 disagree"):
        build_system("m3l", prep.views, train, 5, 1, 0, 32, m3l_options={"batch_size": 64})
    with pytest.raises(ValueError, match="topics_from and save_to are M3L-Contrast's; pltm has neither"):
        run_system("pltm", prep.views, train, test, 5, 2, 0, topics_from=source)
