"""How sharp and aligned the topic space is, per model variant, on planted tuples.

8 planted topics, 1,500 training / 300 held-out tuples (ctm_m3l.data.synthetic: English and German
texts with their own vocabularies, and for each of en, de, image an embedding from its own
random linear map of the true topic proportions, so no two views' embeddings are aligned),
batch 64, 60 epochs (``--batch-size 32 --epochs 100``: M3LTM's defaults).  For each variant
and seed it prints the MRR of every ordered view pair
(20 samples per topic distribution, as CTM's default), the share of topics whose English and
German top words belong to the same planted topic, and the mean largest topic share of the
English texts (peakedness; a flat 8-topic mixture gives 0.125).

    python benchmarks/topic_space_planted.py                 # every variant, seeds 0 1
    python benchmarks/topic_space_planted.py --variants "0.1.0 defaults" defaults --seeds 0 1 2
"""
import argparse
import itertools
import time

import numpy as np
import torch
from topic_space_multi30k import VARIANTS as MULTI30K_VARIANTS  # the scripts' folder is on sys.path
from topic_space_multi30k import variant

from ctm_m3l import M3LTM, PAPER_TOPIC_FIT
from ctm_m3l.data.synthetic import main_planted_topic as block
from ctm_m3l.data.synthetic import planted_datasets
from ctm_m3l.evaluation import mrr

VIEWS = ["en", "de", "image"]
TOPICS = 8
#: The Multi30k study's variants of the same names (each states its changes to the 0.1.0
#: defaults), and the network without any batch norm.
VARIANTS = {name: MULTI30K_VARIANTS[name] for name in (
    "0.1.0 defaults", "defaults", "ctm norm, InfoNCE summed", "mu-only norm", "mu-only norm, InfoNCE summed",
    "mu-only norm, InfoNCE summed, combined input", "mu-only norm, InfoNCE summed, combined input, s=100",
    "mu-only norm, InfoNCE summed, combined input, s=100, image ctm norm",
    "mu-only norm, InfoNCE summed, combined input, s=100, image ctm-shifted norm",
    "ctm-shifted norm, InfoNCE summed, combined input, s=100",
    "ctm-shifted norm, InfoNCE summed, combined input, s=100, hidden 200",
    "mu-only norm, InfoNCE summed, combined input, s=100, image prior KL 1", "no norm, InfoNCE summed",
    *(f"ctm-shifted norm, InfoNCE summed, combined input, s=100, tau={tau}" for tau in (0.05, 0.1, 0.2)))}
VARIANTS["no norm"] = variant(posterior_norm="none")


def planted_data(seed: int = 0):
    """The planted train and held-out tuples (every tuple has all three views)."""
    _, train, test = planted_datasets(1500, 300, n_topics=TOPICS, seed=seed)
    return train, test


def aligned_share(model) -> float:
    """Share of topics whose top-5 English and German words come mostly from one planted topic."""
    en, de = model.get_topic_lists(k=5, language="en"), model.get_topic_lists(k=5, language="de")
    return float(np.mean([block(a) == block(b) for a, b in zip(en, de)]))


def measure(options: dict, seed: int, train, test, batch_size: int = 64, epochs: int = 60,
            topics_from: dict | None = None, first_batch_size: int | None = None) -> dict:
    """``topics_from``: the options of a first fit (same seed, size and epochs; batch
    ``first_batch_size``, by default ``batch_size``) whose topics this one keeps fixed
    (``M3LTM(topic_fit=...)``); its time is counted."""
    if topics_from is not None:
        options = {**options, "topic_fit": {**topics_from, "batch_size": first_batch_size or batch_size}}
    model = M3LTM(views=VIEWS, n_components=TOPICS, num_epochs=epochs, batch_size=batch_size, random_state=seed,
                  **options)
    start = time.perf_counter()
    model.fit(train, progress_bar=False)
    seconds = time.perf_counter() - start
    theta = {v: model.get_thetas(test, view=v, seed=seed) for v in VIEWS}
    pairs = {f"{a}>{b}": mrr(theta[a], theta[b]) for a, b in itertools.permutations(VIEWS, 2)}
    return {**pairs, "min": min(pairs.values()), "aligned": aligned_share(model),
            "peak": float(theta["en"].max(1).mean()), "seconds": seconds}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--batch-size", type=int, default=64, help="M3LTM's default: 32")
    parser.add_argument("--epochs", type=int, default=60, help="M3LTM's default: 100")
    parser.add_argument("--topics-from-paper", action="store_true",
                        help="each variant's networks train against the fixed topics of a first fit with "
                             "PAPER_TOPIC_FIT (M3LTM(topic_fit=...)), at --first-fit-batch-size")
    parser.add_argument("--first-fit-batch-size", type=int,
                        help="the first fit's batch with --topics-from-paper (default: --batch-size; "
                             "topic_fit='paper' uses 64)")
    parser.add_argument("--first-fit-contrastive", type=float,
                        help="the first fit's contrastive weight s with --topics-from-paper (default: "
                             "PAPER_TOPIC_FIT's; averaged over the batch, it weighs each tuple s / batch)")
    parser.add_argument("--topic-epochs", type=int,
                        help="with --topics-from-paper: the epochs in which the first fit's topics train on "
                             "(default: none, they stay fixed)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    first_fit = PAPER_TOPIC_FIT
    if args.first_fit_contrastive is not None:
        first_fit = {**first_fit, "loss_weights": {**first_fit["loss_weights"], "contrastive": args.first_fit_contrastive}}
    train, test = planted_data()
    print(f"chance MRR {np.mean(1.0 / np.arange(1, len(test) + 1)):.3f}", flush=True)
    for name in args.variants:
        for seed in args.seeds:
            options = VARIANTS[name] if args.topic_epochs is None else {**VARIANTS[name], "topic_epochs": args.topic_epochs}
            r = measure(options, seed, train, test, args.batch_size, args.epochs,
                        topics_from=first_fit if args.topics_from_paper else None,
                        first_batch_size=args.first_fit_batch_size)
            pairs = " ".join(f"{k} {v:.2f}" for k, v in r.items() if ">" in k)
            print(f"{name:30s} seed {seed}: MRR {pairs} | min {r['min']:.3f} | aligned {r['aligned']:.0%} | "
                  f"largest share {r['peak']:.3f} | {r['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
