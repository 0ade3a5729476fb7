"""MCSE-style alignment (Zhang et al., NAACL 2022): a projection head per view, trained with
a symmetric InfoNCE on paired items, maps every view's embeddings into one shared space."""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._common import resolve_device
from .._validation import Interval, Names, NoneValue, check_is_fitted, check_views, validate_params
from ..data import MultiViewDataset
from ..losses import multiview_info_nce

__all__ = ["MCSEAligner"]


class MCSEAligner:
    """Projection heads ``g_v`` (one per view) into a shared ``dim``-dimensional space.

    Trained on the training tuples with the symmetric InfoNCE of every pair of views (cosine
    similarity, temperature ``temperature``): two views of one tuple are positives, views of
    other tuples in the batch are negatives (the MCSE objective, for any number of views).

    Args:
        views: the views to align (at least two).
        dim: size of the shared space.
        hidden_size: None for a linear head, else one hidden ReLU layer of this size.
        temperature: InfoNCE temperature (MCSE: 0.05).
        num_epochs, batch_size, lr: training of the heads (Adam).
        device, random_state: as in :class:`ctm_m3l.M3LTM`.
    """

    _parameter_constraints: dict[str, list] = {
        "views": [Names("view names", min_length=2)],
        "dim": [Interval(int, 1, None)],
        "hidden_size": [NoneValue(), Interval(int, 1, None)],
        "temperature": [Interval(float, 0, None, closed="neither")],
        "num_epochs": [Interval(int, 1, None)],
        "batch_size": [Interval(int, 2, None)],
        "lr": [Interval(float, 0, None, closed="neither")],
        "random_state": [NoneValue(), Interval(int, None, None)],
    }

    def __init__(self, views: Sequence[str], dim: int = 256, hidden_size: int | None = None,
                 temperature: float = 0.05, num_epochs: int = 50, batch_size: int = 256, lr: float = 1e-3,
                 device: Any = None, random_state: int | None = None) -> None:
        validate_params(self._parameter_constraints, locals(), "MCSEAligner")
        self.views = list(views)
        self.dim, self.hidden_size, self.temperature = dim, hidden_size, float(temperature)
        self.num_epochs, self.batch_size, self.lr = num_epochs, batch_size, float(lr)
        self.device = resolve_device(device)
        self.random_state = random_state
        self.heads: nn.ModuleList | None = None
        self.history: list[float] = []

    def _head(self, size: int) -> nn.Module:
        if self.hidden_size is None:
            return nn.Linear(size, self.dim)
        return nn.Sequential(nn.Linear(size, self.hidden_size), nn.ReLU(), nn.Linear(self.hidden_size, self.dim))

    def fit(self, dataset: MultiViewDataset) -> MCSEAligner:
        check_views(dataset, self.views, "MCSEAligner")
        mask = np.stack([dataset.has_view(v) for v in self.views])  # (V, n)
        if not (mask.sum(axis=0) >= 2).any():
            raise ValueError("MCSEAligner: no tuple has two of the views; there is nothing to align")
        if self.random_state is not None:
            torch.manual_seed(self.random_state)
        sizes = [dataset.embeddings[v].shape[1] for v in self.views]
        self.embedding_sizes = dict(zip(self.views, sizes))
        self.heads = nn.ModuleList(self._head(s) for s in sizes).to(self.device)
        # Standardise each view's embeddings (encoders differ wildly in scale).
        self._mean = [dataset.embeddings[v][dataset.has_view(v)].mean(axis=0) for v in self.views]
        self._std = [dataset.embeddings[v][dataset.has_view(v)].std(axis=0) + 1e-6 for v in self.views]
        x = [torch.from_numpy(((dataset.embeddings[v] - m) / s).astype(np.float32)).to(self.device)
             for v, m, s in zip(self.views, self._mean, self._std)]
        present = torch.from_numpy(mask).to(self.device)
        usable = np.flatnonzero(mask.sum(axis=0) >= 2)
        optimizer = torch.optim.Adam(self.heads.parameters(), lr=self.lr)
        generator = torch.Generator().manual_seed(self.random_state if self.random_state is not None else 0)
        for _ in range(self.num_epochs):
            order = usable[torch.randperm(len(usable), generator=generator).numpy()]
            total = 0.0
            for start in range(0, len(order), self.batch_size):
                batch = torch.from_numpy(order[start:start + self.batch_size]).to(self.device)
                if len(batch) < 2:
                    continue
                z = torch.stack([head(xv[batch]) for head, xv in zip(self.heads, x)])
                loss = multiview_info_nce(z, present[:, batch], self.temperature, similarity="cosine")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
            self.history.append(total)
        return self

    def transform(self, dataset: MultiViewDataset, view: str) -> np.ndarray:
        """``(n, dim)`` unit vectors of ``view``'s items in the shared space; NaN rows where
        a tuple lacks the view."""
        check_is_fitted(self, "heads")
        if view not in self.views:
            raise ValueError(f"MCSEAligner: unknown view {view!r}; aligned views: {self.views}")
        a = self.views.index(view)
        emb = dataset.embeddings[view]
        if emb.shape[1] != self.embedding_sizes[view]:
            raise ValueError(f"view {view!r}: {emb.shape[1]}-d embeddings, the aligner was fitted on "
                             f"{self.embedding_sizes[view]}-d")
        has = dataset.has_view(view)
        out = np.full((len(dataset), self.dim), np.nan)
        with torch.no_grad():
            x = torch.from_numpy(((emb[has] - self._mean[a]) / self._std[a]).astype(np.float32)).to(self.device)
            z = torch.nn.functional.normalize(self.heads[a](x), dim=-1)
        out[has] = z.cpu().numpy()
        return out

    def transform_dataset(self, dataset: MultiViewDataset) -> MultiViewDataset:
        """A copy of ``dataset`` whose aligned views' embeddings are their projections."""
        aligned = copy.copy(dataset)
        aligned.embeddings = dict(dataset.embeddings)
        for view in self.views:
            if view in dataset.view_names:
                aligned.embeddings[view] = np.nan_to_num(self.transform(dataset, view)).astype(np.float32)
        aligned.X_contextual = aligned.embeddings[aligned.view_names[0]]
        return aligned
