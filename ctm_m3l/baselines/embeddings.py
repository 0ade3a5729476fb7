"""Raw-embedding retrieval: cosine similarity of the views' embeddings (the VTM paper's CLIP
baseline).  Meaningful for aligned encoders, or after an :class:`MCSEAligner`."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data import MultiViewDataset
from .base import Baseline, check_one_space
from .mcse import MCSEAligner

__all__ = ["EmbeddingRetrieval"]


class EmbeddingRetrieval(Baseline):
    """Represents every item by its (unit-normalised) embedding; no topics."""

    name = "embeddings"
    distance = "cosine"
    has_topics = False

    def __init__(self, views: Sequence[str], aligner: MCSEAligner | None = None) -> None:
        self.views = list(views)
        self.aligner = aligner
        self.language_views: list[str] = []
        self.name = "embeddings+mcse" if aligner is not None else "embeddings"

    def fit(self, dataset: MultiViewDataset) -> EmbeddingRetrieval:
        if self.aligner is not None and self.aligner.heads is None:
            self.aligner.fit(dataset)
        if self.aligner is None:
            check_one_space(dataset, self.views, "embedding retrieval compares the views' embeddings directly")
        return self

    def represent(self, dataset: MultiViewDataset, view: str, seed: int | None = 0) -> np.ndarray:
        view = self._check_view(dataset, view)
        if self.aligner is not None:
            return self.aligner.transform(dataset, view)
        emb = dataset.embeddings[view].astype(np.float64)
        out = np.full(emb.shape, np.nan)
        has = dataset.has_view(view)
        out[has] = emb[has] / np.maximum(np.linalg.norm(emb[has], axis=1, keepdims=True), 1e-12)
        return out

    def get_thetas(self, dataset, n_samples=20, view=None, seed=None):
        raise ValueError("raw embeddings are not topic distributions; use represent(dataset, view)")

    def get_topic_lists(self, k=10, language=None):
        raise ValueError("raw-embedding retrieval has no topics")
