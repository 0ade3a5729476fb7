"""Plots: the topic space as PNG and self-contained HTML, topic tables."""
import re

import numpy as np
import pytest
from PIL import Image

from ctm_m3l import M3LTM, ImageView, M3LDataPreparation, TextView
from ctm_m3l.data.synthetic import planted_tuples
from ctm_m3l.plots import plot_topic_space, plot_topic_table, topic_space, topic_table


@pytest.fixture(scope="module")
def fitted():
    rows, emb, _ = planted_tuples(260, n_topics=4, seed=6)
    prep = M3LDataPreparation([TextView("en", stopwords=None), TextView("de", stopwords=None), ImageView("image")])
    train = prep.fit(rows[:200], custom_embeddings={k: v[:200] for k, v in emb.items()})
    test = prep.transform(rows[200:], custom_embeddings={k: v[200:] for k, v in emb.items()})
    test.view_mask[:10, 2] = False  # some tuples without an image
    model = M3LTM(views=["en", "de", "image"], n_components=4, num_epochs=10, random_state=0).fit(train, progress_bar=False)
    with pytest.warns(UserWarning):
        thetas = {v: model.get_thetas(test, view=v, seed=0) for v in ["en", "de", "image"]}
    return rows[200:], test, model, thetas


def test_topic_space_png(fitted, tmp_path):
    rows, test, model, thetas = fitted
    space = topic_space(thetas, ids=test.ids)
    assert len(space) == 60 + 60 + 50  # tuples without the image are left out
    assert set(space.columns) >= {"view", "row", "id", "x", "y", "top_topic"}
    plot_topic_space(space, tmp_path / "space.png")
    image = Image.open(tmp_path / "space.png")
    assert image.size[0] > 500 and len(set(image.convert("RGB").getdata())) > 50  # a real drawing


def test_topic_space_page_is_self_contained_with_thumbnails(fitted, tmp_path, multi30k_dir):
    from ctm_m3l.figures import topic_space_figure, topics_figure, write_page

    rows, test, model, thetas = fitted
    space = topic_space(thetas, ids=test.ids)
    photo = str(next((multi30k_dir / "images").glob("*.jpg")))
    items = {"en": [r["en"] for r in rows], "image": [photo] * len(rows)}
    words = {lang: model.get_topic_lists(3, language=lang) for lang in model.language_views}
    fig = topic_space_figure(space, thetas=thetas, items=items, topic_words=words, image_views=["image"])
    assert [trace.name for trace in fig.data] == ["en (60)", "de (60)", "image (50)"]  # one per view: toggles
    assert all("topic " in text and "de: " in text for trace in fig.data for text in trace.text)
    topics = topics_figure(words, images={0: [photo]})
    assert len(topics.layout.images) == 1 and topics.layout.images[0].source.startswith("data:image/jpeg;base64,")
    page = write_page(tmp_path / "space.html", fig, [topics], image_paths=[photo]).read_text()
    # The hover panel's thumbnail and the topic's image (plotly's JSON writes "/" as "\\u002f").
    assert len(re.findall(r"data:image(/|\\u002f)jpeg;base64,", page)) >= 2
    assert not re.search(r"<script[^>]*\bsrc=[\"']?https?:", page)  # plotly.js inside: opens offline


def test_topic_table(fitted, tmp_path):
    model = fitted[2]
    table = topic_table(model, k=3)
    assert list(table.columns) == ["en", "de"] and len(table) == 4
    assert all(cell.startswith("de") for cell in table["de"])
    plot_topic_table(table, tmp_path / "topics.png")
    # Cropped to the table and its title: drawn pixels reach close to every edge.
    pixels = np.asarray(Image.open(tmp_path / "topics.png").convert("L")) < 200
    rows, cols = np.flatnonzero(pixels.any(1)), np.flatnonzero(pixels.any(0))
    height, width = pixels.shape
    assert rows[0] < 0.15 * height and rows[-1] > 0.85 * height
    assert cols[0] < 0.1 * width and cols[-1] > 0.9 * width


def test_topic_space_bad_input():
    with pytest.raises(ValueError, match="row-aligned"):
        topic_space({"en": np.full((4, 3), 1 / 3), "de": np.full((5, 3), 1 / 3)})
    with pytest.raises(ValueError, match="empty"):
        topic_space({})
