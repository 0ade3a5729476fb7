"""`ctm-m3l explore` writes a page that works in a real browser: headless Chromium (Debian's
package) driven by Selenium loads it with no JavaScript error, hovering a point shows its item
and topic words, clicking marks its tuple's other views.  A screenshot is kept in
``$CTM_M3L_ARTIFACTS`` (default ``test-artifacts/``)."""
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctm_m3l import M3LTM
from ctm_m3l.cli import main
from ctm_m3l.data.synthetic import planted_tuples

CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (Path(CHROMIUM).exists() and DRIVER) and not os.environ.get("CI"),
                       reason="Debian's chromium and chromium-driver are not installed (CI installs them)"),
]
ARTIFACTS = Path(os.environ.get("CTM_M3L_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))


def _write(tmp_path, rows, emb, name):
    with open(tmp_path / f"{name}.jsonl", "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    args = []
    for view, e in emb.items():
        np.save(tmp_path / f"{name}_{view}.npy", e)
        args.append(f"{view}={tmp_path / f'{name}_{view}.npy'}")
    return tmp_path / f"{name}.jsonl", args


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("explore")
    rows, emb, theta = planted_tuples(260, n_topics=4, seed=7)
    for i, row in enumerate(rows):  # real little photos: a colour per planted topic
        colour = tuple(int(255 * c) for c in np.eye(3)[theta[i].argmax() % 3])
        Image.new("RGB", (40, 30), colour).save(tmp_path / row["image"])
    train, train_emb = _write(tmp_path, rows[:200], {k: v[:200] for k, v in emb.items()}, "train")
    test, test_emb = _write(tmp_path, rows[200:], {k: v[200:] for k, v in emb.items()}, "test")
    assert main(["fit", "--train", str(train), "--views", "en,de,image", "--embeddings", *train_emb,
                 "--n-components", "4", "--num-epochs", "20", "--seed", "0", "--output", str(tmp_path / "model")]) == 0
    out = tmp_path / "page.html"
    assert main(["explore", str(tmp_path / "model"), "--data", str(test), "--embeddings", *test_emb,
                 "--topics", "4", "--output", str(out)]) == 0
    return out, rows[200:], M3LTM.load(tmp_path / "model")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def open_page(driver, path) -> list[str]:
    """Load ``path`` and wait for the topic space to be drawn; the page's JavaScript errors."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # forget earlier pages' messages
    driver.get(Path(path).as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    try:
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "var s = document.getElementById('topic-space'); return !!(s && s._fullLayout && "
            "s.querySelectorAll('.scatterlayer .point').length)"))
    except Exception:  # noqa: BLE001 - a page that never draws: its errors say why
        pass
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _points(driver, trace):
    return driver.find_elements("css selector", f"#topic-space .scatterlayer .trace:nth-of-type({trace + 1}) .point")


def test_the_page_loads_hovers_and_marks_a_tuple(page, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    path, rows, model = page
    text = path.read_text()
    # plotly.js inside, no script from the network: the page opens offline
    assert "Plotly" in text and not re.search(r"<script[^>]*\bsrc=[\"']?https?:", text)
    assert open_page(browser, path) == []
    names = browser.execute_script("return document.getElementById('topic-space').data.map(t => t.name)")
    assert [n.split(" ")[0] for n in names] == ["en", "de", "image"]  # one legend entry per view

    en = _points(browser, 0)[3]
    ActionChains(browser).move_to_element(en).perform()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements("css selector", "#topic-space .hoverlayer .hovertext"))
    hover = browser.find_element("css selector", "#topic-space .hoverlayer .hovertext").text
    custom = browser.execute_script("return document.getElementById('topic-space').data[0].customdata[3]")
    tuple_id = custom[0]
    row = next(r for r in rows if r["id"] == tuple_id)
    assert f"en · {tuple_id}" in hover and row["en"].split()[0] in hover
    english = {w for topic in model.get_topic_lists(5, language="en") for w in topic}
    german = {w for topic in model.get_topic_lists(5, language="de") for w in topic}
    assert english & set(hover.replace(";", " ").split()) and german & set(hover.replace(";", " ").split())
    assert row["en"].split()[0] in browser.find_element("id", "item-panel").text

    image = _points(browser, 2)[0]
    ActionChains(browser).move_to_element(image).perform()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements("css selector", "#item-panel img"))
    assert browser.find_element("css selector", "#item-panel img").get_attribute("src").startswith("data:image/")

    ActionChains(browser).move_to_element(en).click().perform()
    WebDriverWait(browser, 10).until(lambda d: d.find_element("id", "tuple-panel").text)
    assert browser.find_element("id", "tuple-panel").text == f"tuple {tuple_id}: en, de, image"
    marked = browser.execute_script(
        "return document.getElementById('topic-space').data.map(t => t.customdata.filter("
        "(c, i) => t.marker.size[i] > 10).map(c => c[0]))")
    assert marked == [[tuple_id], [tuple_id], [tuple_id]]  # the tuple's three views, nothing else
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "explore-page.png"))


def test_a_broken_page_script_is_caught(page, browser, tmp_path):
    path, _, _ = page
    broken = tmp_path / "broken.html"
    broken.write_text(path.read_text().replace('space.on("plotly_hover"', 'space.onn("plotly_hover"'))
    errors = open_page(browser, broken)
    assert errors and "onn" in " ".join(errors)
