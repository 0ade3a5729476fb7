"""The systems the paper compares M3L-Contrast with, behind one interface (:class:`Baseline`).

Available: ZeroshotTM (CTM's own class), MCSE-style alignment, raw-embedding retrieval.
ZeroshotTM-KD and PLTM are not implemented yet.
"""
from .base import Baseline
from .embeddings import EmbeddingRetrieval
from .mcse import MCSEAligner
from .zeroshot import ZeroShotBaseline

__all__ = ["Baseline", "EmbeddingRetrieval", "MCSEAligner", "ZeroShotBaseline"]
