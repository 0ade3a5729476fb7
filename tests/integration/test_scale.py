"""Corpus scale: images that stream, a per-item embedding cache that survives kills and is
shared by processes, and systems that need no embeddings that never encode."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctm_m3l import ImageView, M3LDataPreparation, TextView, load_multi30k
from ctm_m3l.cli import main
from ctm_m3l.encoders import ImageLoadError


def _stored(folder: Path) -> int:
    path = folder / "embeddings.sqlite"
    if not path.exists():
        return 0
    try:
        with closing(sqlite3.connect(path, timeout=30)) as connection:
            return connection.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0


_ENCODE = textwrap.dedent("""
    import json, sys
    import numpy as np
    from ctm_m3l.encoders import encode_cached, get_encoder
    texts = json.load(open(sys.argv[1]))
    encoder = get_encoder("offline:minilm", "text", batch_size=8)
    original, counted = encoder._fn, []
    def counting(items):
        counted.append(len(items))
        return original(items)
    encoder._fn = counting
    out = encode_cached(encoder, texts, "en", sys.argv[2], chunk_size=16)
    np.save(sys.argv[3], out)
    print("encoded", sum(counted), flush=True)
""")


@pytest.fixture(scope="module")
def captions(multi30k_dir):
    return [r["en"] for r in load_multi30k("train", root=multi30k_dir, limit=240)]


def _run_encoder(tmp_path, texts_file, cache, out, env=None):
    return subprocess.Popen([sys.executable, "-c", _ENCODE, str(texts_file), str(cache), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def test_a_run_killed_mid_encoding_keeps_its_finished_chunks(tmp_path, captions):
    texts_file = tmp_path / "texts.json"
    texts_file.write_text(json.dumps(captions))
    cache = tmp_path / "cache"
    process = _run_encoder(tmp_path, texts_file, cache, tmp_path / "killed.npy")
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and _stored(cache) < 48:
        time.sleep(0.05)
    assert process.poll() is None, "the encoding ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = _stored(cache)
    assert 48 <= kept < len(captions)
    again = _run_encoder(tmp_path, texts_file, cache, tmp_path / "resumed.npy")
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-2000:]
    assert f"encoded {len(captions) - kept}" in out  # only what the killed run had not stored
    fresh = _run_encoder(tmp_path, texts_file, tmp_path / "fresh-cache", tmp_path / "fresh.npy")
    fresh.communicate(timeout=600)
    resumed, whole = np.load(tmp_path / "resumed.npy"), np.load(tmp_path / "fresh.npy")
    # The same items in the same chunks of 16 come out bit for bit; the others were batched
    # with other neighbours by sentence-transformers and agree to float rounding.
    np.testing.assert_allclose(resumed, whole, rtol=0, atol=2e-6)
    assert np.array_equal(resumed[:kept], whole[:kept])


def test_two_processes_share_one_cache_and_the_work(tmp_path, captions):
    texts_file = tmp_path / "texts.json"
    texts_file.write_text(json.dumps(captions[:96]))
    cache = tmp_path / "cache"
    ranks = [_run_encoder(tmp_path, texts_file, cache, tmp_path / f"rank{r}.npy",
                          env={"RANK": str(r), "WORLD_SIZE": "2"}) for r in range(2)]
    outputs, errors = zip(*(p.communicate(timeout=600) for p in ranks))
    assert [p.returncode for p in ranks] == [0, 0], [e[-2000:] for e in errors]
    counts = [int(o.split("encoded")[1]) for o in outputs]
    assert counts == [48, 48]  # each encoded its half, not the whole corpus
    assert np.array_equal(np.load(tmp_path / "rank0.npy"), np.load(tmp_path / "rank1.npy"))
    assert _stored(cache) == 96



def test_a_process_that_starts_late_still_encodes_exactly_its_own_share(tmp_path):
    """Rank 1 reads the cache after rank 0 stored its first chunk: the shares must not depend
    on that snapshot.  Splitting the items each process found missing made rank 1 skip items
    that rank 0 (which found all of them missing) left to it, and both waited for them until
    the timeout (CI hung so, on a loaded machine)."""
    from threading import Event, Thread

    from ctm_m3l.encoders import Encoder, encode_cached

    texts = [f"caption number {i}" for i in range(40)] + ["caption number 3"]  # one repeated item
    encoded = {0: [], 1: []}
    first_chunk_stored, late_rank_started = Event(), Event()

    def embed(rank, items):
        if rank == 0 and encoded[0]:  # rank 0's second chunk: its first is stored by now
            first_chunk_stored.set()
            late_rank_started.wait(timeout=60)
        if rank == 1:
            late_rank_started.set()
        encoded[rank].extend(items)
        return np.array([[len(t), sum(map(ord, t))] for t in items], dtype=np.float32)

    def run(rank):
        encoder = Encoder("test:lengths", lambda items: embed(rank, items), "text")
        results[rank] = encode_cached(encoder, texts, "en", tmp_path, chunk_size=8, wait_seconds=20,
                                      share=(rank, 2))

    results = {}
    early = Thread(target=run, args=(0,))
    early.start()
    assert first_chunk_stored.wait(timeout=60)
    run(1)
    early.join(timeout=120)
    assert sorted(encoded[0]) == sorted(texts[0:40:2])  # each its own 20 distinct items, once each
    assert sorted(encoded[1]) == sorted(texts[1:40:2])
    expected = np.array([[len(t), sum(map(ord, t))] for t in texts], dtype=np.float32)
    assert np.array_equal(results[0], expected) and np.array_equal(results[1], expected)

def _camera_photos(folder: Path, n: int, size=(3000, 2000)) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    paths = []
    for i in range(n):
        image = Image.fromarray(np.roll(base, i, axis=0)).resize(size)
        path = folder / f"photo{i}.jpg"
        image.save(path, quality=80)
        paths.append(str(path))
    return paths


_PREPARE = textwrap.dedent("""
    import json, resource, sys
    from ctm_m3l import ImageView, M3LDataPreparation, TextView
    paths = json.load(open(sys.argv[1]))
    rows = [{"id": i, "en": "a photo of a dog", "image": p} for i, p in enumerate(paths)]
    prep = M3LDataPreparation([TextView("en", stopwords=None), ImageView("image", encoder="offline:efficientnet-lite0")],
                              encoder_batch_size=8, num_workers=2)
    import numpy as np
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    data = prep.fit(rows, custom_embeddings={"en": np.zeros((len(rows), 3))})
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"added_mib": (after - before) / 1024, "shape": list(data.embeddings["image"].shape)}))
""")


def test_preparing_many_camera_size_photos_keeps_memory_bounded(tmp_path):
    paths = _camera_photos(tmp_path / "photos", 60)
    (tmp_path / "paths.json").write_text(json.dumps(paths))
    result = subprocess.run([sys.executable, "-c", _PREPARE, str(tmp_path / "paths.json")], capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["shape"] == [60, 1280]
    # Decoded all at once, 60 photos of 3000 x 2000 RGB would add ~1 GiB (18 MiB each).
    assert figures["added_mib"] < 600, figures


def test_bad_images_are_found_from_their_headers_and_bombs_refused(tmp_path, monkeypatch):
    photos = _camera_photos(tmp_path / "photos", 2, size=(400, 300))
    (tmp_path / "notes.jpg").write_text("not an image")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(Path(photos[0]).read_bytes()[:3000])
    big = _camera_photos(tmp_path / "big", 1, size=(400, 320))[0]  # 128,000 pixels: under the limit
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 130_000)
    bomb = tmp_path / "bomb.png"
    Image.new("RGB", (400, 400)).save(bomb)  # 160,000 pixels
    rows = [{"en": "one", "image": photos[1]}, {"en": "two", "image": str(tmp_path / "notes.jpg")},
            {"en": "three", "image": str(truncated)}, {"en": "four", "image": str(bomb)}, {"en": "five", "image": big}]
    prep = M3LDataPreparation([TextView("en", stopwords=None), ImageView("image", encoder="offline:efficientnet-lite0")])
    with pytest.raises(ImageLoadError) as caught:
        prep.fit(rows, custom_embeddings={"en": np.zeros((5, 2))})
    reasons = {row: reason for row, _, reason in caught.value.bad}
    assert sorted(reasons) == [1, 2, 3]  # every bad file in one error, the truncated one too
    assert reasons[1] == "not an image file" and "truncated" in reasons[2]
    assert "decompression bomb" in reasons[3] and "MAX_IMAGE_PIXELS" in reasons[3]


def test_evaluate_pltm_never_loads_an_encoder(tmp_path, multi30k_dir, capsys):
    rows = load_multi30k("val", root=multi30k_dir, limit=140)
    for name, part in (("train", rows[:110]), ("test", rows[110:])):
        with open(tmp_path / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for r in part:
                fh.write(json.dumps({"id": r["id"], "en": r["en"], "de": r["de"]}, ensure_ascii=False) + "\n")
    # An encoder that cannot be loaded here: any attempt to load it is an error.
    common = ["evaluate", "--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "test.jsonl"),
              "--views", "en,de", "--n-components", "4", "--num-epochs", "20",
              "--text-encoder", "sentence-transformers/not-on-this-machine", "--output", str(tmp_path / "r.json")]
    assert main(common + ["--model", "pltm"]) == 0, capsys.readouterr().err
    assert "mrr_en_de" in json.loads((tmp_path / "r.json").read_text())["metrics"]
    assert main(common + ["--model", "m3l"]) == 2
    assert "not in the local Hugging Face cache" in capsys.readouterr().err


def test_reproduce_prepares_words_only_when_only_pltm_runs_are_left():
    from ctm_m3l.experiments.config import _Run
    from ctm_m3l.experiments.runner import _words_only

    runs = [_Run("pltm", "text", 0, 100, None, 0), _Run("m3l", "text", 0, 100, None, 0),
            _Run("pltm", "text", 1, 100, None, 0)]
    assert not _words_only(runs, 0) and _words_only(runs, 1)
