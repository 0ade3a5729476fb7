"""How peaked are the topic mixtures, and how diverse the topics, for each loss variant?

On a random subset of Multi30k `train` (en, de; offline MiniLM for both languages), 100
topics: M3L-Contrast with the default loss, without each of its terms, with CTM's prior KL
added and with the pairwise KL between Gaussian posteriors (Eq. 1 as printed) instead of
between sampled topic vectors; CTM's ZeroShotTM on English, and M3LTM on English alone with
CTM's objective (reconstruction + prior KL).  Prints topic diversity (share of
unique words among every topic's top 25) per language and the mean over English documents of
their largest topic proportion (20-sample average, as at inference; 0.01 = uniform).

    python benchmarks/topic_spread.py --data ../shared/data/multi30k --cache-dir CACHE

Encodes all 29,000 training tuples once (~16 minutes on 2 CPU cores; cached), then ~1 minute
per model on one thread.
"""
import argparse
import time

import numpy as np
import torch

from ctm_m3l import M3LTM, M3LDataPreparation, TextView, load_multi30k
from ctm_m3l.baselines import ZeroShotBaseline
from ctm_m3l.evaluation import topic_diversity


def report(name, model, train, languages, seconds):
    theta = model.get_thetas(train, view="en", seed=0)
    diversity = " ".join(f"{lang} {topic_diversity(model.get_topic_lists(25, lang)):.3f}" for lang in languages)
    print(f"{name:32s} diversity {diversity:18s} mean max theta (en) {theta.max(1).mean():.3f} ({seconds:.0f} s)",
          flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--n-train", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--topics", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    prep = M3LDataPreparation([TextView("en", encoder="offline:minilm"), TextView("de", encoder="offline:minilm")],
                              cache_dir=args.cache_dir)
    full = prep.fit(load_multi30k("train", root=args.data))
    train = full.subset(np.random.default_rng(0).permutation(len(full))[:args.n_train])
    print(train, flush=True)
    variants = {"M3L default": {}, "M3L without InfoNCE": {"loss_weights": {"contrastive": 0.0}},
                "M3L without pair KL": {"loss_weights": {"pair_kl": 0.0}},
                "M3L with prior KL": {"loss_weights": {"prior_kl": 1.0}},
                "M3L Gaussian pair KL, dot": {"pair_kl_on": "posterior", "similarity": "dot"},
                "M3L Gaussian pair KL + prior KL, dot": {"pair_kl_on": "posterior", "similarity": "dot",
                                                         "loss_weights": {"prior_kl": 1.0}}}
    for name, options in variants.items():
        start = time.perf_counter()
        model = M3LTM(views=["en", "de"], n_components=args.topics, num_epochs=args.epochs, random_state=0,
                      **options)
        model.fit(train, progress_bar=False)
        report(name, model, train, ["en", "de"], time.perf_counter() - start)
    start = time.perf_counter()
    zeroshot = ZeroShotBaseline("en", ["en", "de"], n_components=args.topics, num_epochs=args.epochs, batch_size=64,
                                random_state=0)
    zeroshot.fit(train)
    report("ZeroshotTM (en)", zeroshot, train, ["en"], time.perf_counter() - start)
    start = time.perf_counter()
    alone = M3LTM(views=["en"], n_components=args.topics, num_epochs=args.epochs, random_state=0,
                  loss_weights={"prior_kl": 1.0, "pair_kl": 0.0, "contrastive": 0.0})
    alone.fit(train, progress_bar=False)
    report("M3LTM on en alone", alone, train, ["en"], time.perf_counter() - start)


if __name__ == "__main__":
    main()
