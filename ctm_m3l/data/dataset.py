"""The prepared tuples: every view's embeddings, the languages' bags of words, the view mask."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from contextualized_topic_models.datasets.dataset import CTMDataset

from ..views import TextView, View

__all__ = ["MultiViewDataset"]


class MultiViewDataset(CTMDataset):
    """Embeddings of every view, bags of words of every language, and which views each tuple has.

    Attributes:
        views: the view specs, in order.
        embeddings: ``{view: (n, d) float32}``; rows of tuples lacking the view are zeros.
        bow: ``{language view: (n, W) scipy.sparse.csr_matrix}``.
        vocabularies: ``{language view: list of words}``.
        view_mask: ``(n, V)`` bool, ``view_mask[i, a]``: tuple ``i`` has view ``a``.
        ids: one id per tuple (the rows' ``id`` field when present, else the row number).
        documents: ``{language view: list of preprocessed texts}`` (words joined by spaces).
        skipped: ``(row, view, path, reason)`` of image files skipped with ``on_error="skip"``.

    ``X_contextual``, ``X_bow`` and ``idx2token`` (CTM's names) are the first view's
    embeddings and the first language's bag of words and vocabulary.
    """

    def __init__(self, views: Sequence[View], embeddings: dict[str, np.ndarray],
                 bow: dict[str, sp.csr_matrix], vocabularies: dict[str, list[str]],
                 view_mask: np.ndarray, ids: Sequence[Any] | None = None,
                 documents: dict[str, list[str]] | None = None,
                 skipped: list[tuple] | None = None) -> None:
        self.views = list(views)
        self.view_names = [v.name for v in self.views]
        self.embeddings = embeddings
        self.bow = bow
        self.vocabularies = vocabularies
        self.view_mask = np.asarray(view_mask, dtype=bool)
        n = self.view_mask.shape[0]
        self.ids = list(range(n)) if ids is None else list(ids)
        self.documents = documents or {}
        self.skipped = list(skipped or [])
        first_language = next((v.name for v in self.views if v.name in bow), None)
        first_bow = bow[first_language] if first_language else sp.csr_matrix((n, 0), dtype=np.float32)
        idx2token = dict(enumerate(vocabularies.get(first_language, [])))
        super().__init__(X_contextual=embeddings[self.view_names[0]], X_bow=first_bow,
                         idx2token=idx2token)

    @property
    def language_views(self) -> list[str]:
        return [v.name for v in self.views if isinstance(v, TextView)]

    def view_index(self, view: str) -> int:
        if view not in self.view_names:
            raise ValueError(f"unknown view {view!r}; this dataset has views {self.view_names}")
        return self.view_names.index(view)

    def has_view(self, view: str) -> np.ndarray:
        """``(n,)`` bool: which tuples have ``view``."""
        return self.view_mask[:, self.view_index(view)].copy()

    def __len__(self) -> int:
        return self.view_mask.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {"view_mask": torch.from_numpy(self.view_mask[i].copy())}
        for name in self.view_names:
            item[f"X_contextual_{name}"] = torch.from_numpy(self.embeddings[name][i].copy())
        for name, matrix in self.bow.items():
            item[f"X_bow_{name}"] = torch.from_numpy(matrix[i].toarray().ravel().astype(np.float32))
        return item

    def subset(self, indices: Sequence[int] | np.ndarray) -> MultiViewDataset:
        """The tuples at ``indices`` (e.g. a train/validation split), as a new dataset."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return MultiViewDataset(
            self.views, {k: v[idx] for k, v in self.embeddings.items()},
            {k: v[idx] for k, v in self.bow.items()}, self.vocabularies, self.view_mask[idx],
            ids=[self.ids[i] for i in idx],
            documents={k: [v[i] for i in idx] for k, v in self.documents.items()},
        )

    def __repr__(self) -> str:
        parts = []
        for a, name in enumerate(self.view_names):
            dim = self.embeddings[name].shape[1]
            vocab = f", {len(self.vocabularies[name])} words" if name in self.bow else ""
            parts.append(f"{name}: {int(self.view_mask[:, a].sum())} items, {dim}-d{vocab}")
        return f"MultiViewDataset({len(self)} tuples; " + "; ".join(parts) + ")"
