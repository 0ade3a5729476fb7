"""Data: reading tuples (``io``), preparing them (``preparation``) into a
:class:`MultiViewDataset` (``dataset``), Multi30k (``multi30k``) and planted tuples
(``synthetic``)."""
from .dataset import MultiViewDataset
from .io import read_rows
from .multi30k import MULTI30K_LAYOUTS, load_multi30k, multi30k_root
from .preparation import M3LDataPreparation

__all__ = ["MultiViewDataset", "M3LDataPreparation", "read_rows", "load_multi30k", "multi30k_root",
           "MULTI30K_LAYOUTS"]
