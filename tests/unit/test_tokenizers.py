"""Words of other scripts: combining marks, Unicode forms, word segmenters for languages
written without spaces, and how a preparation saves and restores its tokenizers."""
import json
import pickle
import warnings

import numpy as np
import pytest

from ctm_m3l import M3LDataPreparation, TextView
from ctm_m3l.views import tokenize

# A toy Chinese word segmenter (longest match over a small dictionary), standing in for jieba.
WORDS = ["自行车", "男人", "孩子", "两个", "一个", "公园", "小狗", "草地", "骑", "在", "玩", "跑", "狗", "猫"]


def segment(text):
    out, i = [], 0
    while i < len(text):
        match = next((w for w in sorted(WORDS, key=len, reverse=True) if text.startswith(w, i)), text[i])
        out.append(match)
        i += len(match)
    return out


class Segmenter:
    """Like jieba: a module-level function that is a bound method of a default instance."""

    def __init__(self):
        import threading

        self.lock = threading.RLock()  # unpicklable, as jieba's Tokenizer

    def cut(self, text):
        with self.lock:
            return segment(text)


_default = Segmenter()
cut = _default.cut


ZH = ["一个男人在骑自行车。", "两个孩子在公园玩", "小狗在草地跑", "一个孩子在骑自行车", "猫在草地", "两个男人在公园跑"]


def rows(texts=ZH):
    return [{"zh": t, "en": e} for t, e in zip(texts, ["a man rides a bike", "two kids play in a park", "a dog runs",
                                                       "a kid rides a bike", "a cat on grass", "two men run"])]


def embeddings(n):
    rng = np.random.default_rng(0)
    return {"zh": rng.normal(size=(n, 4)), "en": rng.normal(size=(n, 4))}


def test_words_keep_their_combining_marks_and_one_unicode_form():
    # Devanagari, Bengali and Thai vowel signs are combining marks, not letters.
    assert tokenize("हिन्दी भाषा बहुत सुंदर है") == ["हिन्दी", "भाषा", "बहुत", "सुंदर", "है"]
    assert tokenize("আমি বাংলায় গান গাই") == ["আমি", "বাংলায়", "গান", "গাই"]
    # A decomposed accent (e + U+0301, as macOS file names have it) is the same word as "é".
    assert tokenize("cafe\u0301 Café") == ["café", "café"]
    assert tokenize("Der Hund läuft über die Straße, 3x!") == ["der", "hund", "läuft", "über", "die", "straße"]


def test_chinese_and_japanese_keep_one_character_words_by_default():
    assert TextView("zh").min_word_length == 1 and TextView("text_ja").min_word_length == 1
    assert TextView("en").min_word_length == 2 and TextView("zh", min_word_length=2).min_word_length == 2


def test_unsegmented_chinese_is_a_warning_that_names_the_view():
    prep = M3LDataPreparation([TextView("zh", stopwords=None), TextView("en")])
    with pytest.warns(UserWarning, match=r"view 'zh': .*Han script written without spaces.*tokenizer="):
        prep.fit(rows(), custom_embeddings=embeddings(6))
    # The same texts segmented with spaces, or with a tokenizer: no warning, real words.
    for view in (TextView("zh", stopwords=None, tokenizer=segment), TextView("zh", stopwords=None)):
        texts = ZH if view.tokenizer else [" ".join(segment(t)) for t in ZH]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            data = M3LDataPreparation([view, TextView("en")]).fit(rows(texts), custom_embeddings=embeddings(6))
        assert {"自行车", "骑", "男人", "小狗", "猫"} <= set(data.vocabularies["zh"])
        assert "一个男人在骑自行车" not in data.vocabularies["zh"]


def test_a_tokenizer_by_name_is_imported_saved_and_restored(tmp_path):
    prep = M3LDataPreparation([TextView("zh", stopwords=None, tokenizer="test_tokenizers:segment"), TextView("en")])
    train = prep.fit(rows(), custom_embeddings=embeddings(6))
    config = json.loads(json.dumps(prep.to_config()))
    assert config["views"][0]["tokenizer"] == "test_tokenizers:segment"
    # Not a known segmenter: loading imports it only when the user says the source is trusted.
    refused = M3LDataPreparation.from_config(config)
    with pytest.raises(ValueError, match=r"'test_tokenizers:segment' is not one of the known word segmenters.*"
                                         r"trust_remote_code=True"):
        refused.transform(["小狗在公园跑"], view="zh", custom_embeddings=np.zeros((1, 4)))
    again = M3LDataPreparation.from_config(config, trust_remote_code=True)
    new = again.transform(["小狗在公园跑"], view="zh", custom_embeddings=np.zeros((1, 4)))
    vocabulary = train.vocabularies["zh"]
    counts = dict(zip([vocabulary[j] for j in new.bow["zh"].indices], new.bow["zh"].data))
    assert counts == {"小狗": 1, "在": 1, "公园": 1, "跑": 1}
    # A function given itself is saved by the name it imports back from; pickling works too.
    direct = M3LDataPreparation([TextView("zh", tokenizer=segment)])
    assert direct.to_config()["views"][0]["tokenizer"] == "test_tokenizers:segment"
    restored = pickle.loads(pickle.dumps(prep))
    assert restored.transform(["猫在草地"], view="zh", custom_embeddings=np.zeros((1, 4))).bow["zh"].nnz == 3


def test_a_tokenizer_that_cannot_be_saved_must_be_given_again():
    prep = M3LDataPreparation([TextView("zh", stopwords=None, tokenizer=lambda text: segment(text)), TextView("en")])
    prep.fit(rows(), custom_embeddings=embeddings(6))
    config = json.loads(json.dumps(prep.to_config()))
    again = M3LDataPreparation.from_config(config)
    with pytest.raises(ValueError, match=r"view 'zh' was prepared with a tokenizer that was not saved by name.*"
                                         r"tokenizers=\{'zh': function\}"):
        again.transform(["小狗在公园跑"], view="zh", custom_embeddings=np.zeros((1, 4)))
    # English texts need no tokenizer: transforming them still works.
    assert again.transform(["a dog runs"], view="en", custom_embeddings=np.zeros((1, 4))).bow["en"].nnz == 2
    given = M3LDataPreparation.from_config(config, tokenizers={"zh": segment})
    assert given.transform(["小狗在公园跑"], view="zh", custom_embeddings=np.zeros((1, 4))).bow["zh"].nnz == 4
    with pytest.raises(ValueError, match=r"tokenizers names \['fr'\]"):
        M3LDataPreparation.from_config(config, tokenizers={"fr": segment})


def test_bad_tokenizers_are_clear_errors():
    with pytest.raises(TypeError, match="view 'zh': tokenizer must be None or a function str -> list of words"):
        TextView("zh", tokenizer="jieba")
    with pytest.raises(ValueError, match=r"view 'zh': cannot import the tokenizer 'no_such_module_xyz:cut'"):
        M3LDataPreparation([TextView("zh", tokenizer="no_such_module_xyz:cut")]).fit(
            rows(), custom_embeddings={"zh": np.zeros((6, 4))})
    with pytest.raises(TypeError, match=r"row 0: view 'zh': the tokenizer returned a str"):
        M3LDataPreparation([TextView("zh", tokenizer=str.lower)]).fit(rows(), custom_embeddings={"zh": np.zeros((6, 4))})
    with pytest.raises(TypeError, match=r"row 0: view 'zh': the tokenizer returned a int"):
        M3LDataPreparation([TextView("zh", tokenizer=lambda t: [1, 2])]).fit(
            rows(), custom_embeddings={"zh": np.zeros((6, 4))})


def test_a_bound_method_the_module_exports_is_saved_and_pickled_by_that_name():
    view = TextView("zh", stopwords=None, tokenizer=_default.cut)  # qualified name "Segmenter.cut"
    prep = M3LDataPreparation([view, TextView("en")])
    prep.fit(rows(), custom_embeddings=embeddings(6))
    assert prep.to_config()["views"][0]["tokenizer"] == "test_tokenizers:cut"
    restored = pickle.loads(pickle.dumps(prep))  # the instance's lock is not pickled
    assert restored.views[0].tokenizer == "test_tokenizers:cut"
    assert restored.transform(["小狗在公园跑"], view="zh", custom_embeddings=np.zeros((1, 4))).bow["zh"].nnz == 4
