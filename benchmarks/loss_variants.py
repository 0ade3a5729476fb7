"""Which loss? Compare the loss-weight variants on Multi30k `val` (model selection data).

Variants: this package's default (prior KL + pairwise KL + s*InfoNCE), the paper's Eq. 1
(pairwise KL + s*InfoNCE, no prior KL) and the authors' released code (prior KL + s*InfoNCE,
no pairwise KL).  Prints en->de MRR, en/de->image MRR, mean en-de JSD and per-language NPMI
of the top-10 words (document co-occurrence in the training texts).

    python benchmarks/loss_variants.py --data ../shared/data/multi30k --n-train 4000 --epochs 20
"""
import argparse
import itertools
import time
from pathlib import Path

import numpy as np

from ctm_m3l import M3LTM, ImageView, M3LDataPreparation, TextView, load_multi30k
from ctm_m3l.evaluation import mean_jsd, mrr


def npmi(topics, documents):
    docs = [set(d.split()) for d in documents]
    n = len(docs)
    scores = []
    for words in topics:
        for a, b in itertools.combinations(words, 2):
            pa = sum(a in d for d in docs) / n
            pb = sum(b in d for d in docs) / n
            pab = sum(a in d and b in d for d in docs) / n
            if pab == 0:
                scores.append(-1.0)
            else:
                scores.append(np.log(pab / (pa * pb)) / -np.log(pab))
    return float(np.mean(scores))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=None)
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--topics", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "ctm_m3l" / "embeddings"))
    args = parser.parse_args()
    train_rows = load_multi30k("train", root=args.data, limit=args.n_train)
    val_rows = load_multi30k("val", root=args.data)
    prep = M3LDataPreparation([TextView("en", encoder="offline:minilm"), TextView("de", encoder="offline:minilm"),
                               ImageView("image", encoder="offline:efficientnet-lite0")], cache_dir=args.cache_dir)
    t = time.time()
    train = prep.fit(train_rows)
    val = prep.transform(val_rows)
    print(f"prepared {train} and {val} in {time.time() - t:.0f}s", flush=True)
    has_img = val.has_view("image")
    variants = {
        "default (prior+pair+InfoNCE)": None,
        "paper Eq.1 (pair+InfoNCE)": {"prior_kl": 0.0},
        "released code (prior+InfoNCE)": {"pair_kl": 0.0},
    }
    print("| variant | MRR en->de | MRR en->img | MRR de->img | JSD en-de | NPMI en | NPMI de |")
    print("|---|---|---|---|---|---|---|")
    for name, weights in variants.items():
        results = []
        for seed in range(args.seeds):
            model = M3LTM(views=["en", "de", "image"], n_components=args.topics, num_epochs=args.epochs,
                          loss_weights=weights, random_state=seed)
            model.fit(train, progress_bar=False)
            th = {v: model.get_thetas(val, view=v, seed=0) for v in ["en", "de", "image"]}
            results.append([
                mrr(th["en"], th["de"]), mrr(th["en"][has_img], th["image"][has_img]),
                mrr(th["de"][has_img], th["image"][has_img]),
                mean_jsd(th["en"], th["de"]),
                npmi(model.get_topic_lists(10, "en"), train.documents["en"]),
                npmi(model.get_topic_lists(10, "de"), train.documents["de"]),
            ])
        r = np.array(results)
        cells = " | ".join(f"{m:.3f}±{s:.3f}" for m, s in zip(r.mean(0), r.std(0)))
        print(f"| {name} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
