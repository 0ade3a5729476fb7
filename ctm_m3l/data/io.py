"""Reading tuples: JSONL, CSV or a list of dicts, with errors that name the file, line and view."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders import ImageLoadError, decoded_batches

__all__ = ["read_rows", "repeated_ids"]

_MAX_LISTED = 10


def _listing(rows: Sequence[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:_MAX_LISTED])
    return shown + (f" ... ({len(rows)} in all)" if len(rows) > _MAX_LISTED else "")


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, float) and math.isnan(value):
        return True
    return False


def repeated_ids(ids: Sequence) -> list:
    """The ids that occur more than once in ``ids``, compared as given (``1`` is not ``"1"``)."""
    return [value for value, n in Counter(ids).items() if n > 1]


def read_rows(rows: Any) -> tuple[list[dict], Path | None]:
    """Rows as a list of dicts, and the folder relative image paths are resolved against.

    ``rows`` may be a list of dicts, a pandas DataFrame, or a path to a ``.jsonl``/``.json``
    (one JSON object per line) or ``.csv`` file (one column per view).
    """
    if isinstance(rows, (str, os.PathLike)):
        path = Path(rows)
        if not path.is_file():
            raise FileNotFoundError(f"rows file {str(path)!r} does not exist")
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json", ".ndjson"):
            records = []
            for line_no, line in enumerate(_text(path).split("\n"), 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}: line {line_no} is not valid JSON: {err.msg}") from err
                except RecursionError as err:
                    raise ValueError(f"{path}: line {line_no} is nested too deeply") from err
                if not isinstance(record, dict):
                    raise ValueError(f"{path}: line {line_no} is a JSON {type(record).__name__}, not an object")
                records.append(record)
            return records, path.parent
        if suffix in (".csv", ".tsv"):
            reader = csv.DictReader(io.StringIO(_text(path), newline=""), delimiter="\t" if suffix == ".tsv" else ",")
            try:
                return list(reader), path.parent
            except csv.Error as err:
                raise ValueError(f"{path}: line {reader.line_num}: not valid {suffix[1:].upper()}: {err}") from err
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use .jsonl or .csv")
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # pandas DataFrame
        return rows.to_dict(orient="records"), None
    if isinstance(rows, Mapping) or isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise TypeError(
            "rows must be a list of dicts, a pandas DataFrame, or a path to a .jsonl/.csv file; "
            f"got {type(rows).__name__}"
        )
    records = list(rows)
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise TypeError(f"row {i} is a {type(record).__name__}, not a dict of views")
    return records, None


def _undecodable(paths: list, rows: np.ndarray, known: list) -> list:
    """``(row, path, reason)`` of the images among ``paths`` whose pixels do not decode (the
    ones not in ``known`` already), decoding a batch at a time and keeping nothing."""
    skip = {path for _, path, _ in known}
    left = [(p, int(r)) for p, r in zip(paths, rows) if str(p) not in skip]
    try:
        for _ in decoded_batches([p for p, _ in left], 16, prepare=lambda image: None):
            pass
    except ImageLoadError as err:
        return [(left[position][1], path, reason) for position, path, reason in err.bad]
    return []


def _check_ids(ids: list, text_rows: dict[str, np.ndarray]) -> None:
    """Ids must be strings or numbers.  An id repeated among one language's texts is harmless
    for training (a warning) but makes retrieval count other tuples as matches: ``evaluate``
    refuses it.  (Several images may share a text's id: all of an article's photos.)"""
    for i, value in enumerate(ids):
        if isinstance(value, bool) or not isinstance(value, (str, int, float, np.integer, np.floating)):
            raise TypeError(f"row {i}: id must be a string or a number, got {type(value).__name__} {value!r:.80}")
    for view, present in text_rows.items():
        repeated = repeated_ids([ids[i] for i in np.flatnonzero(present)])
        if repeated:
            warnings.warn(f"view {view!r}: {len(repeated)} id(s) name more than one text (e.g. {repeated[:3]}); "
                          "evaluate() refuses such rows, since it counts tuples with the same id as matches",
                          stacklevel=4)


def _source(rows: Any) -> str:
    """How errors name where rows came from: the file, or "rows"."""
    return str(rows) if isinstance(rows, (str, os.PathLike)) else "rows"


def _text(path: Path) -> str:
    """The text of a UTF-8 file; a byte that is not UTF-8 is an error naming the line."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ValueError(f"{path}: line {line}, byte {column} of the line is not UTF-8 ({data[err.start:err.end]!r}); "
                         "save the file as UTF-8") from err
    return text


def _as_embedding_array(view: str, value: Any, n_rows: int, n_present: int) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise TypeError(f"custom_embeddings[{view!r}] is not a numeric array") from err
    if array.ndim != 2:
        raise ValueError(f"custom_embeddings[{view!r}] must be 2-D (items x dimensions), got shape {array.shape}")
    if array.shape[0] not in (n_rows, n_present):
        raise ValueError(
            f"custom_embeddings[{view!r}] has {array.shape[0]} rows, but there are {n_rows} tuples "
            f"({n_present} of them have view {view!r}); give one row per tuple or one per tuple "
            "that has the view"
        )
    return array
