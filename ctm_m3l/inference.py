"""What a fitted M3LTM gives: topic distributions of any one view, and topic words in
every language (a mixin of :class:`~ctm_m3l.M3LTM`, with CTM's and scikit-learn's names)."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from scipy.special import softmax

from ._common import view_seed
from ._validation import check_int, check_is_fitted
from .data import MultiViewDataset
from .training.build import check_compatible

__all__ = ["TopicModelMixin"]


class TopicModelMixin:
    """Inference and topic methods; the class using it holds ``model`` (the network),
    ``views``, ``view_kinds``, ``vocabularies``, ``n_components``, ``model_type`` and ``device``."""

    #: Shared with the baselines (``ctm_m3l.baselines.Baseline``): retrieval compares topic
    #: distributions by Jensen-Shannon divergence.
    name = "m3l"
    distance = "jsd"
    has_topics = True

    @property
    def language_views(self) -> list[str]:
        """The text views, in order: each has its own vocabulary and topic-word matrix."""
        return [v for v in self.views if self.view_kinds.get(v) == "text"]

    @property
    def image_views(self) -> list[str]:
        return [v for v in self.views if self.view_kinds.get(v) == "image"]

    def _check_fitted(self) -> None:
        check_is_fitted(self, "model")

    # -- inference --------------------------------------------------------------------------------
    def _resolve_view(self, dataset: MultiViewDataset, view: str | None) -> str:
        if view is None:
            present = [v for v in self.views if v in dataset.view_names and dataset.has_view(v).any()]
            if len(present) != 1:
                raise ValueError(f"this dataset has items in views {present}; say which with view=...")
            return present[0]
        if view not in self.views:
            raise ValueError(f"unknown view {view!r}; the model's views are {self.views}")
        if view not in dataset.view_names:
            raise ValueError(f"view {view!r} is not in this dataset, whose views are {dataset.view_names}")
        return view

    def get_thetas(self, dataset: MultiViewDataset, n_samples: int = 20, view: str | None = None,
                   seed: int | None = None, batch_size: int = 4096) -> np.ndarray:
        """Topic distributions of ``dataset``'s items in one view.

        Each item goes through that view's inference network alone; ``n_samples`` samples of
        ``softmax(mu + sigma * eps)`` are averaged, as in CTM.

        Args:
            dataset: a :class:`MultiViewDataset` (e.g. ``prep.transform(texts, view="de")``).
            n_samples: samples averaged per item (paper: 20); 0: no sampling, the proportions
                at the posterior mean, ``softmax(mu)`` (deterministic, and as peaked as the
                posterior's centre: averaging samples of a wide posterior flattens the mixture).
            view: which view; may be left out when the dataset has items in one view only.
            seed: seed of the sampling noise, for repeatable results; each view draws its
                own noise from it (:func:`view_seed`), so the same seed for two views does not
                make their distributions alike.

        Returns:
            ``(n, K)`` array whose rows sum to 1; rows of tuples that lack the view are NaN.
        """
        self._check_fitted()
        if not isinstance(dataset, MultiViewDataset):
            raise TypeError(f"expected a MultiViewDataset, got {type(dataset).__name__}")
        check_int("n_samples", n_samples, 0)
        view = self._resolve_view(dataset, view)
        check_compatible(self, dataset, "dataset")
        a = self.views.index(view)
        embeddings = dataset.embeddings[view]
        rows = np.flatnonzero(dataset.has_view(view))
        out = np.full((len(dataset), self.n_components), np.nan)
        if len(rows) < len(dataset):
            warnings.warn(f"{len(dataset) - len(rows)} of {len(dataset)} tuples have no {view!r} view; "
                          "their rows are NaN", stacklevel=2)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(view_seed(seed, view))
        self.model.eval()
        with torch.no_grad():
            for s in range(0, len(rows), batch_size):
                chunk = rows[s:s + batch_size]
                x = np.ascontiguousarray(embeddings[chunk], dtype=np.float32)
                if self.inference_input == "combined" and view in self.vocabularies:  # the text's words too
                    x = np.hstack([x, dataset.bow[view][chunk].toarray().astype(np.float32)])
                x = torch.from_numpy(x).to(self.device)
                mu, logvar = self.model.posterior(a, x)
                if n_samples == 0:  # no sampling: the topic proportions at the posterior mean
                    theta = torch.softmax(mu, dim=-1)
                else:
                    eps = torch.randn((n_samples, *mu.shape), generator=generator, device=self.device)
                    theta = self.model.theta_from_noise(mu, logvar, eps).mean(dim=0)
                out[chunk] = theta.double().cpu().numpy()
        out[rows] /= out[rows].sum(axis=1, keepdims=True)
        return out


    def represent(self, dataset: MultiViewDataset, view: str, seed: int | None = 0) -> np.ndarray:
        """What retrieval compares: the topic distributions of ``view`` (see ``distance``)."""
        return self.get_thetas(dataset, view=view, seed=seed)

    def get_doc_topic_distribution(self, dataset: MultiViewDataset, n_samples: int = 20,
                                   view: str | None = None, seed: int | None = None) -> np.ndarray:
        """CTM's name for :meth:`get_thetas`."""
        return self.get_thetas(dataset, n_samples=n_samples, view=view, seed=seed)

    def transform(self, dataset: MultiViewDataset, view: str | None = None, n_samples: int = 20,
                  seed: int | None = None) -> np.ndarray:
        """scikit-learn's name for :meth:`get_thetas`."""
        return self.get_thetas(dataset, n_samples=n_samples, view=view, seed=seed)

    def get_predicted_topics(self, dataset: MultiViewDataset, n_samples: int = 20,
                             view: str | None = None, seed: int | None = None) -> np.ndarray:
        """The most likely topic of every item (-1 where the tuple lacks the view)."""
        theta = self.get_thetas(dataset, n_samples=n_samples, view=view, seed=seed)
        top = np.full(len(theta), -1)
        ok = ~np.isnan(theta).any(axis=1)
        top[ok] = theta[ok].argmax(axis=1)
        return top

    predict = get_predicted_topics

    def get_item_topics(self, dataset: MultiViewDataset, view: str | None = None,
                        language: str | None = None, n_topics: int = 3, k: int = 10,
                        n_samples: int = 20, seed: int | None = None) -> list[list[tuple[int, float, list[str]]]]:
        """Each item's top topics as ``(topic, probability, words in `language`)``.

        This is how an image gets words: its topics come from the image network, their words
        from any language's topic-word matrix (``language="de"`` labels images in German).
        Items of tuples that lack the view get an empty list.
        """
        words = self.get_topic_lists(k=k, language=language)
        theta = self.get_thetas(dataset, n_samples=n_samples, view=view, seed=seed)
        out = []
        for row in theta:
            if np.isnan(row).any():
                out.append([])
                continue
            top = np.argsort(-row)[:n_topics]
            out.append([(int(t), float(row[t]), words[t]) for t in top])
        return out

    # -- topics -------------------------------------------------------------------------------------
    def _language(self, language: str | None) -> str:
        self._check_fitted()
        if language is None:
            if len(self.language_views) == 1:
                return self.language_views[0]
            raise ValueError(f"this model has several languages {self.language_views}; pass language=...")
        if language in self.image_views:
            raise ValueError(
                f"{language!r} is an image view and has no vocabulary; image views borrow the words "
                f"of the topics: use language= one of {self.language_views}")
        if language not in self.language_views:
            raise ValueError(f"unknown language {language!r}; the model's languages are {self.language_views}")
        return language

    def get_topic_word_matrix(self, language: str | None = None) -> np.ndarray:
        """``(K, W)`` topic-word weights of ``language`` (unnormalised for prodLDA, as CTM)."""
        index = self.language_views.index(self._language(language))
        return self.model.topic_word_matrix(index).detach().cpu().numpy()

    def get_topic_word_distribution(self, language: str | None = None) -> np.ndarray:
        """``(K, W)`` rows summing to 1."""
        matrix = self.get_topic_word_matrix(language)
        return matrix if self.model_type == "LDA" else softmax(matrix, axis=1)

    def get_topic_lists(self, k: int = 10, language: str | None = None) -> list[list[str]]:
        """The ``k`` top words of every topic in ``language``; topic ``i`` is aligned across
        languages (the same topic, in each language's words)."""
        language = self._language(language)
        vocabulary = self.vocabularies[language]
        check_int("k", k, 1)
        if k > len(vocabulary):
            raise ValueError(f"k={k} is larger than the {language!r} vocabulary ({len(vocabulary)} words)")
        matrix = self.get_topic_word_matrix(language)
        top = np.argsort(-matrix, axis=1, kind="stable")[:, :k]
        return [[vocabulary[j] for j in row] for row in top]

    def get_topics(self, k: int = 10, language: str | None = None) -> dict[int, list[str]]:
        """``{topic: top k words}`` in ``language`` (CTM's format)."""
        return dict(enumerate(self.get_topic_lists(k=k, language=language)))

    def get_word_distribution_by_topic_id(self, topic: int, language: str | None = None) -> list[tuple[str, float]]:
        """``(word, probability)`` of one topic in ``language``, most probable first."""
        if not isinstance(topic, (int, np.integer)) or not 0 <= topic < self.n_components:
            raise ValueError(f"topic must be an int in [0, {self.n_components}), got {topic!r}")
        language = self._language(language)
        dist = self.get_topic_word_distribution(language)[topic]
        return sorted(zip(self.vocabularies[language], dist.tolist()), key=lambda t: -t[1])

    def get_wordcloud(self, topic_id: int, n_words: int = 5, background_color: str = "black",
                      width: int = 1000, height: int = 400, language: str | None = None):
        """Show a word cloud of one topic in ``language`` (CTM's plot, per language)."""
        import matplotlib.pyplot as plt
        import wordcloud

        words = dict(self.get_word_distribution_by_topic_id(topic_id, language)[:n_words])
        plt.figure(figsize=(10, 4), dpi=200)
        plt.axis("off")
        plt.imshow(wordcloud.WordCloud(width=width, height=height, background_color=background_color)
                   .generate_from_frequencies(words))
        plt.title(f"Topic {topic_id} ({self._language(language)})", loc="center", fontsize=24)
        plt.show()

    def get_ldavis_data_format(self, vocab, dataset: MultiViewDataset, n_samples: int = 20,
                               language: str | None = None) -> dict[str, Any]:
        """pyLDAvis input for one language (``vocab`` may be None: the model's vocabulary)."""
        language = self._language(language)
        has = dataset.has_view(language)
        bow = dataset.bow[language][has]
        return {
            "topic_term_dists": self.get_topic_word_distribution(language),
            "doc_topic_dists": self.get_thetas(dataset, n_samples=n_samples, view=language)[has],
            "doc_lengths": np.ravel(bow.sum(axis=1)),
            "vocab": list(vocab) if vocab is not None else self.vocabularies[language],
            "term_frequency": np.ravel(bow.sum(axis=0)),
        }

