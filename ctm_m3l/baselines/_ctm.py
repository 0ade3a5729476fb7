"""What the ZeroshotTM baselines share: CTM's own fitting sequence and its inference, with
the data read a batch at a time."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from contextualized_topic_models.datasets.dataset import CTMDataset

from .._common import view_seed
from .._validation import Interval, NoneValue, PositiveInts

#: What the ZeroshotTM baselines accept of CTM's settings (their constraint tables share it).
CTM_CONSTRAINTS: dict[str, list] = {
    "n_components": [Interval(int, 1, None)],
    "num_epochs": [Interval(int, 1, None)],
    "batch_size": [Interval(int, 2, None)],
    "lr": [Interval(float, 0, None, closed="neither")],
    "hidden_sizes": [PositiveInts()],
    "random_state": [NoneValue(), Interval(int, None, None)],
}

__all__ = ["CTM_CONSTRAINTS", "BatchedCTMDataset", "fit_ctm", "ctm_thetas"]


class BatchedCTMDataset(CTMDataset):
    """CTM's dataset, read a batch at a time.

    CTM's ``DataLoader`` asks its dataset for one row at a time, and ``CTMDataset`` densifies
    each sparse bag-of-words row on its own, which took most of a ZeroShotTM epoch on CPU
    (``benchmarks/ctm_dataset_speed.py``).  ``__getitems__`` (PyTorch's batched fetch) slices and
    densifies the whole batch at once and hands CTM's collate the same rows, so training sees
    the same tensors in the same order (``tests/integration/test_baselines.py``), only sooner.  Labels,
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


def fit_ctm(model_class, contextual: np.ndarray, bow, vocabulary: Sequence[str], settings: dict[str, Any],
            random_state: int | None, what: str, **extra: Any):
    """CTM's fitting sequence, as every ZeroshotTM baseline trains: refuse fewer items than a
    batch, seed CTM's generators, build ``model_class`` (``ZeroShotTM`` or a subclass) for
    these sizes and fit it on the items.  ``extra``: further constructor arguments
    (``contextual_size`` when the model reads only part of its input)."""
    check_ctm_batch(len(contextual), settings["batch_size"], what)
    seed_ctm(random_state)
    sizes = {"bow_size": len(vocabulary), "contextual_size": contextual.shape[1], **extra}
    model = model_class(**sizes, **settings)
    model.fit(BatchedCTMDataset(contextual, bow, dict(enumerate(vocabulary))), do_train_predictions=False)
    return model


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
