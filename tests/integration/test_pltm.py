"""PLTM: recovers planted aligned topics, infers one language alone, deterministic, bad input."""
from collections import Counter

import numpy as np
import pytest

from ctm_m3l import ImageView, M3LDataPreparation, TextView
from ctm_m3l.baselines import PLTM
from ctm_m3l.data.synthetic import planted_topic as block
from ctm_m3l.data.synthetic import planted_tuples
from ctm_m3l.evaluation import mrr

K = 5


@pytest.fixture(scope="module")
def data():
    rows, emb, _ = planted_tuples(500, n_topics=K, seed=2)
    prep = M3LDataPreparation([TextView("en", stopwords=None), TextView("de", stopwords=None), ImageView("image")])
    train = prep.fit(rows[:400], custom_embeddings={k: v[:400] for k, v in emb.items()})
    test = prep.transform(rows[400:], custom_embeddings={k: v[400:] for k, v in emb.items()})
    return train, test


@pytest.fixture(scope="module")
def model(data):
    return PLTM(["en", "de"], n_components=K, alpha=0.1, n_iterations=150, inference_iterations=60,
                random_state=0).fit(data[0])




def test_recovers_planted_topics_aligned_across_languages(model):
    en, de = model.get_topic_lists(5, "en"), model.get_topic_lists(5, "de")
    en_blocks = [Counter(map(block, t)).most_common(1)[0] for t in en]
    de_blocks = [Counter(map(block, t)).most_common(1)[0] for t in de]
    assert all(count == 5 for _, count in en_blocks + de_blocks)  # pure planted topics
    assert len({b for b, _ in en_blocks}) == K  # every planted topic found once
    assert [b for b, _ in en_blocks] == [b for b, _ in de_blocks]  # topic i is the same in en and de
    phi = model.topic_word("de")
    assert phi.shape == (K, len(model.vocabularies["de"])) and np.allclose(phi.sum(1), 1)


def test_single_language_inference_retrieves_the_other_language(model, data):
    test = data[1]
    theta_en = model.get_thetas(test, view="en", seed=0)
    theta_de = model.get_thetas(test, view="de", seed=0)
    assert np.allclose(theta_en.sum(1), 1)
    assert mrr(theta_en, theta_de) > 10 * np.mean(1.0 / np.arange(1, 101))


def test_deterministic_for_a_seed(data):
    runs = [PLTM(["en", "de"], n_components=K, n_iterations=5, random_state=3).fit(data[0]) for _ in range(2)]
    assert np.array_equal(runs[0].n_wk, runs[1].n_wk)
    assert np.array_equal(runs[0].get_thetas(data[1], view="de", seed=1), runs[1].get_thetas(data[1], view="de", seed=1))


def test_alpha_optimisation_keeps_a_valid_prior(data):
    model = PLTM(["en", "de"], n_components=K, n_iterations=30, optimize_alpha=True, burn_in=10,
                 optimize_interval=10, random_state=0).fit(data[0])
    assert (model.alpha > 0).all() and not np.allclose(model.alpha, 50.0 / K)


def test_bad_input(data):
    train = data[0]
    with pytest.raises(ValueError, match="view 'image' has no bag of words"):
        PLTM(["en", "image"], n_components=K, n_iterations=1).fit(train)
    empty = train.subset(np.arange(20))
    empty.view_mask[3] = [False, False, True]
    for language in ("en", "de"):
        empty.bow[language] = empty.bow[language].tolil()
        empty.bow[language][3] = 0
        empty.bow[language] = empty.bow[language].tocsr()
        empty.bow[language].eliminate_zeros()
    # A tuple with no known word in any language (1 in 29,000 of Multi30k's parallel captions)
    # adds nothing to the counts: a warning names it, and its sampler state stays empty.
    with pytest.warns(UserWarning, match=r"tuple\(s\) 3 have no token of the vocabularies in any language"):
        fitted = PLTM(["en", "de"], n_components=K, n_iterations=3, random_state=0).fit(empty)
    assert fitted.n_dk[3].sum() == 0 and fitted.n_dk.sum(axis=1)[np.arange(20) != 3].min() > 0
    for language in ("en", "de"):
        empty.bow[language] = empty.bow[language][:0].tocsr().copy()
        empty.bow[language].resize((20, len(empty.vocabularies[language])))
    with pytest.raises(ValueError, match="no tuple has a token of the vocabularies"):
        PLTM(["en", "de"], n_components=K, n_iterations=1).fit(empty)
    with pytest.raises(ValueError, match="languages must be a non-empty list of language views"):
        PLTM("en")
    no_words = train.subset(np.arange(20))
    no_words.vocabularies = {**no_words.vocabularies, "de": []}
    with pytest.raises(ValueError, match="view 'de' has an empty vocabulary"):
        PLTM(["en", "de"], n_components=K, n_iterations=1).fit(no_words)
