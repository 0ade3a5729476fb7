"""ZeroshotTM (Bianchi et al., 2021): CTM's own ``ZeroShotTM`` trained on one language,
applied to every other view through the embeddings alone."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from contextualized_topic_models.models.ctm import ZeroShotTM

from .._validation import Boolean, InstanceOf, InvalidParameterError, Names, NoneValue, validate_params
from ..data import MultiViewDataset
from ._ctm import CTM_CONSTRAINTS, ctm_thetas, fit_ctm
from .base import Baseline, check_one_space, rows_or_nan
from .mcse import MCSEAligner

__all__ = ["ZeroShotBaseline"]


class ZeroShotBaseline(Baseline):
    """CTM's ``ZeroShotTM`` on ``train_view``'s texts; other views are fed to its inference
    network as they are, which needs embeddings in one space.

    As the paper trains it ("separate models on the English and German articles"), every other
    language of ``views`` gets a ZeroShotTM of its own too (``each_language=True``): its
    topics, in its own words, are that language's (coherence per language); retrieval between
    views compares the topic distributions of the ``train_view`` model, the one space they
    share.

    Args:
        train_view: the language it is trained on (its bag of words and embeddings).
        views: every view it will be asked about.
        aligner: None when the encoders are aligned (CLIP, multilingual SBERT); else an
            :class:`MCSEAligner` (fitted or not) that maps every view into one space first.
            Unaligned encoders without an aligner are refused.
        n_components, num_epochs, batch_size, lr, hidden_sizes: passed to ``ZeroShotTM``
            (paper: 100 topics, 100 epochs, batch 64, one hidden layer of 100).
        each_language: also train one ZeroShotTM per other language (its topic words only).
        ctm_kwargs: any other ``ZeroShotTM`` argument.
    """

    name = "zeroshot"
    _parameter_constraints: dict[str, list] = {
        "views": [Names("view names")],
        "aligner": [NoneValue(), InstanceOf(MCSEAligner, "an MCSEAligner")],
        "each_language": [Boolean()],
        **CTM_CONSTRAINTS,
    }

    def __init__(self, train_view: str, views: Sequence[str], aligner: MCSEAligner | None = None,
                 n_components: int = 100, num_epochs: int = 100, batch_size: int = 64, lr: float = 2e-3,
                 hidden_sizes: tuple = (100,), random_state: int | None = None, each_language: bool = True,
                 **ctm_kwargs: Any) -> None:
        validate_params(self._parameter_constraints, locals(), "ZeroShotBaseline")
        if train_view not in views:
            raise InvalidParameterError(f"ZeroShotBaseline: train_view {train_view!r} must be one of views {list(views)}")
        self.train_view, self.views, self.aligner = train_view, list(views), aligner
        self.n_components, self.num_epochs, self.batch_size, self.lr = n_components, num_epochs, batch_size, lr
        self.hidden_sizes, self.random_state, self.ctm_kwargs = tuple(hidden_sizes), random_state, ctm_kwargs
        self.each_language = each_language
        self.ctm: ZeroShotTM | None = None
        self.language_models: dict[str, ZeroShotTM] = {}
        self.language_views = [train_view]
        # Results say when the views were aligned by MCSE heads rather than by their encoders.
        self.name = "zeroshot+mcse" if aligner is not None else "zeroshot"

    def _aligned(self, dataset: MultiViewDataset) -> MultiViewDataset:
        if self.aligner is not None:
            return self.aligner.transform_dataset(dataset)
        check_one_space(dataset, self.views, "ZeroshotTM feeds every view to one inference network")
        return dataset

    def fit(self, dataset: MultiViewDataset) -> ZeroShotBaseline:
        if self.train_view not in dataset.bow:
            raise ValueError(f"zeroshot: train_view {self.train_view!r} is not a text view of the dataset")
        if self.aligner is not None and self.aligner.heads is None:
            self.aligner.fit(dataset)
        data = self._aligned(dataset)
        has = data.has_view(self.train_view)
        self.vocabulary = list(data.vocabularies[self.train_view])
        settings = dict(n_components=self.n_components, num_epochs=self.num_epochs, batch_size=self.batch_size,
                        lr=self.lr, hidden_sizes=self.hidden_sizes, num_data_loader_workers=0, **self.ctm_kwargs)
        self.ctm = fit_ctm(ZeroShotTM, data.embeddings[self.train_view][has], data.bow[self.train_view][has],
                           self.vocabulary, settings, self.random_state, f"zeroshot on {self.train_view!r}")
        self.language_models = {self.train_view: self.ctm}
        others = [v for v in self.views if v != self.train_view and v in dataset.bow] if self.each_language else []
        for language in others:  # monolingual models on the language's own embeddings and words
            has = dataset.has_view(language)
            self.language_models[language] = fit_ctm(
                ZeroShotTM, dataset.embeddings[language][has], dataset.bow[language][has],
                list(dataset.vocabularies[language]), settings, self.random_state, f"zeroshot on {language!r}")
        self.language_views = [v for v in self.views if v in self.language_models]
        self.aligned_topics = len(self.language_views) == 1  # separate models: topic i differs per language
        return self

    def get_thetas(self, dataset: MultiViewDataset, n_samples: int = 20, view: str | None = None,
                   seed: int | None = None) -> np.ndarray:
        self._check_fitted()
        view = self._check_view(dataset, view)
        data = self._aligned(dataset)
        theta = ctm_thetas(self.ctm, data.embeddings[view][data.has_view(view)], n_samples, seed, view)
        return rows_or_nan(dataset, view, theta, self.n_components)

    def get_topic_lists(self, k: int = 10, language: str | None = None) -> list[list[str]]:
        self._check_fitted()
        language = self.train_view if language is None else language
        if language not in self.language_models:
            raise ValueError(f"zeroshot has topics in {self.language_views} (a model per language with "
                             f"each_language=True), not in {language!r}")
        return self.language_models[language].get_topic_lists(k)
