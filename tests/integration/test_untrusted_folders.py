"""Model folders from strangers run no code, and no file the package writes or reads can lie.

Each test plays a hostile uploader or a careless user: a crafted preparation.json, edited
or damaged files, a save killed at every step, checkpoints and data that do not belong
together.  The edits are re-signed (the manifest rewritten to fit them) where the point is
that the check behind the checksum holds too.
"""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import VIEWS, prepare, resign

from ctm_m3l import M3LTM, M3LDataPreparation, TextView
from ctm_m3l.cli import main
from ctm_m3l.data.synthetic import planted_tuples
from ctm_m3l.evaluation import evaluate
from ctm_m3l.persistence import CheckpointMismatchError, ModelFolderError

HERE = Path(__file__).resolve().parent
LEGACY = HERE.parent / "data" / "legacy-format2"


def _fit_cli_model(tmp_path: Path, name: str = "model") -> Path:
    rows, emb, _ = planted_tuples(80, n_topics=3, images=(), seed=1)
    with open(tmp_path / "train.jsonl", "w") as fh:
        for r in rows[:60]:
            fh.write(json.dumps(r) + "\n")
    for v in ("en", "de"):
        np.save(tmp_path / f"{v}.npy", emb[v][:60])
    np.save(tmp_path / "de_new.npy", emb["de"][60:63])
    assert main(["fit", "--train", str(tmp_path / "train.jsonl"), "--views", "en,de", "--embeddings",
                 f"en={tmp_path / 'en.npy'}", f"de={tmp_path / 'de.npy'}", "--n-components", "3",
                 "--num-epochs", "2", "--seed", "0", "--output", str(tmp_path / name)]) == 0
    return tmp_path / name


def _edit_preparation(folder: Path, sign: bool = True, **view_fields) -> None:
    path = folder / "preparation.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    for view in config["views"]:
        view.update(view_fields.get(view["name"], {}))
    path.write_text(json.dumps(config), encoding="utf-8")
    if sign:
        resign(folder)


CRAFTED = ["os:popen", "os:system", "subprocess:getoutput", "builtins:exec", "model.evil:segment"]


@pytest.fixture(scope="module")
def shared_model(tmp_path_factory):
    return _fit_cli_model(tmp_path_factory.mktemp("cli"))


@pytest.mark.parametrize("tokenizer", CRAFTED)
def test_crafted_tokenizers_run_nothing_through_the_cli(tmp_path, shared_model, tokenizer):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(shared_model, folder)
    marker = tmp_path / "MARKER"
    # A module shipped inside the folder, importable as model.evil from the folder's parent.
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n"
                                    "def segment(text):\n    return text.split()\n")
    _edit_preparation(folder, de={"tokenizer": tokenizer})
    inputs = tmp_path / "texts.jsonl"
    inputs.write_text("".join(json.dumps({"id": f"n{i}", "de": f"touch {marker}"}) + "\n" for i in range(3)))
    result = subprocess.run(
        [sys.executable, "-m", "ctm_m3l.cli", "infer", "model", "--input", str(inputs), "--view", "de",
         "--embeddings", str(shared_model.parent / "de_new.npy"), "--output", str(tmp_path / "out.csv")],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(HERE.parents[1])})
    assert result.returncode == 2, result.stderr
    assert f"the saved tokenizer {tokenizer!r}" in result.stderr and "--trust-tokenizer" in result.stderr
    assert not marker.exists(), "the crafted tokenizer ran"
    assert not (tmp_path / "out.csv").exists()


def test_a_module_inside_the_folder_is_never_imported_even_when_trusted(tmp_path, shared_model, monkeypatch):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(shared_model, folder)
    marker = tmp_path / "MARKER"
    (folder / "jieba.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\nlcut = str.split\n")
    _edit_preparation(folder, de={"tokenizer": "model.jieba:lcut"})
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    prep = M3LDataPreparation.load("model", trust_remote_code=True)
    with pytest.raises(ValueError, match="would be imported from inside the folder being loaded"):
        prep.transform(["ein hund"], view="de", custom_embeddings=np.zeros((1, 24)))
    # A known segmenter's name found inside the folder (cwd = the folder) is refused too.
    _edit_preparation(folder, de={"tokenizer": "jieba:lcut"})
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    prep = M3LDataPreparation.load(folder)
    with pytest.raises(ValueError, match="would be imported from inside the folder"):
        prep.transform(["ein hund"], view="de", custom_embeddings=np.zeros((1, 24)))
    assert not marker.exists()


@pytest.mark.parametrize("tokenizer", CRAFTED)
def test_crafted_tokenizers_run_nothing_from_python(tmp_path, shared_model, tokenizer, monkeypatch):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(shared_model, folder)
    calls = []
    _edit_preparation(folder, de={"tokenizer": tokenizer})
    monkeypatch.setattr(os, "popen", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(os, "system", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(subprocess, "getoutput", lambda *a, **k: calls.append(a))
    config = json.loads((folder / "preparation.json").read_text())
    for prep in (M3LDataPreparation.load(folder), M3LDataPreparation.from_config(config)):
        with pytest.raises(ValueError, match=f"the saved tokenizer {tokenizer!r} is not one of the known"):
            prep.transform(["echo hello"], view="de", custom_embeddings=np.zeros((1, 24)))
        # Views that need no tokenizer still work.
        assert prep.transform(["a dog"], view="en", custom_embeddings=np.zeros((1, 16))).bow["en"].shape[0] == 1
    assert calls == []
    # The user's own function replaces the saved name.
    prep = M3LDataPreparation.load(folder, tokenizers={"de": str.split})
    assert prep.transform(["ein hund"], view="de", custom_embeddings=np.zeros((1, 24))).bow["de"].shape[0] == 1


def test_an_edited_preparation_is_refused_by_its_checksum(tmp_path, shared_model, capsys):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(shared_model, folder)
    _edit_preparation(folder, sign=False, de={"tokenizer": "os:popen"})
    with pytest.raises(ModelFolderError, match=r"preparation.json: does not match its checksum"):
        M3LDataPreparation.load(folder)
    assert main(["infer", str(folder), "--input", "x.jsonl", "--view", "de", "--output", "o.csv"]) == 2
    assert "preparation.json: does not match its checksum" in capsys.readouterr().err
    manifest = json.loads((shared_model / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["config.json", "model.safetensors", "preparation.json"]


def test_saved_encoder_paths_stay_inside_the_folder(tmp_path, shared_model):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(shared_model, folder)
    (folder / "encoders" / "de").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for encoder, refused in [(str(outside), True), ("../elsewhere", True), ("~/models/x", True),
                             ("encoders/de", False), ("clip-ViT-B-32", False), ("offline:minilm", False)]:
        _edit_preparation(folder, de={"encoder": encoder})
        prep = M3LDataPreparation.load(folder)
        view = prep.views[prep.view_names.index("de")]
        if refused:
            with pytest.raises(ValueError, match=r"the saved encoder .* is a path outside the folder.*encoders="):
                prep.transform(["ein hund"], view="de")
        elif encoder == "encoders/de":
            assert view.encoder == str((folder / "encoders" / "de").resolve())
        else:
            assert view.encoder == encoder
    # The user may name any encoder; saving again writes back what the folder said.
    _edit_preparation(folder, de={"encoder": str(outside)})
    prep = M3LDataPreparation.load(folder, encoders={"de": lambda texts: np.ones((len(texts), 24))})
    assert prep.transform(["ein hund"], view="de").embeddings["de"].shape == (1, 24)
    assert M3LDataPreparation.load(folder).to_config()["views"][1]["encoder"] == str(outside)


def test_sizes_in_the_config_are_checked_before_anything_is_allocated(tmp_path, shared_model):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(shared_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config["settings"]["n_components"] = 10**12
    (folder / "config.json").write_text(json.dumps(config))
    resign(folder)
    with pytest.raises(ModelFolderError, match="tensors do not match the architecture"):
        M3LTM.load(folder)
    config["settings"]["n_components"] = 3
    config["vocabularies"]["en"] = config["vocabularies"]["en"][::-1]  # same size: caught by the checksum
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match="config.json: does not match its checksum"):
        M3LTM.load(folder)
    (folder / "config.json").write_text("[" * 100000 + "]" * 100000)
    resign(folder)
    with pytest.raises(ModelFolderError, match="nested too deeply"):
        M3LTM.load(folder)
    (folder / "preparation.json").write_text(json.dumps({"views": [{"kind": "text"}]}))
    resign(folder)
    with pytest.raises(ValueError, match=r"preparation.json: not a saved M3LDataPreparation"):
        M3LDataPreparation.load(folder)
    (folder / "preparation.json").write_text(json.dumps({"views": [{"kind": "text", "name": "en"}],
                                                         "vocabularies": {}, "embedding_sizes": {}}))
    resign(folder)
    with pytest.raises(ValueError, match=r"preparation.json: missing entry 'vocabulary_size'"):
        M3LDataPreparation.load(folder)


def test_nothing_non_finite_is_saved_loaded_or_trained(tmp_path):
    _, train, _ = prepare(n_train=100, n_test=10)
    model = M3LTM(views=VIEWS, n_components=3, num_epochs=1, random_state=0).fit(train, progress_bar=False)
    model.save(tmp_path / "good")
    with torch.no_grad():
        model.model.topic_words[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="refusing to save .*topic_words hold NaN or infinity"):
        model.save(tmp_path / "bad")
    assert not (tmp_path / "bad").exists()

    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "good" / "model.safetensors"))
    state["posterior_weight"][0, 0, 0] = float("nan")
    save_file(state, str(tmp_path / "good" / "model.safetensors"))
    resign(tmp_path / "good")
    with pytest.raises(ModelFolderError, match="model.safetensors: posterior_weight hold NaN or infinity"):
        M3LTM.load(tmp_path / "good")

    for v in VIEWS:  # finite inputs that overflow the network
        train.embeddings[v] = train.embeddings[v] * 1e30
    diverging = M3LTM(views=VIEWS, n_components=3, num_epochs=2, random_state=0)
    with pytest.raises(FloatingPointError, match="training diverged"):
        diverging.fit(train, progress_bar=False, checkpoint_dir=tmp_path / "ckpt")
    assert not (tmp_path / "ckpt" / "checkpoint.safetensors").exists()  # no non-finite checkpoint either


# -- a save killed at every step ---------------------------------------------------------------------
def _thetas(folder: Path, data) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return M3LTM.load(folder).get_thetas(data, view="de", seed=0)


def _killed_save(model, target: Path, step: int, exchange: bool) -> bool:
    """Save ``model`` into ``target`` in a forked child that SIGKILLs itself just before the
    ``step``-th rename, exchange or removal; True when the save finished before that step."""
    context = multiprocessing.get_context("fork")

    def child():
        import shutil

        from ctm_m3l import persistence

        counter = {"n": 0}

        def deadly(function):
            def wrapper(*args, **kwargs):
                counter["n"] += 1
                if counter["n"] == step:
                    os.kill(os.getpid(), signal.SIGKILL)
                return function(*args, **kwargs)
            return wrapper

        os.rename, os.replace, shutil.rmtree = deadly(os.rename), deadly(os.replace), deadly(shutil.rmtree)
        persistence.exchange = deadly(persistence.exchange if exchange else (lambda a, b: False))
        model.save(target)
        os._exit(0)

    process = context.Process(target=child)
    process.start()
    process.join(60)
    return process.exitcode == 0


@pytest.mark.parametrize("exchange", [True, False], ids=["atomic-exchange", "two-renames"])
def test_a_save_killed_at_any_step_leaves_a_loadable_model(tmp_path, exchange):
    _, train, test = prepare(n_train=100, n_test=10)
    old = M3LTM(views=VIEWS, n_components=3, num_epochs=1, random_state=0).fit(train, progress_bar=False)
    new = M3LTM(views=VIEWS, n_components=3, num_epochs=1, random_state=1).fit(train, progress_bar=False)
    target = tmp_path / "model"
    old_thetas = _thetas(old.save(tmp_path / "reference-old"), test)
    new_thetas = _thetas(new.save(tmp_path / "reference-new"), test)
    steps = 0
    for step in range(1, 20):
        old.save(target)
        (target / "notes.txt").write_text("the user's own file")
        finished = _killed_save(new, target, step, exchange)
        got = _thetas(target, test)
        assert np.array_equal(got, old_thetas) or np.array_equal(got, new_thetas), f"step {step}"
        if target.is_dir():
            assert (target / "notes.txt").read_text() == "the user's own file"
        if finished:
            assert np.array_equal(got, new_thetas)
            steps = step
            break
    assert steps >= 2, "the save was never interrupted"
    # The next save completes and removes what the killed ones left behind.
    new.save(target)
    assert np.array_equal(_thetas(target, test), new_thetas)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "reference-new", "reference-old"]
    mask = os.umask(0)
    os.umask(mask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in target.iterdir()}
    assert modes == {"config.json": 0o666 & ~mask, "manifest.json": 0o666 & ~mask,
                     "model.safetensors": 0o666 & ~mask, "notes.txt": 0o644 & ~mask or modes["notes.txt"]}
    assert target.stat().st_mode & 0o777 == 0o777 & ~mask


def test_the_cli_saves_the_preparation_in_the_same_commit(tmp_path, shared_model):
    manifest = json.loads((shared_model / "manifest.json").read_text())
    assert "preparation.json" in manifest["files"]
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(shared_model, folder)
    prep = M3LDataPreparation.load(folder)
    model = M3LTM.load(folder)
    model.save(folder)  # no preparation given: the folder's own, matching this model, is kept
    assert M3LDataPreparation.load(folder).to_config() == prep.to_config()
    other = M3LTM(views=["en", "de"], n_components=3, num_epochs=1, random_state=0)
    _, train, _ = prepare(n_train=50, n_test=5)
    other.fit(train, progress_bar=False)
    with pytest.warns(UserWarning, match="preparation.json is not kept"):
        other.save(folder)
    with pytest.raises(ValueError, match="preparation does not match this model"):
        other.save(folder, preparation=prep)


# -- checkpoints -----------------------------------------------------------------------------------------
def test_checkpoints_carry_a_checksum_and_their_data(tmp_path):
    prep, train, test = prepare(n_train=200, n_test=50)
    settings = dict(views=VIEWS, n_components=3, num_epochs=3, random_state=0)
    M3LTM(**settings).fit(train, progress_bar=False, checkpoint_dir=tmp_path)
    path = tmp_path / "checkpoint.safetensors"
    blob = bytearray(path.read_bytes())
    good = bytes(blob)
    blob[len(blob) - 7] ^= 0x10  # one flipped bit of the last tensor's bytes
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointMismatchError, match="does not match its checksum"):
        M3LTM(**settings).fit(train, progress_bar=False, resume_from=tmp_path)
    path.write_bytes(good)
    # Other tuples with the same vocabularies and sizes.
    shuffled = train.subset(np.random.default_rng(0).permutation(len(train)))
    with pytest.raises(CheckpointMismatchError, match="trained on other train data"):
        M3LTM(**settings).fit(shuffled, progress_bar=False, resume_from=tmp_path)
    with pytest.raises(CheckpointMismatchError, match="is at epoch 3, past this fit's num_epochs=2"):
        M3LTM(**{**settings, "num_epochs": 2}).fit(train, progress_bar=False, resume_from=tmp_path)
    with pytest.raises(CheckpointMismatchError, match="trained on no validation data"):
        M3LTM(**{**settings, "num_epochs": 4}).fit(train, validation_dataset=test, progress_bar=False,
                                                   resume_from=tmp_path)
    resumed = M3LTM(**{**settings, "num_epochs": 4}).fit(train, progress_bar=False, resume_from=tmp_path)
    assert len(resumed.history) == 4


def test_validation_and_inference_data_must_share_the_training_vocabularies():
    prep, train, test = prepare(n_train=100, n_test=20)
    rows, emb, _ = planted_tuples(120, n_topics=3, seed=9, words_per_topic=14)  # other words, same sizes
    other_prep = M3LDataPreparation([TextView("en", stopwords=None, vocabulary_size=40),
                                     TextView("de", stopwords=None, vocabulary_size=40), prep.views[2]])
    other = other_prep.fit(rows, custom_embeddings=emb)
    assert {v: len(w) for v, w in other.vocabularies.items()} == {v: len(w) for v, w in train.vocabularies.items()}
    model = M3LTM(views=VIEWS, n_components=3, num_epochs=1, random_state=0)
    with pytest.raises(ValueError, match="validation_dataset, view 'en': its vocabulary is not the one"):
        model.fit(train, validation_dataset=other, progress_bar=False)
    model.fit(train, progress_bar=False)
    de_only = prep.transform(["dexaawaa"], view="de", custom_embeddings=np.zeros((1, 24)))
    assert np.isfinite(model.get_thetas(de_only, view="de")).all()
    texts = M3LDataPreparation([TextView("en", stopwords=None), TextView("de", stopwords=None)])
    without_images = texts.fit(rows[:20], custom_embeddings={"en": emb["en"][:20], "de": emb["de"][:20]})
    with pytest.raises(ValueError, match=r"view 'image' is not in this dataset, whose views are \['en', 'de'\]"):
        model.get_thetas(without_images, view="image")


# -- ids ---------------------------------------------------------------------------------------------------
def test_duplicate_ids_are_refused_by_evaluate_and_compared_as_given():
    prep, train, test = prepare(n_train=200, n_test=40)
    model = M3LTM(views=VIEWS, n_components=3, num_epochs=2, random_state=0).fit(train, progress_bar=False)
    fair = evaluate(model, train, test)["mrr_en_de"]
    assert fair < 0.9
    rows, emb, _ = planted_tuples(240, n_topics=5, seed=0)
    same = [{**r, "id": "same"} for r in rows[200:]]
    with pytest.warns(UserWarning, match="view 'en': 1 id\\(s\\) name more than one text"):
        cheating = prep.transform(same, custom_embeddings={k: v[200:] for k, v in emb.items()})
    with pytest.raises(ValueError, match=r"test data, view 'en': 1 id\(s\) name more than one text"):
        evaluate(model, train, cheating)
    # Ids as given: the string "1" and the number 1 are two tuples, as are row numbers and strings.
    mixed = [dict(r) for r in rows[200:210]]
    for i, value in enumerate(["1", 1, None, "3", 4.5, "x", None, "7", "8", "9"]):
        if value is None:
            del mixed[i]["id"]  # its row number: 2, 6
        else:
            mixed[i]["id"] = value
    embeddings = {k: v[200:210] for k, v in emb.items()}
    data = prep.transform(mixed, custom_embeddings=embeddings)
    assert data.ids == ["1", 1, 2, "3", 4.5, "x", 6, "7", "8", "9"]
    named = prep.transform([{**r, "id": f"u{i}"} for i, r in enumerate(mixed)], custom_embeddings=embeddings)
    assert evaluate(model, train, data) == evaluate(model, train, named)


# -- errors that name their culprit -----------------------------------------------------------------------
def test_input_errors_name_the_file_line_row_and_view(tmp_path, shared_model, capsys):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(json.dumps({"id": "a", "de": "gut"}).encode() + b"\n" +
                    '{"id": "b", "de": "Gr\xfc\xdfe"}'.encode("latin-1") + b"\n")
    prep = M3LDataPreparation.load(shared_model)
    with pytest.raises(ValueError, match=r"latin1.jsonl: line 2, byte 22 of the line is not UTF-8"):
        prep.transform(bad, view="de")
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("id,en\na,a dog runs\nb,a cat sleeps\n")
    with pytest.raises(ValueError, match=r"rows.csv: no row has a field 'de' \(view 'de'\); the rows' fields are "
                                         r"\['en', 'id'\]"):
        prep.transform(csv_file, view="de")
    with pytest.raises(ValueError, match=r"rows.csv: no row has a field 'de'"):
        M3LDataPreparation([TextView("en", stopwords=None), TextView("de", stopwords=None)]).fit(
            csv_file, custom_embeddings={"en": np.zeros((2, 3)), "de": np.zeros((2, 3))})
    # One row without the view: NaN for that row, the others inferred.
    rows = tmp_path / "some.jsonl"
    rows.write_text(json.dumps({"id": "x", "de": "dexaawaa"}) + "\n" + json.dumps({"id": "y", "en": "e"}) + "\n"
                    + json.dumps({"id": "z", "de": "dexabwab"}) + "\n")
    np.save(tmp_path / "e.npy", np.zeros((2, 24), dtype=np.float32))
    code = main(["infer", str(shared_model), "--input", str(rows), "--view", "de", "--embeddings",
                 str(tmp_path / "e.npy"), "--output", str(tmp_path / "t.jsonl")])
    assert code == 0, capsys.readouterr().err
    out = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == ["x", "y", "z"] and out[1]["topics"] is None
    assert all(abs(sum(r["topics"]) - 1) < 1e-6 for r in (out[0], out[2]))
    model = M3LTM.load(shared_model)
    en_only = prep.transform(["a dog"], view="en", custom_embeddings=np.zeros((1, 16)))
    with pytest.raises(ValueError, match="the model's views"):
        model.get_thetas(en_only, view="image")


def test_a_model_saved_before_manifests_loads_and_gives_the_same_thetas(tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(LEGACY / "model", folder)
    out = tmp_path / "thetas.csv"
    assert main(["infer", str(folder), "--input", str(LEGACY / "new_de.jsonl"), "--view", "de", "--embeddings",
                 str(LEGACY / "new_de.npy"), "--seed", "0", "--output", str(out)]) == 0
    assert out.read_text() == (LEGACY / "thetas.csv").read_text()
    # Its weights are still checked against the checksum config.json carries.
    blob = bytearray((folder / "model.safetensors").read_bytes())
    blob[-3] ^= 1
    (folder / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(ModelFolderError, match="do not match the checksum in config.json"):
        M3LTM.load(folder)


def test_temporary_files_of_killed_writes_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid names no running process now
    _, train, _ = prepare(n_train=60, n_test=5)
    model = M3LTM(views=VIEWS, n_components=3, num_epochs=1, random_state=0)
    left = [tmp_path / "ckpt" / f".checkpoint.safetensors.tmp-{dead.pid}-ab12",
            tmp_path / "ckpt" / f".checkpoint.safetensors.tmp{dead.pid}",  # ctm-m3l 0.1.0's name
            tmp_path / "ckpt" / f".checkpoint.safetensors.tmp-{os.getpid()}-cd34"]  # a live process's
    for path in left:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half a checkpoint")
    model.fit(train, progress_bar=False, checkpoint_dir=tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == sorted(
        ["checkpoint.safetensors", left[2].name])
    model.save(tmp_path / "m")
    (tmp_path / "m" / f".model.safetensors.tmp{dead.pid}").write_bytes(b"half")
    (tmp_path / f".m.new-{dead.pid}-xyz").mkdir()
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "manifest.json",
                                                                   "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "m"]
