"""Every system ``evaluate``, ``reproduce`` and the CLI can build, by name, with the batch
sizes they use when none is given."""
from __future__ import annotations

from ..model import M3LTM
from .embeddings import EmbeddingRetrieval
from .kd import KDBaseline
from .mcse import MCSEAligner
from .pltm import PLTM
from .zeroshot import ZeroShotBaseline

__all__ = ["MODELS", "DEFAULT_BATCH_SIZES", "ALIGN_CHOICES", "ALIGNED_SYSTEMS", "build_system", "check_align"]

MODELS = ("m3l", "zeroshot", "zeroshot-kd", "pltm", "embeddings")
# Batch sizes when none is given: the paper's 32 for M3L-Contrast, CTM's 64 for its baselines.
DEFAULT_BATCH_SIZES = {"m3l": 32, "zeroshot": 64, "zeroshot-kd": 64}


ALIGN_CHOICES = ("auto", "mcse", "none")
# The systems that need one embedding space for all views (or an MCSE aligner to make one).
ALIGNED_SYSTEMS = ("zeroshot", "embeddings")


def check_align(name: str, align: str) -> None:
    if align not in ALIGN_CHOICES:
        raise ValueError(f"align must be one of {ALIGN_CHOICES}, got {align!r}")
    if align != "auto" and name not in ALIGNED_SYSTEMS:
        raise ValueError(f"align={align!r} chooses how {' and '.join(ALIGNED_SYSTEMS)} map views into one space; "
                         f"model {name} has no such step")


def build_system(name: str, views, train, n_components: int, num_epochs: int, seed, batch_size: int | None,
                 device=None, lr: float = 2e-3, torch_compile: bool = False, m3l_options: dict | None = None,
                 align: str = "auto"):
    """The system ``name`` for these views.  ``m3l_options``: further ``M3LTM`` arguments
    (``loss_weights``, ``temperature``, ``similarity``, ``pair_kl_on``..., ``batch_size`` where
    the ``batch_size`` argument is None).

    ``align``, for the systems that compare views in one embedding space (``zeroshot``,
    ``embeddings``): ``"mcse"`` maps every view into one space by MCSE heads fitted on
    ``train`` first (the system's name says so: ``zeroshot+mcse``); ``"none"`` uses the
    embeddings as they are (the encoders must share a space: CLIP, multilingual SBERT);
    ``"auto"`` aligns when the views' embedding sizes differ.  Sizes cannot tell an English
    encoder used for German from a multilingual one: with one monolingual encoder for
    several languages, pass ``"mcse"``."""
    check_align(name, align)
    names = [v.name for v in views]
    texts = [v.name for v in views if v.kind == "text"]
    sizes_differ = len({train.embeddings[v].shape[1] for v in names}) > 1
    unaligned = align == "mcse" or (align == "auto" and sizes_differ)
    if name == "m3l":
        options = dict(m3l_options or {})
        if batch_size is not None and options.get("batch_size", batch_size) != batch_size:
            raise ValueError(f"batch_size {batch_size} and m3l_options' batch_size {options['batch_size']} disagree")
        options.setdefault("batch_size", batch_size or DEFAULT_BATCH_SIZES["m3l"])
        return M3LTM(views=names, n_components=n_components, num_epochs=num_epochs, lr=lr, device=device,
                     random_state=seed, torch_compile=torch_compile, **options)
    if name == "zeroshot":
        aligner = MCSEAligner(names, random_state=seed) if unaligned else None
        return ZeroShotBaseline(texts[0], names, aligner=aligner, n_components=n_components, lr=lr,
                                num_epochs=num_epochs, batch_size=batch_size or DEFAULT_BATCH_SIZES["zeroshot"],
                                random_state=seed)
    if name == "zeroshot-kd":
        return KDBaseline(names, teacher=texts[0], n_components=n_components, num_epochs=num_epochs, lr=lr,
                          batch_size=batch_size or DEFAULT_BATCH_SIZES["zeroshot-kd"], random_state=seed)
    if name == "pltm":
        return PLTM(texts, n_components=n_components, n_iterations=num_epochs, random_state=seed or 0)
    if name == "embeddings":
        return EmbeddingRetrieval(names, aligner=MCSEAligner(names, random_state=seed) if unaligned else None)
    raise ValueError(f"unknown model {name!r}; choose one of {MODELS}")
