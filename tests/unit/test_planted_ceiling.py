"""The Bayes-optimal retrieval of the planted tuples: the likelihoods by hand, and a ceiling that
no estimator beats (benchmarks/planted_ceiling.py sets the models' MRR against it)."""
import numpy as np
import pytest

from ctm_m3l.data.synthetic import (
    bayes_optimal_mrr,
    planted_log_likelihoods,
    planted_maps,
    planted_topic,
    planted_topic_counts,
    planted_tuples,
)
from ctm_m3l.evaluation import mrr


def world(n=80, noise=0.1, doc_length=40, seed=0, topics=4):
    rows, emb, theta = planted_tuples(n, n_topics=topics, noise=noise, doc_length=doc_length, seed=seed)
    samples = np.random.default_rng(1).dirichlet([0.1] * topics, size=3000)
    return rows, emb, theta, samples


def test_the_log_likelihood_of_a_text_and_an_image_by_hand():
    rows, emb, _, samples = world(n=5)
    maps = planted_maps(4, ["en", "de", "image"])
    theta = samples[7]
    got = planted_log_likelihoods(rows, emb, "en", samples)[2, 7] - planted_log_likelihoods(rows, emb, "en",
                                                                                             samples)[2, 0]

    def by_hand(s):
        words = sum(np.log(s[planted_topic(t)]) for t in rows[2]["en"].split())
        return words - np.sum((emb["en"][2] - np.tanh(s @ maps["en"])) ** 2) / (2 * 0.1 ** 2)

    assert got == pytest.approx(by_hand(theta) - by_hand(samples[0]), rel=1e-9)
    image = planted_log_likelihoods(rows, emb, "image", samples)[4, 7]
    assert image == pytest.approx(-np.sum((emb["image"][4] - np.tanh(theta @ maps["image"])) ** 2) / 0.02, rel=1e-9)
    words = planted_log_likelihoods(rows, emb, "de", samples, with_embedding=False)[1, 7]
    assert words == pytest.approx(sum(np.log(theta[planted_topic(t)]) for t in rows[1]["de"].split()), rel=1e-9)


def test_with_exact_views_the_ceiling_is_perfect_retrieval():
    rows, emb, _, samples = world(noise=1e-3, seed=2)
    ll = {v: planted_log_likelihoods(rows, emb, v, samples, noise=1e-3) for v in ("en", "image")}
    assert bayes_optimal_mrr(ll["en"], ll["image"]) > 0.95


def test_no_estimator_retrieves_better_than_the_ceiling():
    rows, emb, theta, samples = world(n=150, seed=3)
    words = {v: planted_log_likelihoods(rows, emb, v, samples, with_embedding=False) for v in ("en", "de")}
    ceiling = bayes_optimal_mrr(words["en"], words["de"])
    counts = {v: planted_topic_counts(rows, v, 4) + 0.1 for v in ("en", "de")}
    heuristic = mrr(counts["en"] / counts["en"].sum(1, keepdims=True), counts["de"] / counts["de"].sum(1, keepdims=True))
    assert 1.5 / len(rows) < heuristic < ceiling  # above chance, below the ceiling


def test_bad_input_names_the_problem():
    rows, emb, _, samples = world(n=5)
    with pytest.raises(ValueError, match="view 'fr' is not one of"):
        planted_log_likelihoods(rows, emb, "fr", samples)
    with pytest.raises(ValueError, match="has no words"):
        planted_log_likelihoods(rows, emb, "image", samples, with_embedding=False)
    with pytest.raises(ValueError, match="5 rows but 4 'en' embeddings"):
        planted_log_likelihoods(rows, {"en": emb["en"][:4]}, "en", samples)
    with pytest.raises(ValueError, match="differ in shape"):
        bayes_optimal_mrr(np.zeros((3, 10)), np.zeros((4, 10)))
