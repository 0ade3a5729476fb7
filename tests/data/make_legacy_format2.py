"""Writes tests/data/legacy-format2/: a model saved by `ctm-m3l fit` at commit 956c97f
(format_version 2, weights_sha256 in config.json, preparation.json beside it), and the
thetas that version gave for a few German texts, so later versions can be checked to load
it and give the same numbers."""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, "tests")
from ctm_m3l.cli import main
from ctm_m3l.data.synthetic import planted_tuples

out = Path("tests/data/legacy-format2")
work = Path("/tmp/legacy-work")
work.mkdir(exist_ok=True)
rows, emb, _ = planted_tuples(70, n_topics=3, images=(), words_per_topic=4, dims={"en": 6, "de": 5}, seed=5)
with open(work / "train.jsonl", "w") as fh:
    for r in rows[:60]:
        fh.write(json.dumps(r) + "\n")
for v in ("en", "de"):
    np.save(work / f"{v}.npy", emb[v][:60])
assert main(["fit", "--train", str(work / "train.jsonl"), "--views", "en,de", "--embeddings",
             f"en={work / 'en.npy'}", f"de={work / 'de.npy'}", "--n-components", "3", "--num-epochs", "3",
             "--seed", "0", "--vocabulary-size", "20", "--output", str(out / "model")]) == 0
new = [{"id": r["id"], "de": r["de"]} for r in rows[60:]]
with open(out / "new_de.jsonl", "w") as fh:
    for r in new:
        fh.write(json.dumps(r) + "\n")
np.save(out / "new_de.npy", emb["de"][60:])
assert main(["infer", str(out / "model"), "--input", str(out / "new_de.jsonl"), "--view", "de",
             "--embeddings", str(out / "new_de.npy"), "--seed", "0", "--output", str(out / "thetas.csv")]) == 0
