"""The Polylingual Topic Model (Mimno et al., 2009) by collapsed Gibbs sampling.

Every tuple has one topic mixture ``theta_d ~ Dir(alpha)`` shared by all its languages; each
language ``l`` has its own topic-word distributions ``phi^l_k ~ Dir(beta)``.  A token ``w`` of
language ``l`` in tuple ``d`` is resampled from

    p(z = k | rest)  ∝  (n_dk + alpha_k) * (n^l_wk + beta) / (n^l_k + V_l * beta)

where ``n_dk`` counts the tuple's tokens of every language.  The inner loop is compiled with
numba and seeded, so a run is deterministic for a seed.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy.special import digamma

from .._common import view_seed
from .._validation import Boolean, Interval, Names, NoneValue, validate_params
from ..data import MultiViewDataset
from .base import Baseline

__all__ = ["PLTM"]

try:
    from numba import njit
except ImportError:  # pragma: no cover - numba is a dependency of the baselines
    njit = None


def _jit(fn):
    if njit is None:
        raise ImportError("PLTM needs numba: pip install numba")
    return njit(cache=True, nogil=True)(fn)


def _kernels():
    @_jit
    def seed(value):
        np.random.seed(value)

    @_jit
    def sweep(doc_ptr, words, langs, z, n_dk, n_wk, n_lk, alpha, beta, vbeta, update_words):
        """One Gibbs sweep over every token; ``update_words=False`` keeps phi fixed (inference)."""
        n_topics = n_dk.shape[1]
        cumulative = np.empty(n_topics)
        # 1 / (n^l_k + V_l beta), kept up to date: the O(K) loop multiplies instead of dividing.
        inverse = 1.0 / (n_lk + vbeta.reshape(-1, 1))
        for d in range(doc_ptr.shape[0] - 1):
            for i in range(doc_ptr[d], doc_ptr[d + 1]):
                w, lang, k = words[i], langs[i], z[i]
                n_dk[d, k] -= 1
                if update_words:
                    n_wk[w, k] -= 1
                    n_lk[lang, k] -= 1
                    inverse[lang, k] = 1.0 / (n_lk[lang, k] + vbeta[lang])
                total = 0.0
                row = inverse[lang]
                for t in range(n_topics):
                    total += (n_dk[d, t] + alpha[t]) * (n_wk[w, t] + beta) * row[t]
                    cumulative[t] = total
                u = np.random.random() * total
                k = 0
                while cumulative[k] < u and k < n_topics - 1:
                    k += 1
                z[i] = k
                n_dk[d, k] += 1
                if update_words:
                    n_wk[w, k] += 1
                    n_lk[lang, k] += 1
                    inverse[lang, k] = 1.0 / (n_lk[lang, k] + vbeta[lang])

    @_jit
    def initialise(doc_ptr, words, langs, z, n_dk, n_wk, n_lk, update_words):
        n_topics = n_dk.shape[1]
        for d in range(doc_ptr.shape[0] - 1):
            for i in range(doc_ptr[d], doc_ptr[d + 1]):
                k = np.random.randint(0, n_topics)
                z[i] = k
                n_dk[d, k] += 1
                if update_words:
                    n_wk[words[i], k] += 1
                    n_lk[langs[i], k] += 1

    return seed, sweep, initialise


_KERNELS = None


def kernels():
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = _kernels()
    return _KERNELS


class PLTM(Baseline):
    """Polylingual topic model for tuples of texts in several languages.

    Args:
        languages: the text views (images have no words: they are refused).
        n_components: number of topics ``K``.
        alpha: symmetric Dirichlet prior of the tuples' mixtures (default ``50 / K``, Mallet's).
        beta: symmetric Dirichlet prior of the topic-word distributions (default 0.01).
        n_iterations: Gibbs sweeps in training (paper: 1,000).
        optimize_alpha: re-estimate an asymmetric alpha (Minka's fixed point, as Mallet)
            every ``optimize_interval`` sweeps after ``burn_in``.
        inference_iterations: sweeps when inferring new documents with phi fixed.
        random_state: seed of the sampler (runs are deterministic for a seed).
    """

    name = "pltm"
    _fitted_attribute = "n_wk"
    _parameter_constraints: dict[str, list] = {
        "languages": [Names("language views")],
        "n_components": [Interval(int, 1, None)],
        "alpha": [NoneValue(), Interval(float, 0, None, closed="neither")],
        "beta": [Interval(float, 0, None, closed="neither")],
        "n_iterations": [Interval(int, 1, None)],
        "optimize_alpha": [Boolean()],
        "optimize_interval": [Interval(int, 1, None)],
        "burn_in": [Interval(int, 0, None)],
        "inference_iterations": [Interval(int, 1, None)],
        "random_state": [Interval(int, None, None)],
    }

    def __init__(self, languages: Sequence[str], n_components: int = 100, alpha: float | None = None,
                 beta: float = 0.01, n_iterations: int = 1000, optimize_alpha: bool = False,
                 optimize_interval: int = 20, burn_in: int = 100, inference_iterations: int = 100,
                 random_state: int = 0) -> None:
        validate_params(self._parameter_constraints, locals(), "PLTM")
        self.views = list(languages)
        self.language_views = list(languages)
        self.n_components = n_components
        self.alpha = np.full(n_components, 50.0 / n_components if alpha is None else float(alpha))
        self.beta = float(beta)
        self.n_iterations, self.optimize_alpha = n_iterations, optimize_alpha
        self.optimize_interval, self.burn_in = optimize_interval, burn_in
        self.inference_iterations, self.random_state = inference_iterations, random_state
        self.n_wk: np.ndarray | None = None

    # -- tokens ---------------------------------------------------------------------------------
    def _check(self, dataset: MultiViewDataset, languages: Sequence[str]) -> None:
        for view in languages:
            if view not in dataset.view_names:
                raise ValueError(f"pltm: view {view!r} is not in the dataset ({dataset.view_names})")
            if view not in dataset.bow:
                raise ValueError(f"pltm models words: view {view!r} has no bag of words (an image view?)")
            if not dataset.vocabularies.get(view):
                raise ValueError(f"pltm: view {view!r} has an empty vocabulary")

    def _tokens(self, dataset: MultiViewDataset, languages: Sequence[str]):
        """Every tuple's tokens, all languages together: (doc_ptr, global word ids, language ids)."""
        per_doc_words = []
        counts = np.zeros(len(dataset), dtype=np.int64)
        for view in languages:
            lang = self.views.index(view)
            bow = dataset.bow[view].tocsr()
            repeats = bow.data.astype(np.int64)
            if (bow.data != repeats).any():
                raise ValueError(f"pltm: view {view!r} has non-integer word counts")
            word_ids = np.repeat(bow.indices.astype(np.int64), repeats) + self._offsets[lang]
            doc_ids = np.repeat(np.repeat(np.arange(len(dataset)), np.diff(bow.indptr)), repeats)
            per_doc_words.append((doc_ids, word_ids, np.full(len(word_ids), lang, dtype=np.int64)))
            counts += np.bincount(doc_ids, minlength=len(dataset))
        docs = np.concatenate([d for d, _, _ in per_doc_words])
        order = np.argsort(docs, kind="stable")
        words = np.concatenate([w for _, w, _ in per_doc_words])[order]
        langs = np.concatenate([lg for _, _, lg in per_doc_words])[order]
        doc_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return doc_ptr, words, langs, counts

    # -- training -------------------------------------------------------------------------------
    def fit(self, dataset: MultiViewDataset, progress_bar: bool = False) -> PLTM:
        from tqdm.auto import tqdm

        self._check(dataset, self.views)
        self.vocabularies = {v: list(dataset.vocabularies[v]) for v in self.views}
        sizes = [len(self.vocabularies[v]) for v in self.views]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)])[:-1]
        doc_ptr, words, langs, counts = self._tokens(dataset, self.views)
        empty = np.flatnonzero(counts == 0)
        if len(empty) == len(dataset):
            raise ValueError("pltm: no tuple has a token of the vocabularies in any language; nothing to fit")
        if len(empty):  # they add nothing to the counts (as in Mallet); their topics are the prior's
            shown = ", ".join(map(str, empty[:10])) + (f" ... ({len(empty)} in all)" if len(empty) > 10 else "")
            warnings.warn(f"pltm: tuple(s) {shown} have no token of the vocabularies in any language; they "
                          "do not inform the topics", stacklevel=2)
        seed, sweep, initialise = kernels()
        k = self.n_components
        self.vbeta = np.array(sizes, dtype=np.float64) * self.beta
        z = np.zeros(len(words), dtype=np.int64)
        n_dk = np.zeros((len(dataset), k), dtype=np.int64)
        n_wk = np.zeros((sum(sizes), k), dtype=np.int64)
        n_lk = np.zeros((len(self.views), k), dtype=np.int64)
        seed(self.random_state)
        initialise(doc_ptr, words, langs, z, n_dk, n_wk, n_lk, True)
        for iteration in tqdm(range(self.n_iterations), disable=not progress_bar, desc="PLTM"):
            sweep(doc_ptr, words, langs, z, n_dk, n_wk, n_lk, self.alpha, self.beta, self.vbeta, True)
            if self.optimize_alpha and iteration >= self.burn_in and (iteration + 1) % self.optimize_interval == 0:
                self.alpha = _minka_alpha(self.alpha, n_dk, counts)
        self.n_wk, self.n_lk, self.n_dk = n_wk, n_lk, n_dk
        self.n_tokens = len(words)
        return self

    # -- outputs --------------------------------------------------------------------------------
    def topic_word(self, language: str) -> np.ndarray:
        """``(K, V_l)`` topic-word distributions of ``language``."""
        self._check_fitted()
        if language not in self.views:
            raise ValueError(f"pltm has topics in {self.views}, not in {language!r}")
        lang = self.views.index(language)
        block = self.n_wk[self._offsets[lang]:self._offsets[lang] + len(self.vocabularies[language])]
        return ((block + self.beta) / (self.n_lk[lang] + self.vbeta[lang])).T

    def get_topic_lists(self, k: int = 10, language: str | None = None) -> list[list[str]]:
        language = language or self.views[0]
        phi = self.topic_word(language)
        top = np.argsort(-phi, axis=1, kind="stable")[:, :k]
        return [[self.vocabularies[language][j] for j in row] for row in top]

    def get_thetas(self, dataset: MultiViewDataset, n_samples: int = 20, view: str | None = None,
                   seed: int | None = None) -> np.ndarray:
        """Topic mixtures of one language's documents, sampled with phi fixed; the mean of the
        last ``min(n_samples, inference_iterations // 2)`` sweeps.  Tuples without the view get
        NaN rows; documents with no known word get the prior mean."""
        self._check_fitted()
        view = self._check_view(dataset, view)
        self._check(dataset, [view])
        if dataset.vocabularies[view] != self.vocabularies[view]:
            raise ValueError(f"pltm: view {view!r} was prepared with another vocabulary than in fit")
        seed_fn, sweep, initialise = kernels()
        doc_ptr, words, langs, counts = self._tokens(dataset, [view])
        k = self.n_components
        z = np.zeros(len(words), dtype=np.int64)
        n_dk = np.zeros((len(dataset), k), dtype=np.int64)
        n_wk, n_lk = self.n_wk.copy(), self.n_lk.copy()
        # Each view samples from its own stream (ctm_m3l._common.view_seed), as the neural models do.
        seed_fn(view_seed(self.random_state if seed is None else seed, view))
        initialise(doc_ptr, words, langs, z, n_dk, n_wk, n_lk, False)
        kept = max(1, min(n_samples, self.inference_iterations // 2))
        total = np.zeros((len(dataset), k))
        for iteration in range(self.inference_iterations):
            sweep(doc_ptr, words, langs, z, n_dk, n_wk, n_lk, self.alpha, self.beta, self.vbeta, False)
            if iteration >= self.inference_iterations - kept:
                total += n_dk
        theta = (total / kept + self.alpha) / (counts[:, None] + self.alpha.sum())
        theta[~dataset.has_view(view)] = np.nan
        return theta


def _minka_alpha(alpha: np.ndarray, n_dk: np.ndarray, lengths: np.ndarray, iterations: int = 5) -> np.ndarray:
    """Minka's fixed-point update of an asymmetric Dirichlet prior from the topic counts."""
    for _ in range(iterations):
        total = alpha.sum()
        numerator = (digamma(n_dk + alpha) - digamma(alpha)).sum(axis=0)
        denominator = (digamma(lengths + total) - digamma(total)).sum()
        alpha = np.maximum(alpha * numerator / denominator, 1e-6)
    return alpha
