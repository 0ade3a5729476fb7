"""View specifications: what each column of a tuple is and how it becomes numbers.

A *view* is one member of a tuple of comparable items: an English text, a German text,
an image.  Text views have a language, stop words and a vocabulary (they get a
bag-of-words and their own topic-word matrix); image views only get an embedding.
"""
from __future__ import annotations

import importlib
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import regex

from ._validation import InstanceOf, Interval, NoneValue, Options, Satisfies, Strings, validate_params

__all__ = ["TextView", "ImageView", "View", "tokenize", "resolve_language", "validate_views", "KNOWN_TOKENIZERS"]

# ISO 639-1 code -> NLTK stop-word corpus name.  Languages NLTK lacks (Czech, ...) are
# looked up in `stopwordsiso` by code when that package is installed.
ISO_TO_NLTK = {
    "ar": "arabic", "az": "azerbaijani", "eu": "basque", "bn": "bengali", "ca": "catalan",
    "zh": "chinese", "da": "danish", "nl": "dutch", "en": "english", "fi": "finnish",
    "fr": "french", "de": "german", "el": "greek", "he": "hebrew", "hu": "hungarian",
    "id": "indonesian", "it": "italian", "kk": "kazakh", "ne": "nepali", "no": "norwegian",
    "nb": "norwegian", "pt": "portuguese", "ro": "romanian", "ru": "russian", "sl": "slovene",
    "es": "spanish", "sv": "swedish", "tg": "tajik", "tr": "turkish",
}
NLTK_TO_ISO = {v: k for k, v in ISO_TO_NLTK.items()}
# Codes with no NLTK list whose names we still recognise (stop words come from stopwordsiso).
OTHER_ISO = {"cs", "pl", "sk", "hr", "sr", "bg", "uk", "et", "lv", "lt", "ja", "ko", "hi",
             "fa", "vi", "th", "ga", "is", "mt", "sq", "mk", "be", "hy", "ka", "ms", "sw"}

# A word: a letter, then letters and combining marks.  Every Unicode letter survives (ä, ß,
# é, č, ř ...), and so do the vowel signs of Indic and Southeast Asian scripts (Devanagari,
# Bengali, Thai...: combining marks, not letters; without them "हिन्दी" fell apart into
# pieces); digits, underscores and punctuation split words.  `[a-zA-Z]` would silently drop
# German and Czech words.
_WORD = regex.compile(r"\p{L}[\p{L}\p{M}]*")

# Scripts written without spaces between words, and the mean length (code points) above which
# a view's "words" in that script are taken for unsegmented phrases (segmented Chinese or
# Japanese words average ~2 characters, Thai words ~4-5 code points with their vowel signs).
_UNSPACED = {"Han": 4, "Hiragana": 4, "Katakana": 6, "Thai": 8, "Lao": 8, "Khmer": 8, "Myanmar": 8,
             "Tibetan": 8}
_UNSPACED_RE = {script: regex.compile(rf"\p{{{script}}}") for script in _UNSPACED}
# Languages where one character is often a whole word: their default min_word_length is 1.
_ONE_CHARACTER_WORDS = {"zh", "ja"}

_DEFAULT = "auto"


def tokenize(text: str, min_word_length: int = 2) -> list[str]:
    """Lower-cased words of ``text`` (Unicode NFC, so composed and decomposed accents make one
    word): runs of letters with their combining marks; numbers and punctuation removed."""
    return [w for w in _WORD.findall(unicodedata.normalize("NFC", text).lower()) if len(w) >= min_word_length]


def unsegmented_script(counts: dict[str, int]) -> tuple[str, float] | None:
    """``(script, mean length)`` when most of the word occurrences in ``counts`` (``{word:
    count}``) are in a script written without spaces (Chinese, Japanese, Thai...) and are too
    long on average to be single words: phrases that no word segmenter has split.  None
    otherwise."""
    total = sum(counts.values())
    for script, limit in _UNSPACED.items():
        pattern = _UNSPACED_RE[script]
        in_script = [(w, c) for w, c in counts.items() if pattern.search(w)]
        n = sum(c for _, c in in_script)
        if n and n >= 0.5 * total:
            mean = sum(len(w) * c for w, c in in_script) / n
            if mean > limit:
                return script, mean
    return None


#: Word segmenters a saved preparation may name and that loading imports without being asked:
#: well-known packages' public functions (and this package's own tokenizer).  Any other
#: ``"module:function"`` in a file is imported only with ``trust_remote_code=True`` (CLI:
#: ``--trust-tokenizer``), since importing a module runs its code and calling a function named
#: by a stranger's file (``os:popen``) runs whatever that file says.
KNOWN_TOKENIZERS = frozenset({
    "ctm_m3l.views:tokenize",
    "jieba:cut", "jieba:lcut", "jieba:cut_for_search", "jieba:lcut_for_search",  # Chinese
    "pythainlp:word_tokenize", "pythainlp.tokenize:word_tokenize",  # Thai
    "laonlp:word_tokenize", "laonlp.tokenize:word_tokenize",  # Lao
    "khmernltk:word_tokenize",  # Khmer
    "nltk:word_tokenize", "nltk.tokenize:word_tokenize",
})
_REFERENCE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def resolve_tokenizer(view: str, spec: Any) -> Callable[[str], Any] | None:
    """The callable a ``TextView``'s ``tokenizer`` names: None, a callable, or
    ``"module:function"`` (attributes separated by dots), imported here."""
    if isinstance(spec, Withheld):
        spec.fail()
    if spec is None or callable(spec):
        return spec
    module_name, _, attribute = str(spec).partition(":")
    try:
        target = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"view {view!r}: cannot import the tokenizer {spec!r} ({err}); install its package "
                         "or pass the function itself") from err
    if not callable(target):
        raise TypeError(f"view {view!r}: the tokenizer {spec!r} is a {type(target).__name__}, not a function")
    return target


def tokenizer_reference(function: Callable) -> str | None:
    """``"module:qualified.name"`` that imports back to ``function``, or None (a lambda, a
    local function, a bound method of an object that the module does not name...)."""
    module, name = getattr(function, "__module__", None), getattr(function, "__qualname__", None)
    if not module or module == "__main__":
        return None
    candidates = [name] if name and "<" not in name else []
    # A bound method the module exports under another name: jieba.lcut is the default
    # Tokenizer's method (qualified name "Tokenizer.lcut").
    namespace = vars(sys.modules[module]) if module in sys.modules else {}
    candidates += [attr for attr, value in namespace.items()
                   if not attr.startswith("_") and attr != name and _same_function(value, function)]
    for candidate in candidates:
        reference = f"{module}:{candidate}"
        try:
            if _same_function(resolve_tokenizer("", reference), function):
                return reference
        except (ValueError, TypeError):
            continue
    return None


def _same_function(a: Any, b: Any) -> bool:
    try:
        return a is b or (callable(a) and bool(a == b))
    except Exception:  # an object whose == does something else (arrays...)
        return False


class Withheld:
    """Stands for a tokenizer or encoder that a saved preparation names but that loading did
    not bring back: one that was not saved by name (a lambda), or one that loading refuses to
    import or open without the user's word.  Using it raises ``ValueError`` with ``message``;
    saving the preparation again writes ``saved`` back unchanged."""

    def __init__(self, view: str, saved: Any, message: str) -> None:
        self.view, self.saved, self.message = view, saved, message

    def fail(self):
        raise ValueError(self.message)

    def __repr__(self) -> str:
        return f"<withheld {self.saved!r}>"


def saved_tokenizer(view: str, saved: Any, trust_remote_code: bool = False,
                    folder: Path | None = None) -> Any:
    """What a loaded text view's tokenizer becomes: ``saved`` itself where it may be imported
    (None, a :data:`KNOWN_TOKENIZERS` name, or any well-formed name with
    ``trust_remote_code``), else a :class:`Withheld` that says how to give it."""
    again = (f"M3LDataPreparation.load(folder, tokenizers={{{view!r}: function}}) or "
             f"from_config(config, tokenizers={{{view!r}: function}})")
    if saved is None:
        return None
    if isinstance(saved, dict):
        return Withheld(view, saved, (
            f"view {view!r} was prepared with a tokenizer that was not saved by name "
            f"({saved.get('unsaved', 'a function')}); pass it again: {again}, or give "
            "TextView(tokenizer='module:function')"))
    if not isinstance(saved, str) or not _REFERENCE.fullmatch(saved):
        return Withheld(view, saved, f"view {view!r}: the saved tokenizer {saved!r} is not a 'module:function' "
                                     f"name; pass the function itself: {again}")
    if not trust_remote_code and saved not in KNOWN_TOKENIZERS:
        return Withheld(view, saved, (
            f"view {view!r}: the saved tokenizer {saved!r} is not one of the known word segmenters "
            f"({', '.join(sorted(KNOWN_TOKENIZERS))}), and loading a saved preparation imports and "
            "calls no other code it names. If you trust where this folder came from, pass "
            "trust_remote_code=True (ctm-m3l infer --trust-tokenizer); or give the function yourself: "
            f"{again}"))
    if folder is not None and _module_inside(saved.partition(":")[0], folder):
        return Withheld(view, saved, (
            f"view {view!r}: the saved tokenizer {saved!r} would be imported from inside the folder "
            f"being loaded ({folder}); a folder's own files are never imported. Give the function "
            f"yourself: {again}"))
    return saved


def _module_inside(module: str, folder: Path) -> bool:
    """Whether importing ``module`` would load a file under ``folder`` (found, not imported)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module.split(".")[0])
    except (ImportError, ValueError):
        return False
    places = [spec.origin] if spec and spec.origin else []
    places += list(spec.submodule_search_locations or []) if spec else []
    root = Path(folder).resolve()
    return any(Path(p).resolve().is_relative_to(root) for p in places if p not in ("built-in", "frozen"))


# A Hugging Face hub name ("clip-ViT-B-32", "sentence-transformers/all-MiniLM-L6-v2").
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def saved_encoder(view: str, saved: Any, folder: Path | None = None) -> Any:
    """What a loaded view's encoder becomes: None, an ``offline:`` encoder, a hub name, or a
    path inside ``folder`` (made absolute); any other path is a :class:`Withheld`, so a
    file names no model elsewhere on the user's disk."""
    if saved is None or (isinstance(saved, str) and saved.startswith("offline:")):
        return saved
    override = (f"pass the encoder yourself: M3LDataPreparation.load(folder, encoders={{{view!r}: "
                f"name_or_path}}) (ctm-m3l infer --encoder)")
    if not isinstance(saved, str):
        return Withheld(view, saved, f"view {view!r}: the saved encoder {saved!r} is not a name; {override}")
    path = Path(saved)
    if folder is not None and not path.is_absolute() and ".." not in path.parts:
        inside = (Path(folder) / path).resolve()
        if inside.is_relative_to(Path(folder).resolve()) and inside.exists():
            return str(inside)
    if _HUB_NAME.fullmatch(saved) and ".." not in path.parts and not path.exists():
        return saved
    return Withheld(view, saved, (
        f"view {view!r}: the saved encoder {saved!r} is a path outside the folder being loaded; a saved "
        f"preparation names only offline: encoders, hub names and paths inside its own folder. If this "
        f"is the model you want, {override}"))


def resolve_language(name: str) -> str | None:
    """The ISO 639-1 code a view name implies (``"de"``, ``"text_de"``, ``"german"``), or None."""
    candidates = [name.lower()] + re.split(r"[_\-\s.]+", name.lower())
    for c in candidates:
        if c in ISO_TO_NLTK or c in OTHER_ISO:
            return c
        if c in NLTK_TO_ISO:
            return NLTK_TO_ISO[c]
    return None


def _load_stopwords(view: str, language: str | None) -> list[str]:
    if language is None:
        raise ValueError(
            f"view {view!r}: cannot tell which language's stop words to use from its name; "
            "pass language='en' (an ISO 639-1 code), stopwords=[...] or stopwords=None"
        )
    if language in ISO_TO_NLTK:
        corpus = ISO_TO_NLTK[language]
        try:
            from nltk.corpus import stopwords as nltk_stopwords

            return list(nltk_stopwords.words(corpus))
        except LookupError as err:
            raise ValueError(
                f"view {view!r}: NLTK's {corpus!r} stop-word list is not installed; run "
                "`python -m nltk.downloader stopwords`, point NLTK_DATA at a folder that has "
                "corpora/stopwords, or pass stopwords=[...]"
            ) from err
    try:
        import stopwordsiso
    except ImportError as err:
        raise ValueError(
            f"view {view!r}: NLTK has no stop-word list for language {language!r}; install "
            "`stopwordsiso` (pip install stopwordsiso) or pass stopwords=[...] or stopwords=None"
        ) from err
    if not stopwordsiso.has_lang(language):
        raise ValueError(
            f"view {view!r}: no stop-word list is known for language {language!r}; "
            "pass stopwords=[...] or stopwords=None"
        )
    return sorted(stopwordsiso.stopwords(language))


def _check_name(name: Any, kind: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"{kind} name must be a non-empty string, got {name!r}")
    return name


def _encoder_config(encoder: Any) -> str | None:
    if isinstance(encoder, Withheld):
        return encoder.saved
    return encoder if isinstance(encoder, str) else None


def _check_encoder(name: str, encoder: Any) -> None:
    if encoder is not None and not isinstance(encoder, (str, Withheld)) and not callable(encoder):
        raise TypeError(
            f"view {name!r}: encoder must be a model name or path (str), a callable "
            f"list -> np.ndarray, or None; got {type(encoder).__name__}"
        )


@dataclass
class TextView:
    """A text view in one language: gets an embedding, a bag-of-words and its own topics.

    Parameters
    ----------
    name : str
        Key of this view in every tuple (``"en"``, ``"de"``, ``"text_fr"``...).
    encoder : str, callable or None
        How texts become embeddings: a sentence-transformers model name or directory, an
        ``"offline:..."`` encoder (see :mod:`ctm_m3l.encoders`), a callable
        ``list[str] -> np.ndarray``, or None when embeddings are always given through
        ``custom_embeddings``.
    stopwords : "auto", list of str or None
        "auto" (default): NLTK's list for the language the name implies (``en`` -> english,
        ``de`` -> german...), else ``stopwordsiso``'s; a list: exactly these words; None: keep
        every word.
    vocabulary_size : int
        Keep the most frequent words of this language (paper appendix: 2,000).
    language : str or None
        ISO 639-1 code; by default inferred from ``name``.
    min_word_length : int or None
        Shorter words are dropped (single letters carry no topic).  None (default): 2, or 1
        for Chinese and Japanese, where one character is often a word.
    max_seq_length : int
        Passed to sentence-transformers encoders (paper appendix: 128 tokens).
    tokenizer : callable, str or None
        How a text becomes words for the bag of words.  None (default): runs of letters (with
        their combining marks), split at spaces, digits and punctuation: right for languages
        written with spaces between words.  For Chinese, Japanese, Thai..., a word segmenter:
        a callable ``str -> list[str]`` (``jieba.lcut``, ``pythainlp.word_tokenize``...) or its
        name ``"module:function"`` (``"jieba:lcut"``), imported when first used and saved by
        that name.  Its words are lower-cased, stripped of digits and punctuation, and
        filtered by ``min_word_length`` and the stop words like the built-in tokenizer's.
        Texts that look unsegmented (long runs of such a script) get a warning at ``fit``.
        The encoder always sees the original text.
    """

    name: str
    encoder: str | Callable[[list], Any] | None = None
    stopwords: str | Sequence[str] | None = _DEFAULT
    vocabulary_size: int = 2000
    language: str | None = None
    min_word_length: int | None = None
    max_seq_length: int = 128
    tokenizer: str | Callable[[str], Any] | None = None
    kind: str = field(default="text", init=False)
    _tokenizer_function: Any = field(default=None, init=False, repr=False, compare=False)

    #: What each field may be (checked by ``__post_init__``; ``name`` and ``encoder`` by their own checks).
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "stopwords": [Options(_DEFAULT), NoneValue(), Strings()],
        "vocabulary_size": [Interval(int, 1, None)],
        "language": [NoneValue(), InstanceOf(str, "an ISO 639-1 code string")],
        "min_word_length": [NoneValue(), Interval(int, 1, None)],
        "max_seq_length": [Interval(int, 1, None)],
        "tokenizer": [NoneValue(), Satisfies(callable, "a function str -> list of words", 3),
                      InstanceOf(Withheld, "a withheld tokenizer"),
                      Satisfies(lambda t: isinstance(t, str) and ":" in t, "'module:function'", "jieba")],
    }

    def __post_init__(self) -> None:
        _check_name(self.name, "TextView")
        _check_encoder(self.name, self.encoder)
        validate_params(self._parameter_constraints, vars(self), f"view {self.name!r}")
        if self.language is None:
            self.language = resolve_language(self.name)
        if self.min_word_length is None:
            self.min_word_length = 1 if self.language in _ONE_CHARACTER_WORDS else 2
        if self.stopwords is not None and not isinstance(self.stopwords, str):
            self.stopwords = list(self.stopwords)

    def stopword_set(self) -> frozenset[str]:
        """The stop words this view removes (loads NLTK's list on first use)."""
        if self.stopwords is None:
            return frozenset()
        if self.stopwords == _DEFAULT:
            self.stopwords = _load_stopwords(self.name, self.language)
        return frozenset(unicodedata.normalize("NFC", w).lower() for w in self.stopwords)

    def tokenizer_function(self) -> Callable[[str], Any] | None:
        """The tokenizer as a function (a ``"module:function"`` is imported on the first call),
        or None for the built-in one."""
        if self._tokenizer_function is None and self.tokenizer is not None:
            self._tokenizer_function = resolve_tokenizer(self.name, self.tokenizer)
        return self._tokenizer_function

    def words(self, text: str) -> list[str]:
        """The words of ``text`` for the bag of words, before stop words are removed."""
        function = self.tokenizer_function()
        if function is None:
            return tokenize(text, self.min_word_length)
        out = function(text)
        if isinstance(out, str) or not isinstance(out, Iterable):
            raise TypeError(f"view {self.name!r}: the tokenizer returned a {type(out).__name__}, "
                            "not a list of words")
        words = []
        for token in out:
            if not isinstance(token, str):
                raise TypeError(f"view {self.name!r}: the tokenizer returned a {type(token).__name__} "
                                f"({token!r}) among its words; it must return strings")
            words += tokenize(token, self.min_word_length)
        return words

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_tokenizer_function"] = None  # imported again after unpickling
        if callable(self.tokenizer):
            # By name where it has one: a bound method (jieba.lcut) would pickle its whole
            # object, locks and dictionaries included.
            state["tokenizer"] = tokenizer_reference(self.tokenizer) or self.tokenizer
        return state

    def to_config(self) -> dict:
        tokenizer = self.tokenizer
        if isinstance(tokenizer, Withheld):
            tokenizer = tokenizer.saved
        elif callable(tokenizer):
            tokenizer = tokenizer_reference(tokenizer) or {"unsaved": repr(tokenizer)[:200]}
        return {
            "kind": "text", "name": self.name, "language": self.language,
            "vocabulary_size": self.vocabulary_size, "min_word_length": self.min_word_length,
            "max_seq_length": self.max_seq_length,
            "encoder": _encoder_config(self.encoder),
            "stopwords": self.stopwords, "tokenizer": tokenizer,
        }


@dataclass
class ImageView:
    """An image view: gets an embedding (no bag-of-words); borrows the words of the topics.

    Parameters
    ----------
    name : str
        Key of this view in every tuple (a path to an image file, relative paths resolved
        against the data file's folder).
    encoder : str, callable or None
        A sentence-transformers image model (``"clip-ViT-B-32"``), an ``"offline:..."``
        encoder, a callable ``list[path] -> np.ndarray``, or None with ``custom_embeddings``.
    on_error : "raise" or "skip"
        What to do with missing or unreadable image files: "raise" lists every bad path;
        "skip" marks the image view missing for those tuples and reports them.
    """

    name: str
    encoder: str | Callable[[list], Any] | None = None
    on_error: str = "raise"
    kind: str = field(default="image", init=False)

    _parameter_constraints: ClassVar[dict[str, list]] = {"on_error": [Options("raise", "skip")]}

    def __post_init__(self) -> None:
        _check_name(self.name, "ImageView")
        _check_encoder(self.name, self.encoder)
        validate_params(self._parameter_constraints, vars(self), f"view {self.name!r}")

    def to_config(self) -> dict:
        return {"kind": "image", "name": self.name, "on_error": self.on_error,
                "encoder": _encoder_config(self.encoder)}


View = TextView | ImageView


def view_from_config(config: dict, tokenizer: Any = None, encoder: Any = None, trust_remote_code: bool = False,
                     folder: Path | None = None) -> View:
    """The view a ``to_config`` dict describes.  ``tokenizer`` and ``encoder`` replace the saved
    ones; a saved tokenizer is imported only as :func:`saved_tokenizer` allows, and a saved
    encoder path only inside ``folder`` (:func:`saved_encoder`)."""
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        raise ValueError(f"a view entry must be an object with a 'name', got {config!r:.200}")
    name = config["name"]
    if encoder is None:
        encoder = saved_encoder(name, config.get("encoder"), folder)
    if config.get("kind") == "text":
        if tokenizer is None:
            tokenizer = saved_tokenizer(name, config.get("tokenizer"), trust_remote_code, folder)
        return TextView(
            name, encoder=encoder, stopwords=config.get("stopwords"),
            vocabulary_size=config["vocabulary_size"], language=config.get("language"),
            min_word_length=config.get("min_word_length", 2),
            max_seq_length=config.get("max_seq_length", 128), tokenizer=tokenizer,
        )
    if config.get("kind") == "image":
        return ImageView(name, encoder=encoder, on_error=config.get("on_error", "raise"))
    raise ValueError(f"view {name!r}: unknown view kind {config.get('kind')!r} (text or image)")


def validate_views(views: Any) -> list[View]:
    """Check a list of view specs: non-empty, TextView/ImageView objects, unique names."""
    if isinstance(views, (str, bytes)) or not isinstance(views, Iterable):
        raise TypeError("views must be a list of TextView/ImageView objects")
    views = list(views)
    if not views:
        raise ValueError("views must name at least one view")
    seen = set()
    for v in views:
        if not isinstance(v, (TextView, ImageView)):
            raise TypeError(
                f"views must be TextView or ImageView objects, got {v!r}; e.g. "
                "views=[TextView('en'), TextView('de'), ImageView('image')]"
            )
        if v.name in seen:
            raise ValueError(f"view name {v.name!r} appears twice")
        seen.add(v.name)
    if not any(isinstance(v, TextView) for v in views):
        raise ValueError(
            "at least one TextView is needed: topics are distributions over a language's words, "
            "and image views borrow the words of the text views' topics"
        )
    return views
