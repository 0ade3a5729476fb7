"""The paper's evaluation: retrieval between views, distribution alignment, topic quality.

Representations are row-aligned: row ``i`` of every view belongs to tuple ``i``.  Rows that
are NaN (a tuple without that view, as ``get_thetas`` returns them) are left out.  Retrieval
ranks targets by Jensen-Shannon divergence for topic distributions (``distance="jsd"``) or
by cosine for embeddings (``distance="cosine"``).  JSD uses natural logarithms (0 to ln 2).
"""
from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence

import numpy as np

from .data.io import repeated_ids

__all__ = [
    "jsd_matrix", "mean_jsd", "distance_matrix", "relevance_by_id", "mrr", "uap", "recall_at_k",
    "npmi", "npmi_per_topic", "topic_diversity", "inverted_rbo", "cnpmi", "alignment", "uniformity", "evaluate",
]


def jsd_matrix(p: np.ndarray, q: np.ndarray, block: int = 512) -> np.ndarray:
    """``(n, m)`` Jensen-Shannon divergences between the rows of ``p`` and of ``q``."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    out = np.empty((len(p), len(q)))
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0).sum(1)
    qlogq = np.where(q > 0, q * np.log(np.where(q > 0, q, 1)), 0).sum(1)
    for s in range(0, len(p), block):
        a = p[s:s + block, None, :]
        m = 0.5 * (a + q[None, :, :])
        mlogm = np.where(m > 0, m * np.log(np.where(m > 0, m, 1)), 0).sum(-1)
        out[s:s + block] = 0.5 * (plogp[s:s + block, None] + qlogq[None, :]) - mlogm
    return np.maximum(out, 0)


def mean_jsd(p: np.ndarray, q: np.ndarray) -> float:
    """Mean JSD between the two views of the same tuples (rows missing in either are skipped)."""
    keep = ~(np.isnan(p).any(1) | np.isnan(q).any(1))
    if not keep.any():
        raise ValueError("no tuple has both views")
    a, b = p[keep], q[keep]
    m = 0.5 * (a + b)

    def kl(x, y):
        return np.where(x > 0, x * np.log(np.where(x > 0, x, 1) / np.where(y > 0, y, 1)), 0).sum(1)

    return float(np.mean(0.5 * kl(a, m) + 0.5 * kl(b, m)))


def distance_matrix(query: np.ndarray, target: np.ndarray, distance: str = "jsd") -> np.ndarray:
    """``(n_q, n_t)`` distances: JSD, or 1 - cosine similarity."""
    if distance == "jsd":
        return jsd_matrix(query, target)
    if distance == "cosine":
        q = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
        t = target / np.maximum(np.linalg.norm(target, axis=1, keepdims=True), 1e-12)
        return 1.0 - q @ t.T
    raise ValueError(f"distance must be 'jsd' or 'cosine', got {distance!r}")


def relevance_by_id(query_ids: Sequence, target_ids: Sequence) -> np.ndarray:
    """``(n_q, n_t)`` bool: a target is relevant to a query with the same id (e.g. all images
    of one article, as in the paper's test set)."""
    target_ids = np.asarray(target_ids, dtype=object)
    return np.stack([target_ids == q for q in query_ids]) if len(query_ids) else np.zeros((0, len(target_ids)), bool)


def _ranking(query, target, relevance, distance):
    query, target = np.asarray(query, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if relevance is None:
        if len(query) != len(target):
            raise ValueError("without relevance=, query and target rows must pair up (same length)")
        relevance = np.eye(len(query), dtype=bool)
    relevance = np.asarray(relevance, dtype=bool)
    if relevance.shape != (len(query), len(target)):
        raise ValueError(f"relevance must have shape {(len(query), len(target))}, got {relevance.shape}")
    q_ok, t_ok = ~np.isnan(query).any(1), ~np.isnan(target).any(1)
    query, target, relevance = query[q_ok], target[t_ok], relevance[q_ok][:, t_ok]
    has_relevant = relevance.any(1)
    if not has_relevant.any():
        raise ValueError("no query has a relevant target among the rows that are not NaN")
    dist = distance_matrix(query[has_relevant], target, distance)
    return dist, relevance[has_relevant]


def _ranks(dist: np.ndarray, relevance: np.ndarray) -> list[np.ndarray]:
    """Sorted 1-based ranks of each query's relevant targets; at equal distance relevant
    targets are placed last, so ties count against the query."""
    return [np.flatnonzero(rel[np.lexsort((rel, d))]) + 1 for d, rel in zip(dist, relevance)]


def mrr(query: np.ndarray, target: np.ndarray, relevance: np.ndarray | None = None, distance: str = "jsd",
        cutoff: int | None = None) -> float:
    """Mean reciprocal rank of the first relevant target (paper Table 1; ``cutoff=100``:
    MRR@100, where a first hit below rank 100 scores 0).  Without ``relevance``, target ``i``
    is the one relevant item of query ``i``."""
    dist, relevance = _ranking(query, target, relevance, distance)
    first = np.array([r.min() for r in _ranks(dist, relevance)], dtype=np.float64)
    scores = 1.0 / first
    if cutoff is not None:
        scores[first > cutoff] = 0.0
    return float(scores.mean())


def uap(query: np.ndarray, target: np.ndarray, relevance: np.ndarray | None = None, distance: str = "jsd") -> float:
    """Uninterpolated average precision (Manning & Schütze; paper Table 2): for each query,
    the mean of the precision at the rank of each relevant target; then the mean over queries."""
    dist, relevance = _ranking(query, target, relevance, distance)
    scores = [np.mean(np.arange(1, len(r) + 1) / r) for r in _ranks(dist, relevance)]
    return float(np.mean(scores))


def recall_at_k(query: np.ndarray, target: np.ndarray, k: int, relevance: np.ndarray | None = None,
                distance: str = "jsd") -> float:
    """Share of queries with a relevant target in the top ``k`` (VTM paper)."""
    dist, relevance = _ranking(query, target, relevance, distance)
    return float(np.mean([r.min() <= k for r in _ranks(dist, relevance)]))


def npmi(topics: Sequence[Sequence[str]], texts: Sequence[Sequence[str]], topk: int = 10) -> float:
    """Topic coherence NPMI with gensim's ``CoherenceModel`` (``c_npmi``) against ``texts``
    (tokenised documents, e.g. ``[d.split() for d in dataset.documents["en"]]``), as in the paper:
    the mean of :func:`npmi_per_topic`."""
    return float(_npmi_model(topics, texts, topk).get_coherence())


def npmi_per_topic(topics: Sequence[Sequence[str]], texts: Sequence[Sequence[str]], topk: int = 10) -> np.ndarray:
    """Each topic's NPMI (the values :func:`npmi` averages), in the order of ``topics``: where a
    model's coherence is lost, e.g. in topics that join two themes whose words never meet."""
    return np.asarray(_npmi_model(topics, texts, topk).get_coherence_per_topic(), dtype=np.float64)


def _npmi_model(topics, texts, topk):
    from gensim.corpora.dictionary import Dictionary
    from gensim.models.coherencemodel import CoherenceModel

    topics = [list(t[:topk]) for t in topics]
    dictionary = Dictionary(texts)
    unknown = sorted({w for t in topics for w in t if w not in dictionary.token2id})
    if unknown:
        raise ValueError(
            f"{len(unknown)} topic word(s) never occur in the reference texts, e.g. {unknown[:10]}, so their "
            "NPMI is undefined; compute it against the texts the vocabulary was built from (a subset of a "
            "prepared dataset may lack some of its words: prepare the subset on its own instead)")
    return CoherenceModel(topics=topics, texts=texts, dictionary=dictionary, coherence="c_npmi", topn=topk,
                          processes=1)


def topic_diversity(topics: Sequence[Sequence[str]], topk: int = 25) -> float:
    """Share of unique words among the top ``topk`` words of all topics (Dieng et al.)."""
    words = [w for t in topics for w in t[:topk]]
    return len(set(words)) / len(words)


def inverted_rbo(topics: Sequence[Sequence[str]], topk: int = 10, weight: float = 0.9) -> float:
    """1 - mean rank-biased overlap between every pair of topics (CTM's own implementation)."""
    from contextualized_topic_models.evaluation.measures import InvertedRBO

    return float(InvertedRBO([list(t) for t in topics]).score(topk=topk, weight=weight))


def cnpmi(topics_a: Sequence[Sequence[str]], topics_b: Sequence[Sequence[str]], docs_a: Sequence[Sequence[str]],
          docs_b: Sequence[Sequence[str]], topk: int = 10) -> float:
    """Cross-lingual NPMI (Hao et al., 2018): for aligned topic ``i``, the NPMI of a word of
    language A and a word of language B co-occurring in the same tuple (``docs_a[j]`` and
    ``docs_b[j]`` are the two sides of tuple ``j``); pairs that never co-occur score -1."""
    if len(docs_a) != len(docs_b):
        raise ValueError("docs_a and docs_b must be the two sides of the same tuples")
    sets_a, sets_b = [set(d) for d in docs_a], [set(d) for d in docs_b]
    n = len(sets_a)

    def occurs(word, sets):
        return np.fromiter((word in s for s in sets), bool, n)

    scores = []
    for words_a, words_b in zip(topics_a, topics_b):
        # Each word's occurrence vector once per topic, not once per word pair.
        occur_a = [occurs(w, sets_a) for w in words_a[:topk]]
        occur_b = [occurs(w, sets_b) for w in words_b[:topk]]
        for in_a, in_b in itertools.product(occur_a, occur_b):
            p_ab = (in_a & in_b).mean()
            if p_ab == 0:
                scores.append(-1.0)
            elif p_ab == 1:
                scores.append(1.0)
            else:
                scores.append(np.log(p_ab / (in_a.mean() * in_b.mean())) / -np.log(p_ab))
    return float(np.mean(scores))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def alignment(x: np.ndarray, y: np.ndarray, alpha: float = 2.0) -> float:
    """Wang & Isola's alignment: mean ``||x_i - y_i||^alpha`` of L2-normalised paired rows
    (lower is better)."""
    keep = ~(np.isnan(x).any(1) | np.isnan(y).any(1))
    return float(np.mean(np.linalg.norm(_unit_rows(x[keep]) - _unit_rows(y[keep]), axis=1) ** alpha))


def uniformity(x: np.ndarray, t: float = 2.0) -> float:
    """Wang & Isola's uniformity: ``log mean exp(-t ||x_i - x_j||^2)`` over pairs i < j of
    L2-normalised rows (lower is better)."""
    z = _unit_rows(x[~np.isnan(x).any(1)])
    sq = np.maximum(2.0 - 2.0 * z @ z.T, 0.0)
    i, j = np.triu_indices(len(z), k=1)
    return float(np.log(np.mean(np.exp(-t * sq[i, j]))))


def evaluate(system, train, test, seed: int | None = 0, topk: int = 10) -> dict[str, float]:
    """Every metric for a fitted system (``M3LTM`` or a baseline) on held-out tuples.

    Keys are ``{metric}_{query}_{target}`` for retrieval (``mrr``, ``uap``, ``recall1``,
    ``recall5``, ``recall10``, ``mrr100``; targets relevant by tuple id), ``jsd_{a}_{b}`` and
    ``alignment_{a}_{b}`` per pair of views, ``uniformity_{view}``, for topic proportions
    ``largest_share_{view}`` (the mean largest topic share: how peaked the mixtures are, 1/K for
    flat ones), and per language
    ``npmi_{l}``, ``diversity_{l}``, ``irbo_{l}`` plus ``cnpmi_{l1}_{l2}`` (topics of
    ``system``, coherence against the training texts; ``cnpmi`` only where topic ``i`` is one
    topic in every language, ``system.aligned_topics``).
    """
    views = [v for v in system.views if v in test.view_names and test.has_view(v).any()]
    with warnings.catch_warnings():
        # NaN rows for tuples without a view are expected here: every metric leaves them out.
        warnings.filterwarnings("ignore", message=r".*their rows are NaN")
        reps = {v: system.represent(test, v, seed=seed) for v in views}
    for language in getattr(test, "language_views", []):
        if language in views:
            repeated = repeated_ids([test.ids[i] for i in np.flatnonzero(test.has_view(language))])
            if repeated:
                raise ValueError(
                    f"test data, view {language!r}: {len(repeated)} id(s) name more than one text (e.g. "
                    f"{repeated[:3]}); retrieval counts tuples with the same id as matches, so every text needs "
                    "its own id (several images of one text may share its id)")
    ids = np.empty(len(test.ids), dtype=object)
    ids[:] = list(test.ids)  # compared as given: the row number 3 is not the id "3"
    metrics: dict[str, float] = {}
    for a, b in itertools.permutations(views, 2):
        qa, tb = ~np.isnan(reps[a]).any(1), ~np.isnan(reps[b]).any(1)
        relevance = relevance_by_id(ids[qa], ids[tb])
        if not relevance.any():
            continue
        q, t = reps[a][qa], reps[b][tb]
        metrics[f"mrr_{a}_{b}"] = mrr(q, t, relevance, system.distance)
        metrics[f"mrr100_{a}_{b}"] = mrr(q, t, relevance, system.distance, cutoff=100)
        metrics[f"uap_{a}_{b}"] = uap(q, t, relevance, system.distance)
        for k in (1, 5, 10):
            metrics[f"recall{k}_{a}_{b}"] = recall_at_k(q, t, k, relevance, system.distance)
    for a, b in itertools.combinations(views, 2):
        both = ~(np.isnan(reps[a]).any(1) | np.isnan(reps[b]).any(1))
        if both.any():
            if system.distance == "jsd":
                metrics[f"jsd_{a}_{b}"] = mean_jsd(reps[a], reps[b])
            metrics[f"alignment_{a}_{b}"] = alignment(reps[a], reps[b])
    for v in views:
        metrics[f"uniformity_{v}"] = uniformity(reps[v])
        if system.distance == "jsd":
            finite = reps[v][~np.isnan(reps[v]).any(1)]
            metrics[f"largest_share_{v}"] = float(finite.max(axis=1).mean())
    if getattr(system, "has_topics", False):
        topics = {}
        for language in system.language_views:
            if language not in train.documents:
                continue
            topics[language] = system.get_topic_lists(k=max(topk, 25), language=language)
            texts = [d.split() for d in train.documents[language] if d]
            metrics[f"npmi_{language}"] = npmi(topics[language], texts, topk=topk)
            metrics[f"diversity_{language}"] = topic_diversity(topics[language], topk=25)
            metrics[f"irbo_{language}"] = inverted_rbo(topics[language], topk=topk)
        for la, lb in itertools.combinations(topics if getattr(system, "aligned_topics", True) else [], 2):
            both = train.has_view(la) & train.has_view(lb)
            docs_a = [train.documents[la][i].split() for i in np.flatnonzero(both)]
            docs_b = [train.documents[lb][i].split() for i in np.flatnonzero(both)]
            metrics[f"cnpmi_{la}_{lb}"] = cnpmi(topics[la], topics[lb], docs_a, docs_b, topk=topk)
    return metrics
