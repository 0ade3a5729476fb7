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

__all__ = ["letters", "word", "planted_topic", "main_planted_topic", "planted_tuples", "planted_datasets"]


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
    dims = dims or {v: 16 + 8 * i for i, v in enumerate(views)}
    theta = rng.dirichlet([alpha] * n_topics, size=n)
    maps_rng = np.random.default_rng(1234)  # the same maps for every split of one "world"
    maps = {v: maps_rng.normal(size=(n_topics, dims[v])) for v in views}
    rows = [{"id": f"t{i}"} for i in range(n)]
    for lang in languages:
        for i in range(n):
            topics = rng.choice(n_topics, size=doc_length, p=theta[i])
            js = rng.integers(0, words_per_topic, size=doc_length)
            rows[i][lang] = " ".join(word(lang, t, j) for t, j in zip(topics, js))
    embeddings = {v: np.tanh(theta @ maps[v]) + noise * rng.normal(size=(n, dims[v])) for v in views}
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
