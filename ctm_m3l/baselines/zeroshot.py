"""ZeroshotTM (Bianchi et al., 2021): CTM's own ``ZeroShotTM`` trained on one language,
applied to every other view through the embeddings alone."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from contextualized_topic_models.models.ctm import ZeroShotTM

from .._validation import InstanceOf, InvalidParameterError, Names, NoneValue, validate_params
from ..data import MultiViewDataset
from ._ctm import CTM_CONSTRAINTS, ctm_thetas, fit_ctm
from .base import Baseline, check_one_space, rows_or_nan
from .mcse import MCSEAligner

__all__ = ["ZeroShotBaseline"]


class ZeroShotBaseline(Baseline):
    """CTM's ``ZeroShotTM`` on ``train_view``'s texts; other views are fed to its inference
    network as they are, which needs embeddings in one space.

    Args:
        train_view: the language it is trained on (its bag of words and embeddings).
        views: every view it will be asked about.
        aligner: None when the encoders are aligned (CLIP, multilingual SBERT); else an
            :class:`MCSEAligner` (fitted or not) that maps every view into one space first.
            Unaligned encoders without an aligner are refused.
        n_components, num_epochs, batch_size, lr, hidden_sizes: passed to ``ZeroShotTM``
            (paper: 100 topics, 100 epochs, batch 64, one hidden layer of 100).
        ctm_kwargs: any other ``ZeroShotTM`` argument.
    """

    name = "zeroshot"
    _parameter_constraints: dict[str, list] = {
        "views": [Names("view names")],
        "aligner": [NoneValue(), InstanceOf(MCSEAligner, "an MCSEAligner")],
        **CTM_CONSTRAINTS,
    }

    def __init__(self, train_view: str, views: Sequence[str], aligner: MCSEAligner | None = None,
                 n_components: int = 100, num_epochs: int = 100, batch_size: int = 64, lr: float = 2e-3,
                 hidden_sizes: tuple = (100,), random_state: int | None = None, **ctm_kwargs: Any) -> None:
        validate_params(self._parameter_constraints, locals(), "ZeroShotBaseline")
        if train_view not in views:
            raise InvalidParameterError(f"ZeroShotBaseline: train_view {train_view!r} must be one of views {list(views)}")
        self.train_view, self.views, self.aligner = train_view, list(views), aligner
        self.n_components, self.num_epochs, self.batch_size, self.lr = n_components, num_epochs, batch_size, lr
        self.hidden_sizes, self.random_state, self.ctm_kwargs = tuple(hidden_sizes), random_state, ctm_kwargs
        self.ctm: ZeroShotTM | None = None
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
        if language not in (None, self.train_view):
            raise ValueError(f"zeroshot has topics only in its training language {self.train_view!r}, "
                             f"not {language!r}")
        return self.ctm.get_topic_lists(k)
