"""Real offline encoders on real Multi30k texts and photos; image files that cannot be read."""
import time
from contextlib import closing

import numpy as np
import pytest
from helpers import in_a_fresh_python
from PIL import Image

from ctm_m3l import ImageView, M3LDataPreparation, TextView, load_multi30k
from ctm_m3l.encoders import ImageLoadError, encode_cached, get_encoder, load_images


@pytest.fixture(scope="module")
def val_rows(multi30k_dir):
    return load_multi30k("val", root=multi30k_dir, images_only=True, limit=12)


@pytest.fixture(scope="module")
def minilm():
    return get_encoder("offline:minilm", "text")


@pytest.fixture(scope="module")
def effnet():
    return get_encoder("offline:efficientnet-lite0", "image", batch_size=4)


def cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_minilm_on_real_captions(minilm):
    texts = ["A brown dog runs across the grass.", "A dog is running on a lawn.",
             "Two men repair a crane on a building site."]
    emb = minilm.encode(texts)
    assert emb.shape == (3, 384) and np.isfinite(emb).all()
    assert cosine(emb[0], emb[1]) > cosine(emb[0], emb[2]) + 0.2


def test_efficientnet_on_real_photos(effnet, val_rows):
    paths = [r["image"] for r in val_rows[:6]]
    emb = effnet.encode(paths)
    assert emb.shape == (6, 1280) and np.isfinite(emb).all()
    again = effnet.encode(paths[:2])
    assert np.allclose(emb[:2], again, atol=1e-4)  # deterministic, independent of batch
    assert not np.allclose(emb[0], emb[1])


def test_image_modes_and_sizes(tmp_path, effnet, val_rows):
    photo = Image.open(val_rows[0]["image"])
    files = {
        "gray.jpg": photo.convert("L"),
        "cmyk.jpg": photo.convert("CMYK"),
        "alpha.png": photo.convert("RGBA"),
        "palette.png": photo.convert("P"),
        "large.jpg": photo.resize((4000, 3000)),
    }
    paths = []
    for name, image in files.items():
        image.save(tmp_path / name)
        paths.append(tmp_path / name)
    images, bad = load_images(paths)
    assert not bad and all(im.mode == "RGB" for im in images)
    emb = effnet.encode(paths)
    assert emb.shape == (5, 1280) and np.isfinite(emb).all()


def make_bad_files(tmp_path, good):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("this is not an image")
    data = open(good, "rb").read()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    return ["missing.jpg", "empty.jpg", "notes.jpg", "truncated.jpg"]


def test_bad_images_listed_all_at_once(tmp_path, val_rows):
    bad_names = make_bad_files(tmp_path, val_rows[0]["image"])
    rows = [{"en": "a dog in a park", "image": val_rows[0]["image"]}] + \
           [{"en": f"a cat number {w}", "image": str(tmp_path / n)} for w, n in zip("abcd", bad_names)]
    prep = M3LDataPreparation([TextView("en", stopwords=None), ImageView("image", encoder="offline:efficientnet-lite0")])
    with pytest.raises(ImageLoadError) as info:
        prep.fit(rows, custom_embeddings={"en": np.ones((5, 3))})
    message = str(info.value)
    for name in bad_names:
        assert name in message
    assert "file not found" in message and "0 bytes" in message and "not an image file" in message
    assert [row for row, _, _ in info.value.bad] == [1, 2, 3, 4]


def test_bad_images_skipped_keep_other_views(tmp_path, val_rows):
    bad_names = make_bad_files(tmp_path, val_rows[0]["image"])
    rows = [{"en": "a dog in a park", "image": val_rows[0]["image"]},
            {"en": "a dog on grass", "image": val_rows[1]["image"]}] + \
           [{"en": f"a cat number {w}", "image": str(tmp_path / n)} for w, n in zip("abcd", bad_names)]
    prep = M3LDataPreparation([TextView("en", stopwords=None),
                               ImageView("image", encoder="offline:efficientnet-lite0", on_error="skip")])
    with pytest.warns(UserWarning, match="skipped 4 unreadable image"):
        data = prep.fit(rows, custom_embeddings={"en": np.ones((6, 3))})
    assert data.has_view("image").tolist() == [True, True, False, False, False, False]
    assert data.has_view("en").all()
    assert [(row, view) for row, view, _, _ in data.skipped] == [(2, "image"), (3, "image"), (4, "image"), (5, "image")]
    assert np.abs(data.embeddings["image"][:2]).sum() > 0


def test_relative_image_paths_resolve_against_the_file(tmp_path, val_rows):
    photo = Image.open(val_rows[0]["image"])
    (tmp_path / "img").mkdir()
    photo.save(tmp_path / "img" / "p.jpg")
    (tmp_path / "rows.jsonl").write_text('{"en": "a dog", "image": "img/p.jpg"}\n{"en": "a cat"}\n')
    prep = M3LDataPreparation([TextView("en", stopwords=None), ImageView("image", encoder="offline:efficientnet-lite0")])
    data = prep.fit(tmp_path / "rows.jsonl", custom_embeddings={"en": np.ones((2, 3))})
    assert data.has_view("image").tolist() == [True, False]


def test_text_and_image_views_encode_themselves(val_rows):
    prep = M3LDataPreparation([TextView("en", encoder="offline:minilm"), TextView("de", encoder="offline:minilm"),
                               ImageView("image", encoder="offline:efficientnet-lite0")])
    data = prep.fit(val_rows[:8])
    assert {k: v.shape for k, v in data.embeddings.items()} == {"en": (8, 384), "de": (8, 384), "image": (8, 1280)}
    one = prep.transform([val_rows[9]["de"]], view="de")
    assert one.embeddings["de"].shape == (1, 384) and one.has_view("de").all()


def test_disk_cache_skips_re_encoding(tmp_path, minilm):
    texts = ["Ein Hund rennt über die Wiese.", "Zwei Kinder spielen am Strand."]
    first = encode_cached(minilm, texts, "de", tmp_path)
    assert [p.name for p in tmp_path.glob("*.sqlite")] == ["embeddings.sqlite"]
    original = minilm._fn
    minilm._fn = lambda items: (_ for _ in ()).throw(AssertionError("re-encoded despite the cache"))
    try:
        assert np.array_equal(encode_cached(minilm, texts, "de", tmp_path), first)
    finally:
        minilm._fn = original


def test_uncached_hub_name_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(OSError, match="offline:minilm"):
        get_encoder("sentence-transformers/some-model-that-is-not-cached", "text")
    assert time.perf_counter() - start < 60  # an error, not a hang


def test_encoder_kind_mismatch():
    with pytest.raises(ValueError, match="encodes texts only"):
        get_encoder("offline:minilm", "image")
    with pytest.raises(ValueError, match="unknown offline encoder"):
        get_encoder("offline:resnet", "image")


def test_callable_encoder_shape_is_checked():
    prep = M3LDataPreparation([TextView("en", encoder=lambda texts: np.ones((len(texts) + 1, 2)), stopwords=None)])
    with pytest.raises(ValueError, match=r"returned shape \(3, 2\) for 2 items"):
        prep.fit([{"en": "a dog"}, {"en": "a cat"}])


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny random CLIP saved as a sentence-transformers directory (texts and images)."""
    from sentence_transformers import SentenceTransformer, models
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    root = tmp_path_factory.mktemp("tiny_clip")
    chars = sorted(ByteLevel.alphabet())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab.update({c: len(vocab) + i for i, c in enumerate(chars)})
    vocab.update({c + "</w>": len(vocab) + i for i, c in enumerate(chars)})
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                 crop_size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    CLIPModel(config).save_pretrained(root / "hf")
    processor.save_pretrained(root / "hf")
    SentenceTransformer(modules=[models.CLIPModel(str(root / "hf"))]).save(str(root / "st"))
    return str(root / "st")


def test_clip_encodes_texts_and_images_in_one_space(tiny_clip, val_rows):
    prep = M3LDataPreparation([TextView("en", encoder=tiny_clip), TextView("de", encoder=tiny_clip),
                               ImageView("image", encoder=tiny_clip)])
    rows = [dict(r) for r in val_rows[:6]]
    rows[0]["en"] = " ".join([rows[0]["en"]] * 20)  # far longer than CLIP's 77 positions
    data = prep.fit(rows)
    assert {k: v.shape for k, v in data.embeddings.items()} == {"en": (6, 16), "de": (6, 16), "image": (6, 16)}
    assert all(np.isfinite(v).all() for v in data.embeddings.values())


class Counting:
    """Wraps an encoder's function and counts the items it is asked to encode."""

    def __init__(self, encoder):
        self.encoder, self.original, self.items = encoder, encoder._fn, 0

    def __enter__(self):
        def counted(items):
            self.items += len(items)
            return self.original(items)
        self.encoder._fn = counted
        return self

    def __exit__(self, *exc):
        self.encoder._fn = self.original


def test_a_grown_corpus_encodes_only_its_new_items(tmp_path, minilm, val_rows):
    texts = [r["en"] for r in val_rows]
    with Counting(minilm) as count:
        first = encode_cached(minilm, texts[:8], "en", tmp_path, chunk_size=3)
        assert count.items == 8
        grown = encode_cached(minilm, texts, "en", tmp_path, chunk_size=3)
        assert count.items == 8 + len(texts) - 8  # only the new ones
    assert np.array_equal(grown[:8], first)
    np.testing.assert_allclose(grown, minilm.encode(texts), atol=1e-5)


def test_damaged_cache_entries_are_encoded_again(tmp_path, minilm):
    import sqlite3

    texts = ["Ein Hund rennt über die Wiese.", "Zwei Kinder spielen am Strand.", "Eine Frau liest."]
    first = encode_cached(minilm, texts, "de", tmp_path)
    db = tmp_path / "embeddings.sqlite"
    with closing(sqlite3.connect(db)) as connection, connection:
        keys = [k for (k,) in connection.execute("SELECT key FROM embeddings ORDER BY key")]
        blob = connection.execute("SELECT vector FROM embeddings WHERE key = ?", (keys[0],)).fetchone()[0]
        flipped = bytes([blob[0] ^ 8]) + blob[1:]
        connection.execute("UPDATE embeddings SET vector = ? WHERE key = ?", (flipped, keys[0]))  # one bit
        connection.execute("UPDATE embeddings SET vector = ? WHERE key = ?", (blob[:100], keys[1]))  # truncated
        narrow = np.ones(10, np.float32).tobytes()  # well formed, 10-d
        import hashlib
        connection.execute("UPDATE embeddings SET vector = ?, dim = 10, sha256 = ? WHERE key = ?",
                           (narrow, hashlib.sha256(narrow).hexdigest(), keys[2]))
    with Counting(minilm) as count, pytest.warns(UserWarning, match=r"3 cached embedding\(s\) .* are damaged"):
        again = encode_cached(minilm, texts, "de", tmp_path, dim=384)
    assert count.items == 3
    np.testing.assert_allclose(again, first, atol=1e-6)
    with Counting(minilm) as count:
        assert np.array_equal(encode_cached(minilm, texts, "de", tmp_path), again) and count.items == 0
    db.write_bytes(b"garbage, not a database" * 100)
    with pytest.warns(UserWarning, match="is not a readable embedding cache"):
        np.testing.assert_allclose(encode_cached(minilm, texts, "de", tmp_path), first, atol=1e-6)
    assert len(list(tmp_path.glob("embeddings.sqlite.unreadable-*"))) == 1  # set aside, not deleted


def test_the_cache_keys_on_the_sequence_length(tmp_path):
    short = get_encoder("offline:minilm", "text", max_seq_length=8)
    full = get_encoder("offline:minilm", "text", max_seq_length=128)
    text = ["Ein kleiner brauner Hund rennt mit einem roten Ball im Maul über eine große grüne Wiese im Park."]
    a = encode_cached(short, text, "de", tmp_path)
    b = encode_cached(full, text, "de", tmp_path)
    import sqlite3

    with closing(sqlite3.connect(tmp_path / "embeddings.sqlite")) as connection:
        assert connection.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 2
    assert not np.allclose(a, b, atol=1e-3)
    assert np.allclose(b, full.encode(text), atol=1e-6)


def test_the_openvino_backend_gives_the_torch_embeddings(tmp_path, multi30k_dir):
    pytest.importorskip("openvino")
    # In its own process: a native crash in OpenVINO (CI once died of SIGSEGV here, on another
    # machine, as this test ended) fails this test with its output rather than ending the session.
    # A crash once every check has passed, while OpenVINO frees its models, is listed as an
    # expected failure (OpenVINO's teardown bugs, e.g. openvinotoolkit/openvino#18388).
    in_a_fresh_python(check_the_openvino_backend, str(tmp_path), str(multi30k_dir), checked_marker=CHECKED)


CHECKED = "every check passed"


def check_the_openvino_backend(tmp_path, multi30k_dir):
    import gc
    import sqlite3
    from pathlib import Path

    tmp_path = Path(tmp_path)
    val_rows = load_multi30k("val", root=multi30k_dir, images_only=True, limit=12)
    minilm = get_encoder("offline:minilm", "text")
    effnet = get_encoder("offline:efficientnet-lite0", "image", batch_size=4)
    texts = [r["en"] for r in val_rows]
    fast = get_encoder("offline:minilm", "text", backend="openvino", export_dir=tmp_path, batch_size=5)
    for items in (texts, texts[:1]):  # several lengths in a batch, and one text alone
        a, b = minilm.encode(items), fast.encode(items)
        assert min(cosine(x, y) for x, y in zip(a, b)) > 0.9999, "text embeddings differ from torch's"
    paths = [r["image"] for r in val_rows]
    fast_images = get_encoder("offline:efficientnet-lite0", "image", backend="openvino", export_dir=tmp_path,
                              batch_size=4)
    a, b = effnet.encode(paths), fast_images.encode(paths)
    assert min(cosine(x, y) for x, y in zip(a, b)) > 0.9999, "image embeddings differ from torch's"
    assert len(list((tmp_path / "openvino").glob("*.xml"))) == 2  # converted once, kept
    # A later run compiles the kept files: the same embeddings, to the last digit.
    again = get_encoder("offline:efficientnet-lite0", "image", backend="openvino", export_dir=tmp_path,
                        batch_size=4)
    assert np.array_equal(again.encode(paths), b), "the kept model gives other embeddings than the first run"
    # Another backend is another cache entry: their embeddings differ in the last digits.
    encode_cached(minilm, texts[:2], "en", tmp_path / "cache")
    encode_cached(fast, texts[:2], "en", tmp_path / "cache")
    with closing(sqlite3.connect(tmp_path / "cache" / "embeddings.sqlite")) as connection:
        assert connection.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 4
    with pytest.raises(ValueError, match="backend must be one of"):
        get_encoder("offline:minilm", "text", backend="onnx")
    with pytest.raises(ValueError, match="a callable runs itself"):
        get_encoder(lambda items: np.zeros((len(items), 2)), "text", backend="openvino")
    # A compiled network on its own: torch's outputs, then a clear error once closed.
    import torch

    from ctm_m3l.backends import _convert, weights_key

    linear = torch.nn.Linear(3, 2)
    network = _convert(linear, torch.zeros((1, 3)), weights_key(linear), None, inputs=[(-1, 3)],
                       config={"INFERENCE_PRECISION_HINT": "f32"})
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.allclose(network(x)[0], linear(torch.from_numpy(x)).detach().numpy(), atol=1e-6)
    assert network.precision == "f32"
    network.close()
    with pytest.raises(RuntimeError, match="was closed"):
        network(x)
    print(CHECKED, flush=True)
    # The encoders, their torch networks and their compiled models freed in any order.
    del fast, fast_images, again, minilm, effnet, network
    gc.collect()
