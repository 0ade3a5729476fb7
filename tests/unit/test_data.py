"""M3LDataPreparation and MultiViewDataset: readers, vocabularies, masks, bad input."""
import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from contextualized_topic_models.datasets.dataset import CTMDataset
from contextualized_topic_models.utils.data_preparation import TopicModelDataPreparation

from ctm_m3l import ImageView, M3LDataPreparation, MultiViewDataset, TextView
from ctm_m3l.views import resolve_language, tokenize

ROWS = [
    {"id": "a", "en": "The dog runs in the park. 3 dogs!", "de": "Der Hund läuft im Park über die Straße."},
    {"id": "b", "en": "A cat sleeps on the sofa", "de": "Eine Katze schläft auf dem Sofa"},
    {"id": "c", "en": "Dogs and cats in the park", "de": None},
    {"id": "d", "de": "Ein Mädchen spielt mit dem Hund"},
]


def embeddings(n, dims=(4, 6)):
    rng = np.random.default_rng(0)
    return {"en": rng.normal(size=(n, dims[0])), "de": rng.normal(size=(n, dims[1]))}


def prep_en_de(**kw):
    return M3LDataPreparation([TextView("en", **kw), TextView("de", **kw)])


def test_subclasses_ctm():
    prep = prep_en_de()
    data = prep.fit(ROWS, custom_embeddings=embeddings(4))
    assert isinstance(prep, TopicModelDataPreparation)
    assert isinstance(data, CTMDataset) and isinstance(data, MultiViewDataset)
    assert len(data) == 4
    item = data[0]
    assert set(item) == {"view_mask", "X_contextual_en", "X_contextual_de", "X_bow_en", "X_bow_de"}


def test_tokenizer_keeps_every_unicode_letter_and_drops_numbers():
    assert tokenize("Der Hund läuft über die Straße, 3x!") == ["der", "hund", "läuft", "über", "die", "straße"]
    assert tokenize("Dívka běží přes řeku") == ["dívka", "běží", "přes", "řeku"]


def test_language_from_name():
    assert resolve_language("de") == "de"
    assert resolve_language("text_fr") == "fr"
    assert resolve_language("german") == "de"
    assert resolve_language("image") is None


def test_vocabularies_per_language_with_nltk_stopwords():
    prep = prep_en_de()
    data = prep.fit(ROWS, custom_embeddings=embeddings(4))
    en, de = data.vocabularies["en"], data.vocabularies["de"]
    assert "the" not in en and "in" not in en  # English stop words
    assert "der" not in de and "dem" not in de and "über" not in de  # German stop words
    assert {"dog", "park", "dogs", "cats"} <= set(en)
    assert {"hund", "läuft", "straße", "mädchen", "schläft"} <= set(de)
    # Counts: "park" twice in English (rows 0 and 2).
    assert data.bow["en"][:, en.index("park")].sum() == 2


def test_vocabulary_size_keeps_most_frequent():
    rows = [{"en": "apple apple apple banana banana cherry"}, {"en": "apple banana date"}]
    prep = M3LDataPreparation([TextView("en", vocabulary_size=2, stopwords=None)])
    data = prep.fit(rows, custom_embeddings={"en": np.ones((2, 3))})
    assert data.vocabularies["en"] == ["apple", "banana"]
    assert data.bow["en"].toarray().tolist() == [[3, 2], [1, 1]]


def test_missing_views_are_masked():
    data = prep_en_de().fit(ROWS, custom_embeddings=embeddings(4))
    assert data.view_mask.tolist() == [[True, True], [True, True], [True, False], [False, True]]
    assert data.has_view("en").tolist() == [True, True, True, False]
    assert not data.embeddings["en"][3].any()  # absent rows hold zeros
    assert data.bow["en"][3].nnz == 0


def test_custom_embeddings_for_present_rows_only():
    present_en = np.arange(3 * 4, dtype=float).reshape(3, 4)
    present_de = np.ones((3, 2))
    data = prep_en_de().fit(ROWS, custom_embeddings={"en": present_en, "de": present_de})
    assert np.array_equal(data.embeddings["en"][:3], present_en)
    assert np.array_equal(data.embeddings["de"][[0, 1, 3]], present_de)


@pytest.mark.parametrize("source", ["dataframe", "jsonl", "csv"])
def test_readers(tmp_path, source):
    if source == "dataframe":
        rows = pd.DataFrame(ROWS)  # None becomes NaN: still a missing view
    elif source == "jsonl":
        rows = tmp_path / "rows.jsonl"
        rows.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS) + "\n", encoding="utf-8")
    else:
        rows = tmp_path / "rows.csv"
        pd.DataFrame(ROWS).to_csv(rows, index=False)
    data = prep_en_de().fit(rows, custom_embeddings=embeddings(4))
    assert data.view_mask.tolist() == [[True, True], [True, True], [True, False], [False, True]]
    assert data.ids == ["a", "b", "c", "d"]


def test_transform_one_view_alone():
    prep = prep_en_de()
    prep.fit(ROWS, custom_embeddings=embeddings(4))
    test = prep.transform(["Ein Hund im Park", "Die Katze"], view="de", custom_embeddings=np.ones((2, 6)))
    assert test.view_mask.tolist() == [[False, True], [False, True]]
    assert test.vocabularies["de"] == prep.vocabularies["de"]  # the fitted vocabulary
    assert test.bow["de"][0, prep.vocabularies["de"].index("hund")] == 1


def test_transform_with_callable_encoder():
    calls = []

    def encode(texts):
        calls.append(list(texts))
        return np.array([[len(t), t.count(" ")] for t in texts], dtype=float)

    prep = M3LDataPreparation([TextView("en", encoder=encode), TextView("de", encoder=encode)])
    data = prep.fit(ROWS)
    assert data.embeddings["en"].shape == (4, 2)
    assert calls[0] == [ROWS[0]["en"], ROWS[1]["en"], ROWS[2]["en"]]  # present items only
    test = prep.transform(["eins zwei"], view="de")
    assert test.embeddings["de"][0].tolist() == [9.0, 1.0]


def test_dataset_subset():
    data = prep_en_de().fit(ROWS, custom_embeddings=embeddings(4))
    part = data.subset([3, 0])
    assert part.ids == ["d", "a"]
    assert part.view_mask.tolist() == [[False, True], [True, True]]
    assert isinstance(part.bow["de"], sp.csr_matrix)


# -- bad input ------------------------------------------------------------------------------

def test_unknown_view_in_custom_embeddings():
    with pytest.raises(ValueError, match=r"unknown view\(s\) \['fr'\]"):
        prep_en_de().fit(ROWS, custom_embeddings={**embeddings(4), "fr": np.ones((4, 2))})


def test_unknown_view_in_transform():
    prep = prep_en_de()
    prep.fit(ROWS, custom_embeddings=embeddings(4))
    with pytest.raises(ValueError, match="unknown view 'fr'"):
        prep.transform(["texte"], view="fr", custom_embeddings=np.ones((1, 4)))


def test_rows_and_embeddings_lengths_disagree():
    with pytest.raises(ValueError, match=r"custom_embeddings\['de'\] has 7 rows.*4 tuples"):
        prep_en_de().fit(ROWS, custom_embeddings={"en": np.ones((4, 4)), "de": np.ones((7, 6))})


def test_tuple_with_no_views_names_the_row():
    rows = ROWS + [{"id": "e", "en": "", "de": None}]
    with pytest.raises(ValueError, match=r"row\(s\) 4 have none of the views"):
        prep_en_de().fit(rows, custom_embeddings=embeddings(5))


def test_misspelled_keys_are_reported():
    rows = [{"EN": "a dog"}, {"EN": "a cat"}]
    with pytest.raises(ValueError, match=r"rows: no row has a field 'en' \(view 'en'\); the rows' fields are \['EN'\]"):
        prep_en_de().fit(rows)


def test_empty_vocabulary_names_the_view():
    rows = [{"en": "the dog", "de": "der die das"}, {"en": "a cat", "de": "und oder 123"}]
    with pytest.raises(ValueError, match="view 'de': the vocabulary is empty"):
        prep_en_de().fit(rows, custom_embeddings=embeddings(2))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_embeddings_name_view_and_row(bad):
    emb = embeddings(4)
    emb["de"][3, 1] = bad
    with pytest.raises(ValueError, match=r"view 'de': embeddings contain NaN or inf at row\(s\) 3"):
        prep_en_de().fit(ROWS, custom_embeddings=emb)


def test_embedding_size_change_between_fit_and_transform():
    prep = prep_en_de()
    prep.fit(ROWS, custom_embeddings=embeddings(4))
    with pytest.raises(ValueError, match="view 'de': embeddings have 5 dimensions.*fitted with 6"):
        prep.transform(["ein hund"], view="de", custom_embeddings=np.ones((1, 5)))


def test_view_without_encoder_or_embeddings():
    with pytest.raises(ValueError, match="view 'de' has no encoder and no custom_embeddings"):
        prep_en_de().fit(ROWS, custom_embeddings={"en": np.ones((4, 3))})


def test_row_types_are_checked():
    with pytest.raises(TypeError, match="row 1 is a str"):
        prep_en_de().fit([{"en": "a dog"}, "a cat"])
    with pytest.raises(TypeError, match="row 0, view 'en': expected a text"):
        prep_en_de().fit([{"en": 12, "de": "hund"}])


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prep_en_de().fit(tmp_path / "nope.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"en": "a dog"}\n{"en": \n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        prep_en_de().fit(broken)


def test_view_spec_validation():
    with pytest.raises(ValueError, match="appears twice"):
        M3LDataPreparation([TextView("en"), TextView("en")])
    with pytest.raises(ValueError, match="at least one TextView"):
        M3LDataPreparation([ImageView("image")])
    with pytest.raises(TypeError, match="TextView or ImageView"):
        M3LDataPreparation(["en", "de"])
    with pytest.raises(ValueError, match="vocabulary_size"):
        TextView("en", vocabulary_size=0)
    with pytest.raises(ValueError, match="on_error"):
        ImageView("image", on_error="ignore")


def test_unknown_language_needs_explicit_stopwords():
    prep = M3LDataPreparation([TextView("xyz")])
    with pytest.raises(ValueError, match="view 'xyz': cannot tell which language"):
        prep.fit([{"xyz": "foo bar"}, {"xyz": "baz"}], custom_embeddings={"xyz": np.ones((2, 2))})
    data = M3LDataPreparation([TextView("xyz", stopwords=["foo"])]).fit(
        [{"xyz": "foo bar"}, {"xyz": "baz"}], custom_embeddings={"xyz": np.ones((2, 2))})
    assert data.vocabularies["xyz"] == ["bar", "baz"]


def test_a_planted_word_names_its_topic():
    from ctm_m3l.data.synthetic import main_planted_topic, planted_topic, word

    assert [planted_topic(word("de", t, j)) for t, j in [(0, 0), (3, 1), (27, 5), (675, 2)]] == [0, 3, 27, 675]
    assert main_planted_topic([word("en", 4, 0), word("en", 4, 1), word("en", 2, 0)]) == 4
    with pytest.raises(ValueError, match="'apple' is not a planted word"):
        planted_topic("apple")
