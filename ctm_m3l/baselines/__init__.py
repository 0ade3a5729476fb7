"""The systems the paper compares M3L-Contrast with, behind one interface (:class:`Baseline`).

Available: ZeroshotTM (CTM's own class), ZeroshotTM-KD (teacher-student), PLTM (collapsed
Gibbs sampling, numba), MCSE-style alignment, raw-embedding retrieval.
"""
from .base import Baseline
from .embeddings import EmbeddingRetrieval
from .kd import KDBaseline, KDStudent
from .mcse import MCSEAligner
from .pltm import PLTM
from .zeroshot import ZeroShotBaseline

__all__ = ["Baseline", "EmbeddingRetrieval", "KDBaseline", "KDStudent", "MCSEAligner", "PLTM", "ZeroShotBaseline"]
