"""Checkpoints of a fit in progress: one safetensors file with the weights, the optimizer,
the random-number and early-stopping state, and digests of all of it and of the data."""
from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from ..persistence import (
    FORMAT_VERSION,
    CheckpointMismatchError,
    check_finite,
    saved_settings,
    tensor_digest,
    write_atomic,
)

__all__ = ["CHECKPOINT_FILE", "EarlyStopping", "write_checkpoint", "restore_checkpoint", "checkpoint_epoch"]

CHECKPOINT_FILE = "checkpoint.safetensors"
_CHECKPOINT_FORMAT = "ctm-m3l-checkpoint"


@dataclass
class EarlyStopping:
    """CTM's early stopping on the validation loss: the best loss so far, the epochs since it
    improved by more than ``delta``, and the best epoch's weights."""

    patience: int = 5
    delta: float = 0.0
    best_val: float = float("inf")
    stale: int = 0
    best_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def update(self, val_loss: float, model: torch.nn.Module) -> None:
        import copy

        if val_loss < self.best_val - self.delta:
            self.best_val, self.stale = val_loss, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.stale += 1

    @property
    def should_stop(self) -> bool:
        return self.stale >= self.patience


def write_checkpoint(estimator, directory: str | os.PathLike, epoch: int, generator: torch.Generator,
                     stopping: EarlyStopping, digests: dict[str, str]) -> Path:
    """One file, written to a temporary name and renamed over the previous checkpoint; its
    metadata holds a digest of every tensor and entry, and of the data trained on."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in estimator.model.state_dict().items()}
    bad = check_finite(tensors)
    if bad:
        raise FloatingPointError(
            f"epoch {epoch}: {', '.join(k[6:] for k in bad)} hold NaN or infinity; training diverged, so "
            f"no checkpoint was written (the one in {directory}, if any, is of an earlier epoch). "
            "Lower lr, or resume from that checkpoint")
    optimizer = estimator.optimizer.state_dict()
    scalars = {}
    for index, state in optimizer["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.batch_order"] = generator.get_state()
    if estimator.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(estimator.device)
    for k, v in (stopping.best_state or {}).items():
        tensors[f"best.{k}"] = v.detach().cpu().contiguous()
    metadata = {
        "format": _CHECKPOINT_FORMAT, "config": json.dumps(estimator._config(), ensure_ascii=False),
        "epoch": str(epoch), "best_val": json.dumps(stopping.best_val), "stale": str(stopping.stale),
        "optimizer_param_groups": json.dumps(optimizer["param_groups"]),
        "optimizer_scalars": json.dumps(scalars),
        "scheduler": json.dumps(estimator.scheduler.state_dict() if estimator.scheduler is not None else None),
        "data": json.dumps(digests),
    }
    metadata["sha256"] = tensor_digest(tensors, metadata)
    path = directory / CHECKPOINT_FILE
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return path


def _read(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor], dict, dict]:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointMismatchError(f"resume_from: {str(path)!r} is not a checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise CheckpointMismatchError(f"resume_from: {path} is not a readable checkpoint ({err})") from err
    if metadata.get("format") != _CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(f"resume_from: {path} is not a ctm-m3l checkpoint")
    saved_digest = metadata.pop("sha256", None)
    if saved_digest is None:
        raise CheckpointMismatchError(
            f"resume_from: {path} carries no checksum (it was written by ctm-m3l 0.1.0 before checkpoints "
            "had one), so it cannot be told from a damaged file; restart the run")
    if tensor_digest(tensors, metadata) != saved_digest:
        raise CheckpointMismatchError(f"resume_from: {path} does not match its checksum; the file was damaged "
                                      "or modified after it was written. Restart the run")
    try:
        config = json.loads(metadata["config"])
        saved_data = json.loads(metadata["data"])
    except (KeyError, ValueError) as err:
        raise CheckpointMismatchError(f"resume_from: {path}: incomplete metadata ({err})") from err
    return metadata, tensors, config, saved_data


def _check_matches(estimator, path: Path, config: dict, saved_data: dict, digests: dict[str, str]) -> None:
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointMismatchError(
            f"resume_from: {path} was written by ctm-m3l {config.get('ctm_m3l_version')} (format_version "
            f"{config.get('format_version')}), whose network layout this ctm-m3l ({__version__}, format_version "
            f"{FORMAT_VERSION}) cannot continue; restart the run, or resume it with that version")
    mine, theirs = estimator._settings(), saved_settings(config)
    theirs["hidden_sizes"] = list(theirs["hidden_sizes"])
    differ = sorted(k for k in mine if k != "num_epochs" and mine[k] != theirs.get(k))
    if differ:
        raise CheckpointMismatchError(f"resume_from: {path} was written with different settings: {differ}")
    if config["vocabularies"] != estimator.vocabularies or config["embedding_sizes"] != estimator.embedding_sizes:
        raise CheckpointMismatchError(
            f"resume_from: {path} was trained on data with other vocabularies or embedding sizes")
    for split, digest in digests.items():
        if saved_data.get(split) != digest:
            what = "no validation data" if saved_data.get(split) is None else f"other {split} data"
            raise CheckpointMismatchError(
                f"resume_from: {path} was trained on {what} than this fit's {split}_dataset (same "
                "vocabularies, other tuples or embeddings); resume with the data it was trained on, or "
                "restart the run")
    if "validation" in saved_data and "validation" not in digests:
        raise CheckpointMismatchError(f"resume_from: {path} was trained with a validation_dataset; pass the "
                                      "same one to resume (early stopping depends on it)")


def restore_checkpoint(estimator, path: str | os.PathLike, generator: torch.Generator, digests: dict[str, str],
                       stopping: EarlyStopping) -> int:
    """Restore a checkpoint into ``estimator`` (bound to its data), ``generator`` and
    ``stopping``; returns the number of epochs it holds.  Raises
    :class:`~ctm_m3l.persistence.CheckpointMismatchError` for a damaged checkpoint or one of
    other settings, data or a longer schedule."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    metadata, tensors, config, saved_data = _read(path)
    _check_matches(estimator, path, config, saved_data, digests)
    epoch = int(metadata["epoch"])
    if epoch > estimator.num_epochs:
        raise CheckpointMismatchError(
            f"resume_from: {path} is at epoch {epoch}, past this fit's num_epochs={estimator.num_epochs}; "
            f"resume with num_epochs >= {epoch}")
    estimator.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = defaultdict(dict)
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state[int(index)][name] = value
    for key, value in json.loads(metadata["optimizer_scalars"]).items():
        index, name = key.split(".", 1)
        state[int(index)][name] = value
    estimator.optimizer.load_state_dict({"state": dict(state),
                                         "param_groups": json.loads(metadata["optimizer_param_groups"])})
    scheduler = json.loads(metadata["scheduler"])
    if estimator.scheduler is not None and scheduler is not None:
        estimator.scheduler.load_state_dict(scheduler)
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.batch_order"])
    if estimator.device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], estimator.device)
    estimator.history = list(config["history"])
    if config.get("topics_from") is not None:  # the run's topics came from fit(topics_from=...)
        estimator.topics_source = config["topics_from"]
    stopping.best_state = {k[5:]: v.to(estimator.device) for k, v in tensors.items() if k.startswith("best.")} or None
    stopping.best_val, stopping.stale = float(json.loads(metadata["best_val"])), int(metadata["stale"])
    return epoch


def checkpoint_epoch(path: str | os.PathLike) -> int:
    """The number of epochs a checkpoint file holds (0 when it cannot be read: the fit that
    tries to continue it says why)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return int((handle.metadata() or {}).get("epoch", 0))
    except (SafetensorError, OSError, ValueError):
        return 0
