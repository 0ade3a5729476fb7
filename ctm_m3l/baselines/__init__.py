"""The systems the paper compares M3L-Contrast with, behind one interface (:class:`Baseline`).

Available: ZeroshotTM (CTM's own class), ZeroshotTM-KD (teacher-student), MCSE-style
alignment, raw-embedding retrieval.  PLTM is not implemented yet.
"""
from .base import Baseline
from .embeddings import EmbeddingRetrieval
from .kd import KDBaseline, KDStudent
from .mcse import MCSEAligner
from .zeroshot import ZeroShotBaseline

__all__ = ["Baseline", "EmbeddingRetrieval", "KDBaseline", "KDStudent", "MCSEAligner", "ZeroShotBaseline"]
