"""A disk cache of embeddings, one entry per item: SQLite from the standard library.

Why SQLite: one file, transactions that a killed process cannot leave half-written, and
several processes (torchrun ranks sharing ``--cache-dir``) reading and writing at once
without corrupting it (write-ahead log, a busy timeout); nothing to install and nothing
home-made to get wrong.  A row holds one item's vector with its width and SHA-256, keyed by
a digest of the encoder (its name and every setting that changes its output) and of the
item's content, so a corpus that grows by 20 rows encodes 20 items, and a row that does not
match its checksum is encoded again, never returned.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["EmbeddingStore", "STORE_FILE"]

STORE_FILE = "embeddings.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    key TEXT PRIMARY KEY,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    sha256 TEXT NOT NULL
)
"""
# SQLite refuses statements with more variables than this (999 in old builds).
_CHUNK = 900


class EmbeddingStore:
    """The embeddings cached in ``folder/embeddings.sqlite``.

    ``get`` returns what is stored and well-formed for a list of keys; ``put`` writes items
    in one transaction.  A store file that is not a readable database is set aside (renamed,
    never deleted) with a warning and a new one started.
    """

    def __init__(self, folder: str | os.PathLike, timeout: float = 600.0) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / STORE_FILE
        self.timeout = timeout
        try:
            self._connection = self._connect()
        except sqlite3.DatabaseError as err:
            aside = self.path.with_name(f"{STORE_FILE}.unreadable-{int(time.time())}")
            os.replace(self.path, aside)
            warnings.warn(f"{self.path} is not a readable embedding cache ({err}); moved it to {aside} and "
                          "started a new one", stacklevel=2)
            self._connection = self._connect()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        deadline = time.monotonic() + self.timeout
        while True:
            # Switching to the write-ahead log takes an exclusive lock, which SQLite's busy
            # timeout does not wait for: processes opening a new store together retry.
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(_SCHEMA)
                break
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    connection.close()
                    raise
                time.sleep(0.05)
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("SELECT COUNT(*) FROM embeddings LIMIT 1").fetchone()
        return connection

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get(self, keys: Sequence[str], dim: int | None = None) -> tuple[dict[str, np.ndarray], list[str]]:
        """``({key: vector} of the well-formed entries, [keys of damaged entries])``; keys not
        stored are in neither.  ``dim``: the width every vector must have, when known."""
        found, damaged = {}, []
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _CHUNK):
            part = unique[start:start + _CHUNK]
            rows = self._connection.execute(
                f"SELECT key, dim, vector, sha256 FROM embeddings WHERE key IN ({','.join('?' * len(part))})",
                part).fetchall()
            for key, width, blob, digest in rows:
                if not isinstance(blob, bytes) or hashlib.sha256(blob).hexdigest() != digest \
                        or len(blob) != 4 * width or (dim is not None and width != dim):
                    damaged.append(key)
                    continue
                vector = np.frombuffer(blob, dtype=np.float32)
                if not np.isfinite(vector).all():
                    damaged.append(key)
                    continue
                found[key] = vector
        return found, damaged

    def put(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        """Store ``(key, vector)`` pairs in one transaction (all or none survive a kill)."""
        rows = []
        for key, vector in items:
            blob = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
            rows.append((key, len(blob) // 4, blob, hashlib.sha256(blob).hexdigest()))
        with self._transaction():
            self._connection.executemany(
                "INSERT OR REPLACE INTO embeddings (key, dim, vector, sha256) VALUES (?, ?, ?, ?)", rows)

    def _transaction(self):
        connection = self._connection

        class _Transaction:
            def __enter__(self):
                connection.execute("BEGIN IMMEDIATE")

            def __exit__(self, kind, value, traceback):
                connection.execute("COMMIT" if kind is None else "ROLLBACK")

        return _Transaction()
