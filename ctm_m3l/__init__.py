"""ctm-m3l: multilingual and multimodal topic models (M3L-Contrast) on top of CTM."""

from ._version import __version__
from .data import M3LDataPreparation, MultiViewDataset, load_multi30k, read_rows
from .model import DEFAULT_LOSS_WEIGHTS, M3LTM, PAPER_SETTINGS, PAPER_TOPIC_FIT
from .persistence import CheckpointMismatchError, ModelFolderError
from .views import ImageView, TextView

__all__ = [
    "M3LTM",
    "M3LDataPreparation",
    "MultiViewDataset",
    "TextView",
    "ImageView",
    "read_rows",
    "load_multi30k",
    "DEFAULT_LOSS_WEIGHTS",
    "PAPER_SETTINGS",
    "PAPER_TOPIC_FIT",
    "CheckpointMismatchError",
    "ModelFolderError",
    "__version__",
]
