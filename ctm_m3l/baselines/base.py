"""The interface every system shares with M3LTM, so evaluation treats them all alike."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from .._validation import check_is_fitted
from ..data import MultiViewDataset


class Baseline(ABC):
    """A system that maps the items of each view to a representation.

    Topic models return topic distributions from :meth:`get_thetas` (compared by
    Jensen-Shannon divergence, ``distance = "jsd"``) and topic words from
    :meth:`get_topic_lists`; embedding systems return vectors (``distance = "cosine"``) and
    have no topics (``has_topics = False``).  :meth:`represent` is what retrieval uses.
    """

    name: str = "baseline"
    distance: str = "jsd"
    has_topics: bool = True
    #: Topic ``i`` is the same topic in every language (``cnpmi`` compares them); False for
    #: systems with one unrelated model per language.
    aligned_topics: bool = True
    views: list[str]

    @abstractmethod
    def fit(self, dataset: MultiViewDataset) -> Baseline:
        """Train on a :class:`MultiViewDataset`."""

    @abstractmethod
    def get_thetas(self, dataset: MultiViewDataset, n_samples: int = 20, view: str | None = None,
                   seed: int | None = None) -> np.ndarray:
        """``(n, K)`` topic distributions of one view's items; NaN rows where a tuple lacks it."""

    @abstractmethod
    def get_topic_lists(self, k: int = 10, language: str | None = None) -> list[list[str]]:
        """Top ``k`` words of every topic in ``language``."""

    def represent(self, dataset: MultiViewDataset, view: str, seed: int | None = 0) -> np.ndarray:
        """The representation retrieval compares (with :attr:`distance`)."""
        return self.get_thetas(dataset, view=view, seed=seed)

    #: The attribute ``fit`` sets: None until the system is fitted.
    _fitted_attribute: str = "ctm"

    def _check_fitted(self) -> None:
        check_is_fitted(self, self._fitted_attribute, self.name)

    def _check_view(self, dataset: MultiViewDataset, view: str | None) -> str:
        if not isinstance(dataset, MultiViewDataset):
            raise TypeError(f"expected a MultiViewDataset, got {type(dataset).__name__}")
        if view is None or view not in self.views:
            raise ValueError(f"{self.name}: view must be one of {self.views}, got {view!r}")
        if view not in dataset.view_names:
            raise ValueError(f"{self.name}: the dataset has no view {view!r} (its views: {dataset.view_names})")
        return view


def rows_or_nan(dataset: MultiViewDataset, view: str, values: np.ndarray, width: int) -> np.ndarray:
    """Scatter ``values`` (one row per tuple that has ``view``) into ``(n, width)``, NaN elsewhere."""
    out = np.full((len(dataset), width), np.nan)
    out[dataset.has_view(view)] = values
    return out


def check_one_space(dataset: MultiViewDataset, views: Sequence[str], why: str) -> None:
    """Refuse views whose embeddings cannot share one space (different sizes: unaligned
    encoders); ``why`` says what the system does with them, to start the message."""
    sizes = {v: dataset.embeddings[v].shape[1] for v in views if v in dataset.embeddings}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{why}, but the views' embeddings have different sizes {sizes} (unaligned encoders); "
                         "use one aligned encoder or pass aligner=MCSEAligner(views)")
