"""Model folders and checkpoints that cannot lie: checksums, atomic commits, safe reads.

A saved model is a folder: ``config.json`` (settings, vocabularies, history),
``model.safetensors`` (tensors), optionally ``preparation.json`` (the views, for ``infer``),
and ``manifest.json``, written last, with the SHA-256 of every one of them.  The folder is
written beside the target under a temporary name and then swapped in with one rename (an
atomic exchange of the two folders where the system has one), so a save killed at any point
leaves the old model or the new one.  Reading checks the manifest, parses JSON with its
errors named by file, and never unpickles.

Checkpoints are single safetensors files whose metadata holds a digest of every tensor and
every metadata entry, and digests of the data they were trained on.
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["CheckpointMismatchError", "ModelFolderError", "commit_folder", "read_json", "verify_folder",
           "dataset_digest", "tensor_digest", "check_finite", "save_model", "load_model", "saved_settings",
           "model_settings",
           "FORMAT_VERSION"]

CONFIG, WEIGHTS, PREPARATION, MANIFEST = "config.json", "model.safetensors", "preparation.json", "manifest.json"
MODEL_FILES = (CONFIG, WEIGHTS, PREPARATION, MANIFEST)
#: What ``config.json`` says a saved M3LTM is, and the version of its layout.
FORMAT, FORMAT_VERSION = "ctm-m3l-model", 2
#: Settings added after a format version was first written, with the values that saved
#: models and checkpoints lacking them were trained with (their network layout).
SETTINGS_ADDED = {"pair_kl_on": "posterior", "posterior_norm": "ctm", "contrastive_reduction": "mean",
                  "inference_input": "contextual", "image_posterior_norm": None, "topic_epochs": None,
                  "topic_fit": None}
_MANIFEST_FORMAT = "ctm-m3l-folder"
_MANIFEST_VERSION = 1
# The largest JSON file a model folder may hold (vocabularies of a few hundred thousand words
# fit easily); a larger one is refused before it is read.
MAX_JSON_BYTES = 256 * 2**20
# Temporary files and folders of a save or checkpoint write name the process that made them.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<kind>new|old|tmp)-(?P<pid>\d+)-[\w]+$")
_LEGACY_TEMPORARY = re.compile(r"^\.(model\.safetensors|config\.json|checkpoint\.safetensors)\.tmp(?P<pid>\d+)$")


class ModelFolderError(ValueError):
    """A model folder (or one of its files) is not what it claims: missing, changed after
    saving, malformed, or inconsistent with itself.  The message names the file."""


class CheckpointMismatchError(ValueError):
    """``resume_from`` names a checkpoint that this run cannot continue: not a checkpoint,
    damaged, or written with other settings, data or a longer schedule."""


# -- reading ---------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: Path, what: str = "JSON file") -> Any:
    """The JSON in ``path``; every failure is a :class:`ModelFolderError` naming the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ModelFolderError(f"{path}: cannot read the {what} ({err.strerror or err})") from err
    if size > MAX_JSON_BYTES:
        raise ModelFolderError(f"{path}: the {what} is {size} bytes, more than any ctm-m3l writes "
                               f"({MAX_JSON_BYTES}); refusing to read it")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ModelFolderError(f"{path}: the {what} is not UTF-8 text (byte {err.start})") from err
    except json.JSONDecodeError as err:
        raise ModelFolderError(f"{path}: the {what} is not valid JSON: {err.msg} at line {err.lineno} "
                               f"column {err.colno}") from err
    except RecursionError as err:
        raise ModelFolderError(f"{path}: the {what} is nested too deeply to be one ctm-m3l wrote") from err


def verify_folder(directory: Path) -> dict[str, str] | None:
    """Check ``directory``'s manifest against its files.

    Returns ``{file name: sha256}`` of the files the manifest covers, or None for a folder
    written before manifests (its ``config.json`` then carries the weights' checksum).
    Raises :class:`ModelFolderError` naming the first file that was changed, removed or
    added after saving.
    """
    path = directory / MANIFEST
    if not path.is_file():
        return None
    manifest = read_json(path, "manifest")
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(manifest, dict) or manifest.get("format") != _MANIFEST_FORMAT or not isinstance(files, dict):
        raise ModelFolderError(f"{path}: not a ctm-m3l manifest")
    if manifest.get("format_version") != _MANIFEST_VERSION:
        raise ModelFolderError(f"{path}: manifest format_version {manifest.get('format_version')!r} is not "
                               f"supported by this ctm-m3l ({_MANIFEST_VERSION})")
    unknown = sorted(set(files) - set(MODEL_FILES))
    if unknown:
        raise ModelFolderError(f"{path}: lists files a model folder does not have: {unknown}")
    if manifest.get("sha256") != _combined(files):
        raise ModelFolderError(f"{path}: the manifest's own checksum does not match its entries; it was "
                               "modified after saving")
    for name in MODEL_FILES:
        file = directory / name
        if name == MANIFEST:
            continue
        if name not in files:
            if file.exists():
                raise ModelFolderError(f"{file}: this file was added after the model was saved (the manifest "
                                       "does not list it); remove it or save the model again")
            continue
        if not file.is_file():
            raise ModelFolderError(f"{file}: missing; the manifest lists it")
        if sha256_file(file) != files[name]:
            raise ModelFolderError(f"{file}: does not match its checksum in {MANIFEST}; the file was "
                                   "modified or corrupted after saving")
    return dict(files)


def _combined(files: Mapping[str, str]) -> str:
    return hashlib.sha256("".join(f"{k}\0{files[k]}\n" for k in sorted(files)).encode()).hexdigest()


def interrupted_save(directory: Path) -> Path | None:
    """Where a save into ``directory`` that was killed between its two renames (systems
    without an atomic folder exchange) left a complete model: the newest such copy beside
    ``directory``, preferring the new model to the old one; None when there is none."""
    parent = directory.parent
    if not parent.is_dir():
        return None
    found = []
    for entry in parent.iterdir():
        match = _TEMPORARY.match(entry.name)
        if not match or match["name"] != directory.name or match["kind"] not in ("new", "old"):
            continue
        if not entry.is_dir() or _alive(int(match["pid"])) and int(match["pid"]) != os.getpid():
            continue
        if (entry / MANIFEST).is_file() or (match["kind"] == "old" and (entry / CONFIG).is_file()):
            found.append((match["kind"] == "new", entry.stat().st_mtime, entry))
    return max(found)[2] if found else None


def model_folder(directory: str | os.PathLike) -> Path:
    """The folder to read a saved model from: ``directory``, or, where a save into it was
    killed between its two renames, the complete copy that save left beside it (with a
    warning); :class:`ModelFolderError` when there is neither."""
    directory = Path(directory)
    if directory.is_dir():
        return directory
    stand_in = interrupted_save(directory.absolute())
    if stand_in is None:
        raise ModelFolderError(f"{str(directory)!r} is not a directory holding a saved M3LTM")
    warnings.warn(f"{directory}: a save into it was interrupted; reading the complete model it left at "
                  f"{stand_in} (saving into {directory} again puts a model back in place)", stacklevel=3)
    return stand_in


# -- writing ---------------------------------------------------------------------------------------
def commit_folder(target: Path, write: Callable[[Path], Iterable[str]]) -> Path:
    """Make ``target`` hold exactly the files ``write(folder)`` writes into an empty folder,
    atomically.

    ``write`` returns the names of the model files it wrote; a manifest of their checksums is
    added last.  Other files already in ``target`` (a checkpoint, notes) are carried over by
    hard links, so nothing the user put there is lost.  A save killed at any point leaves the
    old folder or the new one in place (or, where folders cannot be exchanged atomically, a
    complete copy beside it that :func:`interrupted_save` finds); temporary folders of saves
    whose process has died are removed.
    """
    target = Path(target)
    # A link to a model folder: replace the folder it points to, not the link.
    target = target.resolve() if target.is_symlink() else target.absolute()
    if target.exists() and not target.is_dir():
        raise ModelFolderError(f"{target}: exists and is not a folder; save into a folder")
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-{os.getpid()}-", dir=parent))
    try:
        names = list(write(staging))
        files = {name: sha256_file(staging / name) for name in names}
        manifest = {"format": _MANIFEST_FORMAT, "format_version": _MANIFEST_VERSION, "files": files,
                    "sha256": _combined(files)}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if target.is_dir():
            _carry_over(target, staging)
        _settle(staging)
        _swap(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _remove_stale(parent, target.name)
    return target


def _carry_over(source: Path, destination: Path) -> None:
    """Hard-link (or copy) into ``destination`` what ``source`` holds besides model files and
    temporary files of dead processes."""
    for entry in source.iterdir():
        if entry.name in MODEL_FILES or _stale_temporary(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, destination / entry.name, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(entry), str(destination / entry.name))


def _link_or_copy(source: str, destination: str) -> None:
    if os.path.islink(source):
        os.symlink(os.readlink(source), destination)
        return
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _settle(folder: Path) -> None:
    """Ordinary permissions (mkdtemp makes 0700 folders) and every byte on disk before the swap."""
    mask = _umask()
    for path in folder.iterdir():
        if path.is_file() and not path.is_symlink():
            if path.name in MODEL_FILES:
                os.chmod(path, 0o666 & ~mask)
            _fsync(path)
    os.chmod(folder, 0o777 & ~mask)
    _fsync(folder)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # folders cannot be opened on some systems
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _exchange_function():
    """``renameat2(..., RENAME_EXCHANGE)`` from the C library (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


_RENAMEAT2 = _exchange_function()
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def exchange(a: Path, b: Path) -> bool:
    """Swap the folders ``a`` and ``b`` in one atomic step; False where this system cannot."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _swap(staging: Path, target: Path) -> None:
    if not target.exists():
        os.rename(staging, target)
    elif exchange(staging, target):
        shutil.rmtree(staging)  # now the old folder
    else:
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{os.getpid()}-", dir=target.parent))
        os.rmdir(old)
        os.rename(target, old)
        os.rename(staging, target)
        shutil.rmtree(old)
    _fsync(target.parent)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale_temporary(name: str) -> bool:
    match = _TEMPORARY.match(name) or _LEGACY_TEMPORARY.match(name)
    return bool(match) and not _alive(int(match["pid"]))


def _remove_stale(folder: Path, name: str | None = None) -> None:
    """Remove the temporary files and folders that killed processes left in ``folder`` (those
    of saves into ``name`` only, when given)."""
    for entry in folder.iterdir():
        match = _TEMPORARY.match(entry.name) or _LEGACY_TEMPORARY.match(entry.name)
        if not match or not _stale_temporary(entry.name):
            continue
        if name is not None and match.re is _TEMPORARY and match["name"] != name:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            try:
                entry.unlink()
            except OSError:
                pass


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(temporary)`` beside ``path``, then one rename over it; a killed write leaves
    ``path`` as it was, and the temporary files of dead processes are removed."""
    path = Path(path)
    _remove_stale(path.parent)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


# -- what tensors and data hold ----------------------------------------------------------------------
def check_finite(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors in ``tensors`` that hold NaN or infinity."""
    return [k for k, v in tensors.items() if torch.is_floating_point(v) and not bool(torch.isfinite(v).all())]


def tensor_digest(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """SHA-256 of every tensor's name, dtype, shape and bytes and every metadata entry."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        value = tensors[key].detach().cpu().contiguous()
        digest.update(f"{key}\0{value.dtype}\0{tuple(value.shape)}\0".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    for key in sorted(metadata):
        digest.update(f"{key}\0{metadata[key]}\0".encode())
    return digest.hexdigest()


def dataset_digest(dataset, views: Iterable[str]) -> str:
    """SHA-256 of what training reads of ``dataset`` for ``views``: each view's embeddings and
    mask column and each language's words (vocabulary and bag-of-words arrays)."""
    digest = hashlib.sha256()
    for view in views:
        has = dataset.has_view(view)
        digest.update(f"{view}\0{len(dataset)}\0".encode())
        digest.update(np.packbits(has).tobytes())
        digest.update(np.ascontiguousarray(dataset.embeddings[view], dtype=np.float32).tobytes())
        if view in dataset.bow:
            digest.update("\0".join(dataset.vocabularies[view]).encode("utf-8"))
            bow = dataset.bow[view].tocsr()
            for array, dtype in ((bow.indptr, np.int64), (bow.indices, np.int64), (bow.data, np.float32)):
                digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    return digest.hexdigest()


# -- a saved M3LTM -------------------------------------------------------------------------------------
def saved_settings(config: dict) -> dict:
    """The constructor settings of a saved model or checkpoint's config, with the settings
    added since it was written filled in as it was trained."""
    from .defaults import resolve_loss_weights

    settings = {**SETTINGS_ADDED, **config["settings"]}
    weights = settings.get("loss_weights")
    if isinstance(weights, dict) and all(isinstance(v, (int, float)) for v in weights.values()):
        # Written before "image_prior_kl" existed: "prior_kl" weighed every view.
        settings["loss_weights"] = resolve_loss_weights(settings["loss_weights"])
    return settings


def model_settings(model) -> dict[str, Any]:
    """An M3LTM's constructor arguments as saved (``config.json``'s ``settings``)."""
    return {
        "views": model.views, "n_components": model.n_components, "model_type": model.model_type,
        "hidden_sizes": list(model.hidden_sizes), "activation": model.activation,
        "dropout": model.dropout, "learn_priors": model.learn_priors, "batch_size": model.batch_size,
        "lr": model.lr, "momentum": model.momentum, "solver": model.solver,
        "num_epochs": model.num_epochs, "reduce_on_plateau": model.reduce_on_plateau,
        "temperature": model.temperature, "similarity": model.similarity,
        "pair_kl_on": model.pair_kl_on, "loss_weights": model.weights, "random_state": model.random_state,
        "torch_compile": model.torch_compile, "posterior_norm": model.posterior_norm,
        "image_posterior_norm": model.image_posterior_norm,
        "contrastive_reduction": model.contrastive_reduction, "inference_input": model.inference_input,
        "topic_epochs": model.topic_epochs, "topic_fit": model.topic_fit}


def model_config(model) -> dict[str, Any]:
    """What ``config.json`` (and a checkpoint's metadata) records of a fitted model."""
    from ._version import __version__

    return {"format": FORMAT, "format_version": FORMAT_VERSION, "ctm_m3l_version": __version__,
            "settings": model._settings(), "view_kinds": model.view_kinds,
            "embedding_sizes": model.embedding_sizes, "vocabularies": model.vocabularies, "history": model.history,
            "topics_from": model.topics_source}


def save_model(model, models_dir: str | os.PathLike, preparation: Any = None) -> Path:
    """``M3LTM.save``: the folder written in full beside ``models_dir`` and swapped in."""
    from safetensors.torch import save_file

    if models_dir is None:
        raise ValueError("save needs a directory")
    directory = Path(models_dir)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.model.state_dict().items()}
    bad = check_finite(tensors)
    if bad:
        raise ValueError(f"refusing to save to {directory}: {', '.join(bad)} hold NaN or infinity (training "
                         "diverged); a model that cannot give topic distributions is not saved")
    preparation_config = _preparation_config(model, preparation, directory)
    config = model_config(model)

    def write(folder: Path) -> list[str]:
        save_file(tensors, str(folder / WEIGHTS))
        (folder / CONFIG).write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
        if preparation_config is None:
            return [CONFIG, WEIGHTS]
        (folder / PREPARATION).write_text(json.dumps(preparation_config, ensure_ascii=False), encoding="utf-8")
        return [CONFIG, WEIGHTS, PREPARATION]

    return commit_folder(directory, write)


def _preparation_config(model, preparation: Any, directory: Path) -> dict | None:
    """What ``save`` writes as ``preparation.json``: the given preparation's settings (checked
    against the model), else the folder's own when it matches the model."""
    if preparation is not None:
        if not hasattr(preparation, "to_config") or not hasattr(preparation, "embedding_sizes"):
            raise TypeError(f"preparation must be the M3LDataPreparation the data came from, got "
                            f"{type(preparation).__name__}")
        config = preparation.to_config(relative_to=directory)
        problem = _preparation_mismatch(model, config)
        if problem:
            raise ValueError(f"preparation does not match this model: {problem}")
        return config
    existing = Path(directory) / PREPARATION
    if not existing.is_file():
        return None
    try:
        verify_folder(Path(directory))
        config = read_json(existing, "preparation")
        problem = _preparation_mismatch(model, config)
    except ValueError as err:
        problem = str(err)
    if problem:
        warnings.warn(f"{existing} is not kept: {problem}; pass save(..., preparation=prep) to save the "
                      "preparation of this model", stacklevel=4)
        return None
    return config


def _preparation_mismatch(model, config: Any) -> str | None:
    if not isinstance(config, dict):
        return "it is not an object"
    vocabularies, sizes = config.get("vocabularies") or {}, config.get("embedding_sizes") or {}
    for view in model.views:
        if sizes.get(view) != model.embedding_sizes[view]:
            return (f"view {view!r} has {sizes.get(view)}-d embeddings there, {model.embedding_sizes[view]}-d in "
                    "the model")
    for view in model.language_views:
        if vocabularies.get(view) != model.vocabularies[view]:
            return f"view {view!r} has another vocabulary there than the model's"
    return None


def load_model(cls, model_dir: str | os.PathLike, device: Any = None):
    """``M3LTM.load``: every file checked against the manifest, the sizes in ``config.json``
    against the weights' header before anything is allocated."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    directory = model_folder(model_dir)
    files = verify_folder(directory)
    config_path, weights_path = directory / CONFIG, directory / WEIGHTS
    if not config_path.is_file() or not weights_path.is_file():
        raise ModelFolderError(f"{str(directory)!r} is not a saved M3LTM: it needs {CONFIG} and {WEIGHTS}")
    config = read_json(config_path, "model config")
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFolderError(f"{config_path}: not an M3LTM config (format is not {FORMAT!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelFolderError(f"{config_path}: format_version {config.get('format_version')!r} is not "
                               f"supported by this ctm-m3l ({FORMAT_VERSION})")
    if files is None and sha256_file(weights_path) != config.get("weights_sha256"):
        raise ModelFolderError(f"{weights_path}: the weights do not match the checksum in {CONFIG}; "
                               "the file was modified or corrupted after saving")
    try:
        settings = saved_settings(config)
        settings["hidden_sizes"] = tuple(settings["hidden_sizes"])
        model = cls(**settings, device=device)
        model.view_kinds = _string_map(config["view_kinds"], "view_kinds")
        model.embedding_sizes = {k: _positive(v, f"embedding_sizes[{k!r}]")
                                 for k, v in _string_map(config["embedding_sizes"], "embedding_sizes", object).items()}
        model.vocabularies = {k: _words(v, k) for k, v in
                              _string_map(config["vocabularies"], "vocabularies", object).items()}
        model.history = list(config.get("history", []))
        model.topics_source = config.get("topics_from")  # the model fit(topics_from=...) took topics from
        if model.topics_source is not None and not isinstance(model.topics_source, dict):
            raise ValueError(f"topics_from must be null or an object, got {type(model.topics_source).__name__}")
        if set(model.view_kinds) != set(model.views) or set(model.embedding_sizes) != set(model.views) \
                or set(model.vocabularies) != set(model.language_views):
            raise ValueError("views, view kinds, sizes and vocabularies disagree")
        with torch.device("meta"):  # the parameter shapes, with no storage, for any sizes
            expected = model._new_network().state_dict()
    except (KeyError, TypeError, ValueError) as err:
        raise ModelFolderError(f"{config_path}: invalid or altered settings: {err}") from err
    try:
        with safe_open(str(weights_path), framework="pt") as fh:
            header = {k: (tuple(fh.get_slice(k).get_shape()), fh.get_slice(k).get_dtype()) for k in fh.keys()}
    except (SafetensorError, OSError) as err:
        raise ModelFolderError(f"{weights_path}: not a readable safetensors file ({err})") from err
    wrong = sorted(set(header) ^ set(expected)) or [
        k for k in expected if header[k] != (tuple(expected[k].shape), "F32")]
    if wrong:
        raise ModelFolderError(f"{weights_path}: tensors do not match the architecture in {CONFIG} "
                               f"({', '.join(wrong[:5])})")
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise ModelFolderError(f"{weights_path}: not a readable safetensors file ({err})") from err
    bad = check_finite(state)
    if bad:
        raise ModelFolderError(f"{weights_path}: {', '.join(bad)} hold NaN or infinity; this model cannot "
                               "give topic distributions")
    model._build_network()
    model.model.load_state_dict(state)
    model.best_components = model.model.topic_word_matrix(0).detach()
    return model


def _string_map(value: Any, name: str, kind: type = str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, kind) for k, v in value.items()):
        raise ValueError(f"{name} must map view names to {kind.__name__}s")
    return dict(value)


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r:.50}")
    return value


def _words(value: Any, view: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(w, str) for w in value):
        raise ValueError(f"vocabularies[{view!r}] must be a non-empty list of words")
    if len(set(value)) != len(value):
        raise ValueError(f"vocabularies[{view!r}] repeats a word")
    return value
