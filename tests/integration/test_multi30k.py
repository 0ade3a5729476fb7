"""The Multi30k loader and languages beyond en/de (French; Czech, which NLTK lacks)."""
import numpy as np
import pytest

from ctm_m3l import M3LTM, M3LDataPreparation, TextView, load_multi30k


def test_comparable_layout(multi30k_dir):
    rows = load_multi30k("val", root=multi30k_dir)
    assert len(rows) == 1014
    with_image = [r for r in rows if r.get("image")]
    assert len(with_image) == 242
    assert all(r["image"].endswith(".jpg") and r["image"].startswith("/") for r in with_image)
    assert {"id", "en", "de"} <= set(rows[0])
    only = load_multi30k("val", root=multi30k_dir, images_only=True, limit=5)
    assert len(only) == 5 and all("image" in r for r in only)


def test_root_from_environment(multi30k_dir, monkeypatch):
    monkeypatch.setenv("CTM_M3L_DATA", str(multi30k_dir))
    assert len(load_multi30k("val", layout="parallel4", limit=3)) == 3


def test_missing_data_says_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="CTM_M3L_DATA"):
        load_multi30k("train", root=tmp_path)
    with pytest.raises(ValueError, match="layout"):
        load_multi30k("train", root=tmp_path, layout="task3")


def test_french_and_czech_views(multi30k_dir):
    rows = load_multi30k("val", root=multi30k_dir, layout="parallel4", limit=300)
    views = [TextView(lang, vocabulary_size=500) for lang in ("en", "de", "fr", "cs")]
    prep = M3LDataPreparation(views)
    rng = np.random.default_rng(0)
    data = prep.fit(rows, custom_embeddings={v.name: rng.normal(size=(300, 8)) for v in views})
    fr, cs = set(data.vocabularies["fr"]), set(data.vocabularies["cs"])
    assert not {"le", "la", "des", "une", "sur"} & fr  # NLTK french
    assert not {"na", "se", "je", "v", "s"} & cs  # stopwordsiso czech
    assert any(set(w) & set("áčďéěíňóřšťúůýž") for w in cs)  # Czech letters survive
    model = M3LTM(views=["en", "de", "fr", "cs"], n_components=5, num_epochs=2, random_state=0)
    model.fit(data, progress_bar=False)
    assert len(model.get_topic_lists(k=3, language="cs")) == 5
