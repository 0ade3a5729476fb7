"""The ctm-m3l command: fit, topics, infer."""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import needs_cpp

from ctm_m3l import M3LTM
from ctm_m3l.cli import main
from ctm_m3l.data.synthetic import planted_tuples


def _write_tuples(tmp_path):
    rows, emb, _ = planted_tuples(120, n_topics=4, images=(), seed=0)
    with open(tmp_path / "train.jsonl", "w") as fh:
        for r in rows[:100]:
            fh.write(json.dumps(r) + "\n")
    with open(tmp_path / "new.jsonl", "w") as fh:
        for r in rows[100:]:
            fh.write(json.dumps({"id": r["id"], "de": r["de"]}) + "\n")
    for v in ("en", "de"):
        np.save(tmp_path / f"{v}.npy", emb[v][:100])
    np.save(tmp_path / "de_new.npy", emb["de"][100:])


def test_fit_topics_infer(tmp_path, capsys):
    _write_tuples(tmp_path)
    code = main(["fit", "--train", str(tmp_path / "train.jsonl"), "--views", "en,de",
                 "--embeddings", f"en={tmp_path / 'en.npy'}", f"de={tmp_path / 'de.npy'}",
                 "--n-components", "4", "--num-epochs", "3", "--seed", "0", "--output", str(tmp_path / "model")])
    assert code == 0
    assert main(["topics", str(tmp_path / "model"), "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert "topic 3" in out and "  en: " in out and "  de: " in out
    assert main(["infer", str(tmp_path / "model"), "--input", str(tmp_path / "new.jsonl"), "--view", "de",
                 "--embeddings", str(tmp_path / "de_new.npy"), "--output", str(tmp_path / "theta.csv")]) == 0
    lines = (tmp_path / "theta.csv").read_text().strip().splitlines()
    assert lines[0] == "id,topic_0,topic_1,topic_2,topic_3"
    assert len(lines) == 21 and lines[1].startswith("t100,")
    assert abs(sum(float(x) for x in lines[1].split(",")[1:]) - 1) < 1e-4


@needs_cpp
def test_fit_with_torch_compile(tmp_path, capsys):
    _write_tuples(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["fit", "--train", str(tmp_path / "train.jsonl"), "--views", "en,de", "--torch-compile",
                     "--embeddings", f"en={tmp_path / 'en.npy'}", f"de={tmp_path / 'de.npy'}", "--n-components", "4",
                     "--num-epochs", "2", "--seed", "0", "--output", str(tmp_path / "model")])
    assert code == 0
    assert not [w for w in caught if "torch.compile failed" in str(w.message)]
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["settings"]["torch_compile"] is True and len(config["history"]) == 2
    assert main(["topics", str(tmp_path / "model"), "--k", "3"]) == 0  # loads and runs like any model


def test_fit_takes_the_loss_settings(tmp_path, capsys):
    _write_tuples(tmp_path)
    common = ["fit", "--train", str(tmp_path / "train.jsonl"), "--views", "en,de",
              "--embeddings", f"en={tmp_path / 'en.npy'}", f"de={tmp_path / 'de.npy'}", "--n-components", "4",
              "--num-epochs", "1", "--seed", "0", "--output", str(tmp_path / "model")]
    assert main(common + ["--loss-weights", "pair_kl=0.1", "contrastive=10", "--temperature", "0.2",
                          "--similarity", "dot", "--pair-kl-on", "posterior"]) == 0
    settings = json.loads((tmp_path / "model" / "config.json").read_text())["settings"]
    assert settings["loss_weights"] == {"reconstruction": 1.0, "prior_kl": 0.0, "image_prior_kl": 0.0, "pair_kl": 0.1,
                                        "contrastive": 10.0}
    assert settings["temperature"] == 0.2 and settings["similarity"] == "dot"
    assert settings["pair_kl_on"] == "posterior"
    assert main(common + ["--posterior-norm", "ctm", "--contrastive-reduction", "mean",
                          "--inference-input", "contextual", "--image-posterior-norm", "none"]) == 0  # the paper's
    settings = json.loads((tmp_path / "model" / "config.json").read_text())["settings"]
    assert (settings["posterior_norm"], settings["contrastive_reduction"], settings["inference_input"],
            settings["image_posterior_norm"]) == ("ctm", "mean", "contextual", "none")
    assert main(common + ["--posterior-norm", "mean"]) == 0
    settings = json.loads((tmp_path / "model" / "config.json").read_text())["settings"]
    assert settings["posterior_norm"] == "mean" and settings["image_posterior_norm"] == "ctm-shifted"
    assert main(common + ["--hidden-sizes", "8", "6"]) == 0
    model = M3LTM.load(tmp_path / "model")
    assert model.hidden_sizes == (8, 6) and [w.shape[1:] for w in model.model.hidden_weight] == [(6, 8)]
    assert main(common + ["--topic-fit", "none", "--topic-epochs", "1"]) == 0  # none: the default, said
    saved = M3LTM.load(tmp_path / "model")
    assert saved.topic_epochs == 1 and saved.topic_fit is None
    # Topics fixed from that model: only the inference networks train.
    assert main(common + ["--topic-epochs", "0", "--topics-from", str(tmp_path / "model"),
                          "--output", str(tmp_path / "fixed")]) == 0
    source, fixed = M3LTM.load(tmp_path / "model"), M3LTM.load(tmp_path / "fixed")
    assert torch.equal(fixed.model.topic_words, source.model.topic_words) and fixed.topic_epochs == 0
    assert fixed.topics_source["settings"]["topic_epochs"] == 1
    # Topics from a first fit in the same call: the paper's settings, or a JSON object of settings.
    assert main(common + ["--topic-fit", "paper", "--output", str(tmp_path / "paired")]) == 0
    paired = M3LTM.load(tmp_path / "paired")
    assert paired.topic_fit == "paper" and paired.topics_source["settings"]["posterior_norm"] == "ctm"
    # With --topic-epochs the first fit's topics train on in the model's own last epochs.
    assert main(common + ["--topic-fit", "paper", "--topic-epochs", "1", "--output", str(tmp_path / "tuned")]) == 0
    tuned = M3LTM.load(tmp_path / "tuned")
    assert tuned.topic_epochs == 1 and tuned.topics_source == paired.topics_source
    assert not torch.equal(tuned.model.topic_words, paired.model.topic_words)
    assert main(common + ["--topic-fit", '{"batch_size": 8, "dropout": 0.1}', "--output", str(tmp_path / "paired")]) == 0
    assert M3LTM.load(tmp_path / "paired").topics_source["settings"]["batch_size"] == 8
    capsys.readouterr()
    with pytest.raises(SystemExit, match="2"):  # argparse's usage error
        main(common + ["--topic-fit", "papers"])
    assert "'papers': give one of ['paper', 'none'] or a JSON object" in capsys.readouterr().err
    assert main(common + ["--topic-fit", '{"n_components": 3}']) == 2
    assert "topic_fit may not set ['n_components']" in capsys.readouterr().err
    assert main(common + ["--hidden-sizes", "0"]) == 2
    assert "hidden_sizes" in capsys.readouterr().err
    assert main(common + ["--topic-epochs", "0"]) == 2
    assert "give fit topics_from=" in capsys.readouterr().err
    assert main(common + ["--topic-epochs", "-1"]) == 2
    assert "topic_epochs" in capsys.readouterr().err
    assert main(common + ["--loss-weights", "pair_kl"]) == 2
    assert "KEY=NUMBER" in capsys.readouterr().err
    assert main(common + ["--loss-weights", "pairkl=0.1"]) == 2
    assert "loss_weights has unknown key(s) ['pairkl']" in capsys.readouterr().err
    assert main(["evaluate", "--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "train.jsonl"),
                 "--views", "en,de", "--model", "zeroshot", "--loss-weights", "pair_kl=0.1",
                 "--output", str(tmp_path / "results.json")]) == 2
    assert "--model zeroshot has none of them" in capsys.readouterr().err
    assert main(["evaluate", "--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "train.jsonl"),
                 "--views", "en,de", "--model", "pltm", "--torch-compile",
                 "--output", str(tmp_path / "results.json")]) == 2
    assert "--model pltm does not train with it" in capsys.readouterr().err


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["topics", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
    _write_tuples(tmp_path)
    fit = ["fit", "--train", str(tmp_path / "train.jsonl"), "--output", str(tmp_path / "model")]
    assert main(fit + ["--views", " , "]) == 2
    assert "ctm-m3l fit: error: --views needs at least one view name" in capsys.readouterr().err
    assert main(fit + ["--views", "en,de", "--embeddings", str(tmp_path / "en.npy")]) == 2
    assert "--embeddings takes VIEW=FILE.npy" in capsys.readouterr().err
    assert main(["infer", str(tmp_path), "--input", str(tmp_path / "new.jsonl"), "--view", "de",
                 "--output", str(tmp_path / "theta.csv")]) == 2
    assert "ctm-m3l infer: error:" in capsys.readouterr().err


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "ctm_m3l.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "fit" in result.stdout and "infer" in result.stdout


def test_fit_and_infer_with_a_word_segmenter(tmp_path, capsys, monkeypatch):
    # The segmenter is named by module (test_tokenizers:segment), as a user names jieba's: its
    # folder must be importable however this test is selected.
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "unit"))
    from test_tokenizers import ZH, embeddings, rows

    data = rows(ZH * 5)
    with open(tmp_path / "train.jsonl", "w", encoding="utf-8") as fh:
        for i, r in enumerate(data):
            fh.write(json.dumps({"id": f"t{i}", **r}, ensure_ascii=False) + "\n")
    emb = embeddings(len(data))
    for v in ("zh", "en"):
        np.save(tmp_path / f"{v}.npy", emb[v])
    common = ["fit", "--train", str(tmp_path / "train.jsonl"), "--views", "zh,en",
              "--embeddings", f"zh={tmp_path / 'zh.npy'}", f"en={tmp_path / 'en.npy'}",
              "--n-components", "2", "--num-epochs", "1", "--seed", "0", "--output", str(tmp_path / "model")]
    assert main(common + ["--tokenizer", "zh=test_tokenizers:segment"]) == 0
    prep = json.loads((tmp_path / "model" / "preparation.json").read_text(encoding="utf-8"))
    zh = next(v for v in prep["views"] if v["name"] == "zh")
    assert zh["tokenizer"] == "test_tokenizers:segment" and "自行车" in prep["vocabularies"]["zh"]
    assert "一个男人在骑自行车" not in prep["vocabularies"]["zh"]
    (tmp_path / "new.jsonl").write_text(json.dumps({"id": "n0", "zh": "小狗在公园跑"}, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
    np.save(tmp_path / "zh_new.npy", emb["zh"][:1])
    infer = ["infer", str(tmp_path / "model"), "--input", str(tmp_path / "new.jsonl"), "--view", "zh",
             "--embeddings", str(tmp_path / "zh_new.npy"), "--output", str(tmp_path / "theta.csv")]
    capsys.readouterr()
    assert main(infer) == 2  # a segmenter that is not a known one is imported only when trusted
    assert "--trust-tokenizer" in capsys.readouterr().err and not (tmp_path / "theta.csv").exists()
    assert main(infer + ["--trust-tokenizer"]) == 0
    assert (tmp_path / "theta.csv").read_text().splitlines()[1].startswith("n0,")
    capsys.readouterr()
    assert main(common + ["--tokenizer", "image=test_tokenizers:segment"]) == 2
    assert "'image' is not one of the text views ['zh', 'en']" in capsys.readouterr().err
    assert main(common + ["--tokenizer", "zh=segment"]) == 2
    assert "VIEW=MODULE:FUNCTION" in capsys.readouterr().err
