"""Small helpers the model and the baselines share: devices and per-view seeds."""
from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch

__all__ = ["resolve_device", "view_seed"]


def resolve_device(device: Any) -> torch.device:
    """``device`` as a torch device (None: CUDA when available, else the CPU)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a valid torch device (e.g. 'cpu', 'cuda', 'cuda:1')") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for CUDA, but torch sees no CUDA device here")
    return dev


def view_seed(seed: int, view: str) -> int:
    """The seed of ``view``'s sampling noise for a user's ``seed``: different views get
    independent noise.  With one seed for every view, row ``i`` of two views of the same
    tuples would draw the same noise, and for wide posteriors that shared noise alone makes
    the two views' topic distributions alike: cross-view retrieval would measure the noise."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(view.encode("utf-8"))]).generate_state(1)[0])
