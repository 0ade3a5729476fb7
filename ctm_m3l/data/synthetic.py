"""Planted multi-view tuples: shared topics, a vocabulary per language, unaligned embeddings.

What the tests and benchmarks train on when a result must be checkable: every tuple's true
topic proportions are known, so retrieval and topic alignment can be scored against them.
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np

from ..views import ImageView, TextView
from .preparation import M3LDataPreparation

__all__ = ["letters", "word", "planted_topic", "main_planted_topic", "planted_topic_counts", "planted_maps",
           "planted_tuples",
           "planted_datasets", "bayes_optimal_mrr", "planted_log_likelihoods"]


def letters(i: int) -> str:
    return chr(97 + i // 26) + chr(97 + i % 26)


def word(language: str, topic: int, j: int) -> str:
    """Letters only (the tokenizer drops digits): e.g. 'en' topic 3 word 1 -> 'enaxdaab'."""
    return f"{language}x{letters(topic)}w{letters(j)}"


_WORD = re.compile(r"^[a-z]+x([a-z])([a-z])w[a-z]{2}$")


def planted_topic(planted_word: str) -> int:
    """The planted topic that owns a word of :func:`word` (its inverse, for the topic)."""
    match = _WORD.match(planted_word)
    if not match:
        raise ValueError(f"{planted_word!r} is not a planted word (LANGxTTwJJ, letters only)")
    first, second = (ord(c) - 97 for c in match.groups())
    return 26 * first + second


def main_planted_topic(words) -> int:
    """The planted topic most of ``words`` (a topic's top words, say) belong to."""
    return Counter(map(planted_topic, words)).most_common(1)[0][0]


def planted_topic_counts(rows, language: str, n_topics: int) -> np.ndarray:
    """How many of each row's ``language`` words each planted topic owns: ``(len(rows), n_topics)``."""
    counts = np.zeros((len(rows), n_topics))
    for i, row in enumerate(rows):
        for token in row[language].split():
            counts[i, planted_topic(token)] += 1
    return counts


def planted_maps(n_topics: int, views, dims=None) -> dict[str, np.ndarray]:
    """Each view's linear map from topic proportions to its embedding, ``(n_topics, d)``: the same
    for every split and seed of one "world" (:func:`planted_tuples` embeds ``tanh(theta @ map)``
    plus noise).  ``dims`` defaults to 16, 24, 32... in the order of ``views``."""
    views = list(views)
    dims = dims or {v: 16 + 8 * i for i, v in enumerate(views)}
    rng = np.random.default_rng(1234)
    return {v: rng.normal(size=(n_topics, dims[v])) for v in views}


def planted_tuples(n: int, n_topics: int = 5, languages=("en", "de"), images=("image",),
                   words_per_topic: int = 8, doc_length: int = 40, alpha: float = 0.1,
                   dims=None, noise: float = 0.1, seed: int = 0):
    """Tuples generated from shared topic proportions.

    Every language has its own vocabulary (topic ``t`` owns the words ``word(lang, t, j)``);
    every view has its own random linear map from theta to its embedding, so embeddings are
    unaligned across views.

    Returns:
        rows (list of dicts), embeddings ({view: (n, d)}), theta ((n, K) true proportions).
    """
    rng = np.random.default_rng(seed)
    views = list(languages) + list(images)
    theta = rng.dirichlet([alpha] * n_topics, size=n)
    maps = planted_maps(n_topics, views, dims)
    rows = [{"id": f"t{i}"} for i in range(n)]
    for lang in languages:
        for i in range(n):
            topics = rng.choice(n_topics, size=doc_length, p=theta[i])
            js = rng.integers(0, words_per_topic, size=doc_length)
            rows[i][lang] = " ".join(word(lang, t, j) for t, j in zip(topics, js))
    embeddings = {v: np.tanh(theta @ maps[v]) + noise * rng.normal(size=(n, maps[v].shape[1])) for v in views}
    for v in images:
        for i in range(n):
            rows[i][v] = f"{v}_{i}.jpg"
    return rows, {k: e.astype(np.float32) for k, e in embeddings.items()}, theta


def planted_datasets(n_train: int = 800, n_test: int = 200, n_topics: int = 5, image_share: float = 1.0,
                     seed: int = 0):
    """Planted en / de / image tuples prepared for training: ``(preparation, train, test)``.

    ``image_share`` of the tuples keep their image (chosen at random), so models meet tuples
    with a missing view; the embeddings are the planted ones (no encoder runs)."""
    rows, emb, _ = planted_tuples(n_train + n_test, n_topics=n_topics, seed=seed)
    rng = np.random.default_rng(seed)
    for i in range(len(rows)):
        if rng.random() >= image_share:
            rows[i]["image"] = None
    prep = M3LDataPreparation([TextView("en", stopwords=None), TextView("de", stopwords=None), ImageView("image")])
    train = prep.fit(rows[:n_train], custom_embeddings={k: v[:n_train] for k, v in emb.items()})
    test = prep.transform(rows[n_train:], custom_embeddings={k: v[n_train:] for k, v in emb.items()})
    return prep, train, test


def planted_log_likelihoods(rows, embeddings, view: str, samples: np.ndarray, languages=("en", "de"),
                            images=("image",), noise: float = 0.1, dims=None,
                            with_embedding: bool = True) -> np.ndarray:
    """``log p(item | theta)`` of each item of ``view`` under each topic-proportion sample of
    ``samples`` ``(S, K)``, up to a constant per item, as :func:`planted_tuples` generated it
    (with the same ``languages``, ``images``, ``noise`` and ``dims``): a language's words, each
    drawn from a topic by ``theta`` then uniformly among the topic's words, and every view's
    embedding, ``tanh(theta @ map)`` plus Gaussian noise of sd ``noise``.  ``rows`` and
    ``embeddings`` hold the items to score (``with_embedding=False``: a language's words alone).
    Returns ``(len(rows), S)``."""
    views = list(languages) + list(images)
    if view not in views:
        raise ValueError(f"view {view!r} is not one of the world's views {views}")
    log_lik = np.zeros((len(rows), len(samples)))
    if with_embedding:
        maps = planted_maps(samples.shape[1], views, dims)
        mean = np.tanh(samples @ maps[view])  # (S, d)
        x = np.asarray(embeddings[view], dtype=np.float64)
        if len(x) != len(rows):
            raise ValueError(f"{len(rows)} rows but {len(x)} {view!r} embeddings")
        squared = (x ** 2).sum(1)[:, None] - 2 * x @ mean.T + (mean ** 2).sum(1)[None, :]
        log_lik -= squared / (2 * noise ** 2)
    elif view not in languages:
        raise ValueError(f"with_embedding=False leaves nothing to score for {view!r}, which has no words")
    if view in languages:
        counts = planted_topic_counts(rows, view, samples.shape[1])
        log_lik = log_lik + counts @ np.log(np.clip(samples, 1e-300, None)).T
    return log_lik


def bayes_optimal_mrr(query_log_lik: np.ndarray, target_log_lik: np.ndarray) -> float:
    """The MRR of the Bayes-optimal retrieval between two views of the same tuples: each query's
    targets ranked by ``p(query | target)``, with theta integrated over its prior by the samples
    both ``(N, S)`` arrays of :func:`planted_log_likelihoods` were computed on (draws from the
    generator's Dirichlet).  With the exact integral no model retrieves better on average: the
    ceiling of a view pair.  Too few draws make the figure lower (noisier scores rank worse),
    never higher on average, so it estimates the ceiling from below.  Row ``i`` of both arrays
    is tuple ``i``."""
    from scipy.special import logsumexp

    a, b = np.asarray(query_log_lik, np.float64), np.asarray(target_log_lik, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"query and target log-likelihoods differ in shape: {a.shape} vs {b.shape}")
    joint = np.stack([logsumexp(a[i][None, :] + b, axis=1) for i in range(len(a))])  # log p(q_i, t_j)
    score = joint - logsumexp(b, axis=1)[None, :]  # log p(q_i | t_j), up to a constant per query
    ranks = (score > np.diag(score)[:, None]).sum(1) + 1
    return float(np.mean(1.0 / ranks))
