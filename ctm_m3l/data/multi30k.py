"""Multi30k's comparable (en, de, photo) and parallel (en, de, fr, cs) tuples, from local files."""
from __future__ import annotations

import os
from pathlib import Path

from .io import _is_missing, read_rows

__all__ = ["MULTI30K_LAYOUTS", "multi30k_root", "load_multi30k"]


MULTI30K_LAYOUTS = {"comparable": ("en", "de", "image"), "parallel4": ("en", "de", "fr", "cs")}


def multi30k_root(root: str | os.PathLike | None = None) -> Path:
    """Where the Multi30k files are: ``root``, else ``$CTM_M3L_DATA``, else
    ``~/.cache/ctm_m3l/multi30k``."""
    if root is None:
        root = os.environ.get("CTM_M3L_DATA") or Path.home() / ".cache" / "ctm_m3l" / "multi30k"
    return Path(root).expanduser()


def load_multi30k(split: str = "train", root: str | os.PathLike | None = None,
                  layout: str = "comparable", images_only: bool = False,
                  limit: int | None = None) -> list[dict]:
    """Multi30k tuples as a list of dicts (keys ``id`` and the views).

    Layouts (see docs/guide/data.md):

    - ``"comparable"`` (Multi30k task 2): one tuple per Flickr30k image, ``en`` = the five
      English descriptions joined, ``de`` = the five independently written German ones,
      ``image`` = the absolute path of the photo where it is available (Flickr8k subset).
    - ``"parallel4"`` (task 1): one caption per image in ``en``, ``de``, ``fr``, ``cs``
      (translations of each other).

    Args:
        split: ``"train"`` or ``"val"`` (the shared copy has no test split: keep ``val`` for
            model selection).
        root: folder holding ``comparable/`` and ``parallel4/``; default ``$CTM_M3L_DATA``,
            else ``~/.cache/ctm_m3l/multi30k``.
        images_only: keep only tuples that have an image (comparable layout).
        limit: keep the first ``limit`` tuples (after ``images_only``).
    """
    if layout not in MULTI30K_LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(MULTI30K_LAYOUTS)}, got {layout!r}")
    base = multi30k_root(root)
    path = base / layout / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found. Put the Multi30k files under {base} (or pass root=..., or set "
            "CTM_M3L_DATA); docs/guide/data.md says where the public captions come from "
            "and how to build the JSONL files")
    records, folder = read_rows(path)
    out = []
    for record in records:
        image = record.get("image")
        if images_only and _is_missing(image):
            continue
        if not _is_missing(image) and not Path(image).is_absolute():
            record["image"] = str((folder / image).resolve())
        out.append(record)
        if limit is not None and len(out) >= limit:
            break
    return out
