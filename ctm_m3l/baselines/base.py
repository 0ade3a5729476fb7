"""The interface every system shares with M3LTM, so evaluation treats them all alike."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from contextualized_topic_models.datasets.dataset import CTMDataset

from ..data import MultiViewDataset
from .._common import view_seed


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
    views: list[str]

    @abstractmethod
    def fit(self, dataset: MultiViewDataset) -> "Baseline":
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


class BatchedCTMDataset(CTMDataset):
    """CTM's dataset, read a batch at a time.

    CTM's ``DataLoader`` asks its dataset for one row at a time, and ``CTMDataset`` densifies
    each sparse bag-of-words row on its own: on 2 CPU cores that took most of a ZeroShotTM
    epoch (~6 s for 29,000 documents).  ``__getitems__`` (PyTorch's batched fetch) slices and
    densifies the whole batch at once and hands CTM's collate the same rows, so training sees
    the same tensors in the same order (``tests/test_baselines.py``), only sooner.  Labels,
    which no baseline uses, take CTM's own path.
    """

    def __getitems__(self, indices: list[int]) -> list[dict]:
        if self.labels is not None:
            return [self[i] for i in indices]
        rows = np.asarray(indices)
        bow = self.X_bow[rows]
        sparse = sp.issparse(bow)
        bow = torch.from_numpy(np.asarray(bow.toarray() if sparse else bow, dtype=np.float32))
        contextual = torch.from_numpy(np.asarray(self.X_contextual[rows], dtype=np.float32))
        # CTM's rows: X_bow (1, W) from a sparse row's todense(), (W,) from a dense one; X_contextual (d,).
        return [{"X_bow": bow[j:j + 1] if sparse else bow[j], "X_contextual": contextual[j]} for j in range(len(rows))]


def ctm_thetas(ctm, embeddings: np.ndarray, n_samples: int, seed: int | None, view: str) -> np.ndarray:
    """CTM's own ``get_thetas`` on ``view``'s embeddings alone (a ZeroShotTM infers from the
    contextual input; its bag-of-words input is unused), with the sampling noise seeded when
    asked, independently per view (see :func:`ctm_m3l._common.view_seed`)."""
    items = BatchedCTMDataset(X_contextual=np.asarray(embeddings, dtype=np.float32),
                       X_bow=sp.csr_matrix((len(embeddings), 1), dtype=np.float32), idx2token={0: ""})
    with torch.random.fork_rng():
        if seed is not None:
            torch.manual_seed(view_seed(seed, view))
        return ctm.get_thetas(items, n_samples=n_samples)


def seed_ctm(random_state: int | None) -> None:
    """Seed what a CTM model draws from (torch's and numpy's global generators), if asked."""
    if random_state is not None:
        torch.manual_seed(random_state)
        np.random.seed(random_state)


def check_ctm_batch(n_items: int, batch_size: int, what: str) -> None:
    """CTM's training loop drops incomplete batches: fewer items than a batch trains on nothing."""
    if n_items < batch_size:
        raise ValueError(f"{what}: only {n_items} training items, fewer than batch_size={batch_size}; CTM's "
                         "training drops incomplete batches, so nothing would be learned; lower batch_size")
