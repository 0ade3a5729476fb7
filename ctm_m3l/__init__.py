"""ctm-m3l: multilingual and multimodal topic models (M3L-Contrast) on top of CTM."""

__version__ = "0.1.0"

from .views import ImageView, TextView  # noqa: E402
from .data import M3LDataPreparation, MultiViewDataset, load_multi30k, read_rows  # noqa: E402
from .model import DEFAULT_LOSS_WEIGHTS, M3LTM  # noqa: E402
from .persistence import CheckpointMismatchError, ModelFolderError  # noqa: E402

__all__ = [
    "M3LTM",
    "M3LDataPreparation",
    "MultiViewDataset",
    "TextView",
    "ImageView",
    "read_rows",
    "load_multi30k",
    "DEFAULT_LOSS_WEIGHTS",
    "CheckpointMismatchError",
    "ModelFolderError",
    "__version__",
]
