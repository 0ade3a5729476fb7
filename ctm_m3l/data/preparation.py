"""Tuples of raw views -> a :class:`MultiViewDataset` (embeddings, bags of words, view mask).

``M3LDataPreparation`` subclasses CTM's ``TopicModelDataPreparation``: ``fit`` learns one
vocabulary per language and encodes every view; ``transform`` prepares new tuples, or the
items of one view alone, with the fitted vocabularies and encoders.
"""
from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from contextualized_topic_models.utils.data_preparation import TopicModelDataPreparation

from ..encoders import ImageLoadError, check_images, encode_cached, get_encoder
from ..persistence import PREPARATION
from ..views import ImageView, TextView, View, Withheld, unsegmented_script, validate_views, view_from_config
from .dataset import MultiViewDataset
from .io import _MAX_LISTED, _as_embedding_array, _check_ids, _is_missing, _listing, _source, _undecodable, read_rows

__all__ = ["M3LDataPreparation"]


class M3LDataPreparation(TopicModelDataPreparation):
    """Prepares tuples of views for :class:`ctm_m3l.M3LTM`.

    Args:
        views: ``TextView``/``ImageView`` specs, e.g.
            ``[TextView("en"), TextView("de"), ImageView("image")]``.
        encoder_batch_size: items per encoder batch.
        device: device for the encoders (default: CUDA when available).
        cache_dir: folder for cached embeddings, one entry per item keyed by the encoder, its
            settings and the item's content (:mod:`ctm_m3l.cache`), or None.
        show_progress_bar: show encoders' progress bars.
        num_workers: threads that decode images while the encoder runs (default: up to 4).
        encoder_backend: ``"torch"`` or ``"openvino"`` (CPU; :mod:`ctm_m3l.backends`): runs the
            offline encoders and sentence-transformers text models faster on CPU with the
            same embeddings to rounding (``benchmarks/encode_throughput.py``); converted once,
            kept in ``cache_dir``.

    Example:
        >>> prep = M3LDataPreparation([TextView("en"), TextView("de"), ImageView("image")])
        >>> train = prep.fit(rows, custom_embeddings={"en": E_en, "de": E_de, "image": E_img})
        >>> test_de = prep.transform(german_texts, view="de", custom_embeddings=E_test_de)
    """

    def __init__(self, views: Sequence[View], show_warning: bool = True, max_seq_length: int = 128,
                 encoder_batch_size: int = 32, device: str | None = None,
                 cache_dir: str | os.PathLike | None = None, show_progress_bar: bool = False,
                 num_workers: int | None = None, encoder_backend: str = "torch") -> None:
        super().__init__(contextualized_model=None, show_warning=show_warning,
                         max_seq_length=max_seq_length)
        self.views = validate_views(views)
        self.view_names = [v.name for v in self.views]
        self.encoder_batch_size = encoder_batch_size
        self.device = device
        self.cache_dir = cache_dir
        self.show_progress_bar = show_progress_bar
        self.num_workers = num_workers
        from ..backends import BACKENDS

        if encoder_backend not in BACKENDS:
            raise ValueError(f"encoder_backend must be one of {BACKENDS}, got {encoder_backend!r}")
        self.encoder_backend = encoder_backend
        self.vocabularies: dict[str, list[str]] = {}
        self.embedding_sizes: dict[str, int] = {}
        self._word_index: dict[str, dict[str, int]] = {}
        self._encoders: dict[str, Any] = {}

    # -- public API ---------------------------------------------------------------------
    def fit(self, rows: Any, custom_embeddings: dict[str, Any] | None = None,
            words_only: bool = False) -> MultiViewDataset:
        """Learn each language's vocabulary and encode every view of ``rows``.  ``words_only``:
        bags of words alone, no encoder runs and every view's embeddings are zero-width (for
        systems that read only words, such as PLTM); ``transform`` must then say so too."""
        records, base = read_rows(rows)
        custom = self._check_custom(custom_embeddings)
        values, mask = self._collect(records, self.views, _source(rows))
        documents, tokens = {}, {}
        for view in self.views:
            if isinstance(view, TextView):
                a = self.view_names.index(view.name)
                tokens[view.name], documents[view.name] = self._tokenize(view, values[a], mask[:, a])
                self._fit_vocabulary(view, tokens[view.name])
        self.vocab = self.vocabularies[self.views[0].name] if isinstance(self.views[0], TextView) else []
        self.id2token = dict(enumerate(self.vocab))
        return self._build(records, values, mask, tokens, documents, custom, base, fitting=True,
                           words_only=words_only)

    def transform(self, rows: Any, view: str | None = None, custom_embeddings: Any = None,
                  words_only: bool = False) -> MultiViewDataset:
        """Prepare new data with the fitted vocabularies and encoders.

        Args:
            rows: tuples (as in ``fit``), or, with ``view=``, a list of that view's items
                alone (texts, or image paths).
            view: the one view ``rows`` holds, or None for tuples of views.
            custom_embeddings: with ``view=``, an ``(n, d)`` array; else a dict by view.
        """
        if not self.embedding_sizes:
            raise RuntimeError("M3LDataPreparation.transform called before fit")
        base = None
        if view is not None:
            if view not in self.view_names:
                raise ValueError(f"unknown view {view!r}; the views are {self.view_names}")
            if isinstance(rows, (str, os.PathLike)) or hasattr(rows, "columns"):
                records, base = read_rows(rows)
            else:
                if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
                    raise TypeError(f"with view={view!r}, rows must be a list of that view's items")
                records = [{view: item} for item in rows]
            if custom_embeddings is not None and not isinstance(custom_embeddings, Mapping):
                custom_embeddings = {view: custom_embeddings}
            views = [self.views[self.view_names.index(view)]]
        else:
            records, base = read_rows(rows)
            views = self.views
        custom = self._check_custom(custom_embeddings)
        values, mask = self._collect(records, views, _source(rows), one_view=view is not None)
        # Expand to all views so the dataset's layout matches the fitted one.
        full_values = [[None] * len(records) for _ in self.views]
        full_mask = np.zeros((len(records), len(self.views)), dtype=bool)
        for j, v in enumerate(views):
            a = self.view_names.index(v.name)
            full_values[a], full_mask[:, a] = values[j], mask[:, j]
        documents, tokens = {}, {}
        for v in views:
            if isinstance(v, TextView):
                a = self.view_names.index(v.name)
                tokens[v.name], documents[v.name] = self._tokenize(v, full_values[a], full_mask[:, a])
        return self._build(records, full_values, full_mask, tokens, documents, custom, base,
                           fitting=False, active=[v.name for v in views], words_only=words_only)

    def to_config(self, relative_to: str | os.PathLike | None = None) -> dict:
        """Views, vocabularies and embedding sizes as JSON-able settings.  ``relative_to``: the
        folder the settings are saved in; encoder paths inside it are written relative to it."""
        views = [v.to_config() for v in self.views]
        if relative_to is not None:
            folder = Path(relative_to).resolve()
            for view in views:
                encoder = view.get("encoder")
                if encoder and not encoder.startswith("offline:") and Path(encoder).is_absolute() \
                        and Path(encoder).resolve().is_relative_to(folder):
                    view["encoder"] = Path(encoder).resolve().relative_to(folder).as_posix()
        return {"views": views, "vocabularies": self.vocabularies, "embedding_sizes": self.embedding_sizes}

    @classmethod
    def from_config(cls, config: dict, tokenizers: dict[str, Any] | None = None,
                    encoders: dict[str, Any] | None = None, trust_remote_code: bool = False,
                    folder: str | os.PathLike | None = None, **kwargs) -> M3LDataPreparation:
        """The preparation :meth:`to_config` saved.

        A saved preparation runs no code of its own: a text view's saved tokenizer
        (``"module:function"``) is imported only when it is one of
        :data:`~ctm_m3l.views.KNOWN_TOKENIZERS` or with ``trust_remote_code=True``, and a saved
        encoder path only when it lies inside ``folder`` (the folder the settings came from);
        the others raise, when the view is used, an error that says how to give them.

        Args:
            tokenizers: ``{view: function}`` replacing the saved tokenizers (needed for one that
                was a lambda or a local function, or one that is not trusted).
            encoders: ``{view: name, path or callable}`` replacing the saved encoders.
            trust_remote_code: import any tokenizer the settings name (transformers' word for
                running code a downloaded file names); only for files from a trusted source.
            folder: the folder holding the settings; encoder paths are resolved inside it.
        """
        return _from_config(cls, config, tokenizers, encoders, trust_remote_code, folder, kwargs)

    @classmethod
    def load(cls, folder: str | os.PathLike, tokenizers: dict[str, Any] | None = None,
             encoders: dict[str, Any] | None = None, trust_remote_code: bool = False,
             **kwargs) -> M3LDataPreparation:
        """The preparation saved in a model folder (``model.save(folder, preparation=prep)``, or
        ``ctm-m3l fit``), checked against the folder's manifest; the options are
        :meth:`from_config`'s."""
        from ..persistence import model_folder, read_json, verify_folder  # noqa: PLC0415

        directory = model_folder(folder)
        files = verify_folder(directory)
        path = directory / PREPARATION
        if not path.is_file() or (files is not None and PREPARATION not in files):
            raise ValueError(f"{path} is missing: this model was saved without its preparation; save it with "
                             "model.save(folder, preparation=prep) (ctm-m3l fit does)")
        return cls.from_config(read_json(path, "preparation"), tokenizers=tokenizers, encoders=encoders,
                               trust_remote_code=trust_remote_code, folder=directory, **kwargs)

    # -- steps ----------------------------------------------------------------------------
    def _check_custom(self, custom: Any) -> dict[str, Any]:
        if custom is None:
            return {}
        if not isinstance(custom, Mapping):
            raise TypeError("custom_embeddings must be a dict {view name: array}")
        unknown = [k for k in custom if k not in self.view_names]
        if unknown:
            raise ValueError(f"custom_embeddings has unknown view(s) {unknown}; the views are {self.view_names}")
        return dict(custom)

    def _collect(self, records: list[dict], views: Sequence[View], source: str,
                 one_view: bool = False) -> tuple[list[list], np.ndarray]:
        """Each view's values per row, and which rows have it; type and emptiness checks.
        With ``one_view`` (a transform of one view's items), rows lacking it are allowed: their
        topic distributions will be NaN."""
        if not records:
            raise ValueError(f"{source}: no rows: the data is empty")
        values = [[None] * len(records) for _ in views]
        mask = np.zeros((len(records), len(views)), dtype=bool)
        for i, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise TypeError(f"{source}: row {i} is a {type(record).__name__}, not a dict of views")
            for a, view in enumerate(views):
                value = record.get(view.name)
                if _is_missing(value):
                    continue
                if isinstance(view, TextView) and not isinstance(value, str):
                    raise TypeError(f"{source}: row {i}, view {view.name!r}: expected a text (str), got "
                                    f"{type(value).__name__}")
                if isinstance(view, ImageView) and not isinstance(value, (str, os.PathLike)) \
                        and not hasattr(value, "convert"):
                    raise TypeError(f"{source}: row {i}, view {view.name!r}: expected an image path or PIL image, "
                                    f"got {type(value).__name__}")
                values[a][i] = value
                mask[i, a] = True
        for a, view in enumerate(views):
            if not mask[:, a].any() and not any(view.name in r for r in records):
                fields = sorted({str(k) for r in records[:1000] for k in r})
                raise ValueError(f"{source}: no row has a field {view.name!r} (view {view.name!r}); the rows' "
                                 f"fields are {fields[:20]}")
        empty = np.flatnonzero(~mask.any(axis=1)).tolist()
        if empty and one_view and len(empty) < len(records):
            warnings.warn(f"{source}: row(s) {_listing(empty)} have no {views[0].name!r}; their topic "
                          "distributions will be NaN", stacklevel=3)
        elif empty:
            keys = sorted({str(k) for i in empty[:_MAX_LISTED] for k in records[i]})
            raise ValueError(
                f"{source}: row(s) {_listing(empty)} have none of the views {[v.name for v in views]} "
                f"(their keys: {keys}); every tuple needs at least one view"
            )
        return values, mask

    @staticmethod
    def _tokenize(view: TextView, texts: list, present: np.ndarray) -> tuple[list, list]:
        stop = view.stopword_set()
        view.tokenizer_function()  # imported here: a missing package is no row's fault
        tokens = []
        for i, (text, ok) in enumerate(zip(texts, present)):
            try:
                words = view.words(text) if ok else []
            except TypeError as err:
                raise TypeError(f"row {i}: {err}") from err
            tokens.append([w for w in words if w not in stop])
        return tokens, [" ".join(t) for t in tokens]

    def _fit_vocabulary(self, view: TextView, tokens: list[list[str]]) -> None:
        counts = Counter(w for doc in tokens for w in doc)
        if view.tokenizer is None:
            unsegmented = unsegmented_script(counts)
            if unsegmented:
                script, mean = unsegmented
                warnings.warn(
                    f"view {view.name!r}: its texts look like {script} script written without spaces "
                    f"between words (its 'words' average {mean:.1f} characters): the built-in tokenizer "
                    "splits only at spaces, digits and punctuation, so whole phrases would become "
                    "vocabulary entries. Pass TextView(..., tokenizer=...) with a word segmenter "
                    "(e.g. 'jieba:lcut' for Chinese, 'pythainlp:word_tokenize' for Thai) or segment "
                    "the texts with spaces first", stacklevel=3)
        if not counts:
            raise ValueError(
                f"view {view.name!r}: the vocabulary is empty after lower-casing and removing "
                "punctuation, numbers and stop words; check the column holds texts in the language "
                f"{view.language!r} and the stop-word list"
            )
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: view.vocabulary_size]
        vocabulary = sorted(w for w, _ in ranked)
        self.vocabularies[view.name] = vocabulary
        self._word_index[view.name] = {w: i for i, w in enumerate(vocabulary)}

    def _bow(self, view: str, tokens: list[list[str]]) -> sp.csr_matrix:
        index = self._word_index[view]
        indptr, indices = [0], []
        for doc in tokens:
            indices.extend(index[w] for w in doc if w in index)
            indptr.append(len(indices))
        data = np.ones(len(indices), dtype=np.float32)
        matrix = sp.csr_matrix((data, np.asarray(indices, dtype=np.int64), np.asarray(indptr, dtype=np.int64)),
                               shape=(len(tokens), len(index)))
        matrix.sum_duplicates()
        return matrix

    def _encoder(self, view: View):
        if view.name not in self._encoders:
            self._encoders[view.name] = get_encoder(
                view.encoder, view.kind, device=self.device, batch_size=self.encoder_batch_size,
                max_seq_length=getattr(view, "max_seq_length", self.max_seq_length),
                show_progress_bar=self.show_progress_bar, num_workers=self.num_workers,
                backend=self._backend(view), export_dir=self.cache_dir)
        return self._encoders[view.name]

    def _backend(self, view: View) -> str:
        """The encoder backend for ``view``: ``encoder_backend`` where it runs the view's encoder
        (model names and offline: encoders; not callables)."""
        return self.encoder_backend if isinstance(view.encoder, str) else "torch"

    def _embed(self, view: View, items: list, rows: np.ndarray, n_rows: int, custom: Any,
               base: Path | None, mask_column: np.ndarray, skipped: list, dim: int | None = None) -> np.ndarray:
        """``(n_rows, d)`` embeddings of ``view`` (zeros where absent); may unmark bad images."""
        n_present = len(rows)
        if custom is not None:
            array = _as_embedding_array(view.name, custom, n_rows, n_present)
            present_rows = array[rows] if array.shape[0] == n_rows else array
        else:
            if isinstance(view.encoder, Withheld):
                view.encoder.fail()
            if view.encoder is None:
                raise ValueError(
                    f"view {view.name!r} has no encoder and no custom_embeddings[{view.name!r}] was "
                    f"given; pass one of them (e.g. {type(view).__name__}({view.name!r}, "
                    f"encoder={'offline:minilm' if view.kind == 'text' else 'offline:efficientnet-lite0'!r}))"
                )
            if isinstance(view, ImageView):
                paths = [item if hasattr(item, "convert") else
                         (Path(item) if Path(item).is_absolute() or base is None else base / item)
                         for item in items]
                # Headers first (no pixels): every unreadable file in one error, before encoding.
                bad = check_images(paths, rows=rows.tolist())
                if bad and view.on_error == "raise":
                    raise ImageLoadError(view.name, bad + _undecodable(paths, rows, bad))
                encoder = self._encoder(view)
                all_bad = []
                while True:
                    if bad and view.on_error == "raise":
                        raise ImageLoadError(view.name, bad)
                    if bad:
                        all_bad += bad
                        rows, paths = self._skip_images(view, bad, rows, paths, mask_column, skipped)
                    try:
                        present_rows = encode_cached(
                            encoder, paths, view.name, self.cache_dir, dim=dim,
                            key_items=[p if hasattr(p, "convert") else str(p) for p in paths]) if paths else None
                        break
                    except ImageLoadError as err:  # pixels that would not decode: found while encoding
                        row_of = {str(p): int(r) for p, r in zip(paths, rows)}
                        bad = [(row_of[path], path, reason) for _, path, reason in err.bad]
                if all_bad:
                    warnings.warn(f"view {view.name!r}: skipped {len(all_bad)} unreadable image(s): "
                                  + "; ".join(f"row {r}: {p} ({why})" for r, p, why in all_bad[:_MAX_LISTED]),
                                  stacklevel=3)
            else:
                present_rows = encode_cached(self._encoder(view), list(items), view.name, self.cache_dir,
                                             dim=dim) if len(items) else None
            if present_rows is None:
                size = self.embedding_sizes.get(view.name)
                if size is None:
                    raise ValueError(f"view {view.name!r}: no readable items to encode")
                present_rows = np.zeros((0, size), dtype=np.float32)
        bad = ~np.isfinite(present_rows).all(axis=1)
        if bad.any():
            raise ValueError(
                f"view {view.name!r}: embeddings contain NaN or inf at row(s) {_listing(rows[bad].tolist())}")
        out = np.zeros((n_rows, present_rows.shape[1]), dtype=np.float32)
        out[rows] = present_rows
        return out

    @staticmethod
    def _skip_images(view: ImageView, bad: list, rows: np.ndarray, paths: list, mask_column: np.ndarray,
                     skipped: list) -> tuple[np.ndarray, list]:
        """Mark ``bad`` images missing for their tuples (``on_error="skip"``); the rows and
        paths left."""
        bad_rows = {r for r, _, _ in bad}
        for r, p, why in bad:
            skipped.append((r, view.name, p, why))
            mask_column[r] = False
        keep = [k for k, r in enumerate(rows) if r not in bad_rows]
        return rows[keep], [paths[k] for k in keep]

    def _build(self, records, values, mask, tokens, documents, custom, base, fitting: bool,
               active: list[str] | None = None, words_only: bool = False) -> MultiViewDataset:
        n = len(records)
        active = self.view_names if active is None else active
        embeddings, bow, skipped = {}, {}, []
        for a, view in enumerate(self.views):
            if view.name not in active:
                continue
            rows = np.flatnonzero(mask[:, a])
            items = [values[a][i] for i in rows]
            if words_only:
                embeddings[view.name] = np.zeros((n, 0), dtype=np.float32)
            else:
                embeddings[view.name] = self._embed(view, items, rows, n, custom.get(view.name), base, mask[:, a],
                                                    skipped, dim=None if fitting else self.embedding_sizes[view.name])
            size = embeddings[view.name].shape[1]
            if fitting:
                self.embedding_sizes[view.name] = size
            elif size != self.embedding_sizes[view.name]:
                raise ValueError(
                    f"view {view.name!r}: embeddings have {size} dimensions, but the data was fitted "
                    f"with {self.embedding_sizes[view.name]}; use the same encoder as in fit")
        for view in self.views:  # views absent from a one-view transform: zeros, masked out
            if view.name not in embeddings:
                embeddings[view.name] = np.zeros((n, self.embedding_sizes[view.name]), dtype=np.float32)
        for view in self.views:
            if isinstance(view, TextView):
                bow[view.name] = self._bow(view.name, tokens.get(view.name, [[]] * n))
        empty = [v for a, v in enumerate(self.view_names) if v in active and not mask[:, a].any()]
        if empty and fitting:
            warnings.warn(f"view(s) {empty} have no items in these rows", stacklevel=4)
        ids = [r.get("id", i) if isinstance(r, Mapping) else i for i, r in enumerate(records)]
        _check_ids(ids, {v.name: mask[:, a] for a, v in enumerate(self.views) if isinstance(v, TextView)})
        return MultiViewDataset(self.views, embeddings, bow, dict(self.vocabularies), mask, ids=ids,
                                documents=documents, skipped=skipped)


def _from_config(cls, config: Any, tokenizers: dict[str, Any] | None, encoders: dict[str, Any] | None,
                 trust_remote_code: bool, folder: str | os.PathLike | None, kwargs: dict) -> M3LDataPreparation:
    """``M3LDataPreparation.from_config``: the saved settings checked entry by entry, errors
    naming the file (or "preparation config") and the entry."""
    source = f"{Path(folder) / PREPARATION}: " if folder is not None else "preparation config: "
    if not isinstance(config, Mapping) or not isinstance(config.get("views"), list) \
            or not isinstance(config.get("vocabularies"), Mapping) \
            or not isinstance(config.get("embedding_sizes"), Mapping):
        raise ValueError(f"{source}not a saved M3LDataPreparation (it needs 'views', 'vocabularies' and "
                         "'embedding_sizes')")
    try:
        names = [c.get("name") if isinstance(c, Mapping) else None for c in config["views"]]
        text_views = {c["name"] for c in config["views"] if isinstance(c, Mapping) and c.get("kind") == "text"}
        for option, given in (("tokenizers", tokenizers), ("encoders", encoders)):
            unknown = [v for v in (given or {}) if v not in (text_views if option == "tokenizers" else names)]
            if unknown:
                kinds = "text views" if option == "tokenizers" else "views"
                raise ValueError(f"{option} names {unknown}, which are not {kinds} of this preparation")
        folder_path = Path(folder) if folder is not None else None
        views = [view_from_config(c, (tokenizers or {}).get(names[i]), (encoders or {}).get(names[i]),
                                  trust_remote_code=trust_remote_code, folder=folder_path)
                 for i, c in enumerate(config["views"])]
        prep = cls(views, **kwargs)
        vocabularies = {str(k): v for k, v in config["vocabularies"].items()}
        for name, words in vocabularies.items():
            if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                raise ValueError(f"vocabularies[{name!r}] must be a list of words")
        prep.vocabularies = {k: list(v) for k, v in vocabularies.items()}
        prep._word_index = {k: {w: i for i, w in enumerate(v)} for k, v in prep.vocabularies.items()}
        prep.embedding_sizes = {str(k): int(v) for k, v in config["embedding_sizes"].items()}
    except (KeyError, TypeError, ValueError) as err:
        message = f"missing entry {err}" if isinstance(err, KeyError) else str(err)
        raise ValueError(f"{source}{message}") from err
    missing = [v.name for v in prep.views if v.name not in prep.embedding_sizes] + \
        [v.name for v in prep.views if isinstance(v, TextView) and v.name not in prep.vocabularies]
    if missing:
        raise ValueError(f"{source}view(s) {sorted(set(missing))} lack their vocabulary or embedding size")
    return prep
