"""A dataset's model views as device tensors, and the batches of tuple indices over them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["BagsOfWords", "DeviceData", "batch_indices"]


@dataclass
class BagsOfWords:
    """Every language's bags of words as one CSR matrix on the device (columns: each
    language's vocabulary in turn); ``indptr_host`` sizes gathers without a device sync."""

    width: int
    widths: list[int]  # each language's vocabulary, in language order
    indptr_host: np.ndarray
    indptr: torch.Tensor
    indices: torch.Tensor
    data: torch.Tensor

    def entries(self, rows: torch.Tensor, rows_host: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(position in rows, word column, count)`` of the nonzero counts of the given rows,
        gathered from the CSR arrays on the device (the host only sizes the result)."""
        device = self.indptr.device
        total = int((self.indptr_host[rows_host + 1] - self.indptr_host[rows_host]).sum())
        starts = self.indptr.index_select(0, rows)
        counts = self.indptr.index_select(0, rows + 1) - starts
        row_of = torch.repeat_interleave(torch.arange(len(rows_host), device=device), counts, output_size=total)
        offsets = torch.cumsum(counts, 0) - counts
        position = (starts - offsets).index_select(0, row_of) + torch.arange(total, device=device)
        return row_of, self.indices.index_select(0, position), self.data.index_select(0, position)

    def split(self, dense: torch.Tensor) -> list[torch.Tensor]:
        """A dense ``(n, width)`` block cut into each language's ``(n, W_l)`` columns."""
        return list(torch.split(dense, self.widths, dim=1))

    def dense(self, rows: torch.Tensor, rows_host: np.ndarray) -> torch.Tensor:
        """The given rows as a dense ``(len(rows), width)`` matrix."""
        row_of, words, counts = self.entries(rows, rows_host)
        dense = torch.zeros(len(rows_host), self.width, device=self.indptr.device)
        return dense.index_put_((row_of, words), counts)


@dataclass
class DeviceData:
    """What training reads of a dataset: the ``(n, V)`` view mask on the host, each view's
    embeddings and the languages' bags of words on the device."""

    mask: np.ndarray
    embeddings: list[torch.Tensor]
    bow: BagsOfWords
    n: int

    @classmethod
    def from_dataset(cls, dataset, views: list[str], language_views: list[str], device: torch.device) -> DeviceData:
        columns = [dataset.view_index(v) for v in views]
        mask = dataset.view_mask[:, columns]
        embeddings = [torch.from_numpy(np.ascontiguousarray(dataset.embeddings[v], dtype=np.float32)).to(device)
                      for v in views]
        # A tuple lacking a language contributes no words of it, whatever its row holds.
        parts = [sp.diags(mask[:, views.index(v)].astype(np.float32)) @ dataset.bow[v].tocsr()
                 for v in language_views]
        csr = sp.hstack(parts, format="csr", dtype=np.float32)
        csr.sum_duplicates()
        csr.eliminate_zeros()
        bow = BagsOfWords(width=csr.shape[1], widths=[p.shape[1] for p in parts], indptr_host=csr.indptr.astype(np.int64),
                          indptr=torch.from_numpy(csr.indptr.astype(np.int64)).to(device),
                          indices=torch.from_numpy(csr.indices.astype(np.int64)).to(device),
                          data=torch.from_numpy(csr.data.astype(np.float32)).to(device))
        return cls(mask=mask, embeddings=embeddings, bow=bow, n=len(dataset))


def batch_indices(n: int, batch_size: int, world: int, generator: torch.Generator | None,
                  shuffle: bool) -> list[np.ndarray]:
    """Global batches of tuple indices (``batch_size`` per rank of ``world``)."""
    size = batch_size * world
    order = torch.randperm(n, generator=generator).numpy() if shuffle else np.arange(n)
    batches = [order[s:s + size] for s in range(0, n, size)]
    if len(batches) > 1 and len(batches[-1]) < 2 * world:
        # Too small to give every rank rows (or one tuple: no negatives, no batch
        # statistics): fold it into the previous batch.
        batches[-2] = np.concatenate([batches[-2], batches[-1]])
        batches.pop()
    return batches
