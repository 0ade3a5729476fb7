"""PLTM Gibbs throughput at the paper's scale, beside tomotopy's LDA on the same tokens.

20,000 Multi30k tuples x 2 languages (2,000-word vocabularies), 100 topics.  Prints tokens/s
per iteration and the time 1,000 iterations would take (the paper: 3 hours on one Xeon).

    python benchmarks/pltm_speed.py --data ../shared/data/multi30k --iterations 50
"""
import argparse
import time

import numpy as np

from ctm_m3l import M3LDataPreparation, TextView, load_multi30k
from ctm_m3l.baselines import PLTM


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=None)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args()
    rows = load_multi30k("train", root=args.data, limit=args.n)
    prep = M3LDataPreparation([TextView("en"), TextView("de")])
    data = prep.fit(rows, custom_embeddings={"en": np.zeros((len(rows), 1)), "de": np.zeros((len(rows), 1))})
    keep = np.flatnonzero((data.bow["en"].sum(1).A1 + data.bow["de"].sum(1).A1) > 0)
    data = data.subset(keep)
    model = PLTM(["en", "de"], n_components=args.topics, n_iterations=1, random_state=0)
    model.fit(data.subset(np.arange(100)))  # compile the numba kernels
    model = PLTM(["en", "de"], n_components=args.topics, n_iterations=args.iterations, random_state=0)
    start = time.perf_counter()
    model.fit(data)
    seconds = time.perf_counter() - start
    tokens = model.n_tokens
    print(f"{len(data):,} tuples, {tokens:,} tokens (en+de), {args.topics} topics, {args.iterations} iterations")
    rate = tokens * args.iterations / seconds
    print(f"ctm-m3l PLTM (numba, 1 thread): {rate / 1e6:.2f} M tokens/s per iteration; "
          f"1,000 iterations ~ {1000 * tokens / rate / 60:.1f} min")

    import tomotopy as tp

    for workers in (1, 2):
        lda = tp.LDAModel(k=args.topics, alpha=50.0 / args.topics, eta=0.01, seed=0)
        for d in range(len(data)):
            words = []
            for lang in ("en", "de"):
                row = data.bow[lang][d]
                vocab = data.vocabularies[lang]
                words += [f"{lang}:{vocab[j]}" for j, c in zip(row.indices, row.data) for _ in range(int(c))]
            lda.add_doc(words)
        lda.train(0, workers=workers)
        start = time.perf_counter()
        lda.train(args.iterations, workers=workers)
        seconds = time.perf_counter() - start
        rate = tokens * args.iterations / seconds
        print(f"tomotopy {tp.__version__} LDA ({tp.isa}, {workers} worker(s)), same tokens: "
              f"{rate / 1e6:.2f} M tokens/s per iteration; 1,000 iterations ~ {1000 * tokens / rate / 60:.1f} min")


if __name__ == "__main__":
    main()
