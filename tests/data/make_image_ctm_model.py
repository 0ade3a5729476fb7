"""Writes tests/data/image-ctm-model/: a model with an image view saved with the defaults of
commit 245a5a6, before ``image_posterior_norm="ctm-shifted"`` became the default (its image
network has CTM's layout, ``"ctm"``), with held-out tuples and the thetas that version gave for
each view, so later versions can be checked to load it and give the same numbers.

    git worktree add /tmp/m3l-245a5a6 245a5a6
    PYTHONPATH=/tmp/m3l-245a5a6 python tests/data/make_image_ctm_model.py
"""
import json
from pathlib import Path

import numpy as np

import ctm_m3l
from ctm_m3l import M3LTM
from ctm_m3l.data.synthetic import planted_tuples

out = Path(__file__).parent / "image-ctm-model"
views = ["en", "de", "image"]
rows, emb, _ = planted_tuples(90, n_topics=3, words_per_topic=4, dims={"en": 6, "de": 5, "image": 7}, seed=3)
prep = ctm_m3l.M3LDataPreparation([ctm_m3l.TextView("en", stopwords=None), ctm_m3l.TextView("de", stopwords=None),
                                   ctm_m3l.ImageView("image")])
train = prep.fit(rows[:70], custom_embeddings={v: e[:70] for v, e in emb.items()})
model = M3LTM(views=views, n_components=3, num_epochs=3, batch_size=16, random_state=0)
assert model.image_posterior_norm == "ctm", "run this with the code of 245a5a6"
model.fit(train, progress_bar=False)
model.save(out / "model", preparation=prep)
with open(out / "held_out.jsonl", "w") as fh:
    for r in rows[70:]:
        fh.write(json.dumps(r) + "\n")
test = prep.transform(rows[70:], custom_embeddings={v: e[70:] for v, e in emb.items()})
for v in views:
    np.save(out / f"held_out_{v}.npy", emb[v][70:])
    np.save(out / f"thetas_{v}.npy", model.get_thetas(test, view=v, seed=0))
