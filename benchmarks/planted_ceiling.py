"""The best MRR any model can reach on the planted tuples: Bayes-optimal retrieval.

The planted tuples of ``topic_space_planted.py`` (8 topics, 1,500 training / 300 held-out
tuples, seed 0) are drawn from a known generator, so for each held-out pair of views the
ranking that maximises expected MRR is known: rank each query's targets by p(query | target),
with theta integrated over the generator's Dirichlet prior (Monte Carlo over ``--samples``
draws: too few make the figure lower, never higher on average, so it is a ceiling estimated
from below) and every view's likelihood exactly as generated (a language's words and its
embedding, the image's embedding). It also prints the retrieval of a perfect point estimate: each
item's exact posterior mean of theta, targets ranked by JSD, as the models' thetas are ranked
(what a model could reach if its topic proportions were the true posterior means). Set a
model's MRR beside them:

    python benchmarks/planted_ceiling.py                      # every ordered view pair
    python benchmarks/planted_ceiling.py --samples 50000
"""
import argparse
import itertools
import json
import time

import numpy as np
from scipy.special import softmax

from ctm_m3l.data.synthetic import bayes_optimal_mrr, planted_log_likelihoods, planted_topic_counts, planted_tuples
from ctm_m3l.evaluation import mrr

VIEWS = ["en", "de", "image"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20000, help="Dirichlet draws theta is integrated over")
    parser.add_argument("--topics", type=int, default=8)
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0, help="the data's seed (topic_space_planted.py: 0)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows, embeddings, _ = planted_tuples(args.train + args.test, n_topics=args.topics, seed=args.seed)
    rows, embeddings = rows[args.train:], {v: e[args.train:] for v, e in embeddings.items()}
    samples = np.random.default_rng(7).dirichlet([0.1] * args.topics, size=args.samples)
    log_lik = {v: planted_log_likelihoods(rows, embeddings, v, samples) for v in VIEWS}
    words_only = {v: planted_log_likelihoods(rows, embeddings, v, samples, with_embedding=False) for v in ("en", "de")}
    # The heuristic the notes called a ceiling before: each text's planted-word counts, smoothed.
    counts = {v: planted_topic_counts(rows, v, args.topics) + 0.1 for v in ("en", "de")}
    counts = {v: c / c.sum(1, keepdims=True) for v, c in counts.items()}
    result = {f"{a}>{b}": bayes_optimal_mrr(log_lik[a], log_lik[b]) for a, b in itertools.permutations(VIEWS, 2)}
    # Retrieval as the models retrieve: one point estimate per item (here the exact posterior
    # mean of theta under the generator), targets ranked by JSD.
    means = {v: softmax(log_lik[v], axis=1) @ samples for v in VIEWS}
    result.update({f"{a}>{b}, posterior means (JSD)": mrr(means[a], means[b]) for a, b in itertools.permutations(VIEWS, 2)})
    result["en>de, words only"] = bayes_optimal_mrr(words_only["en"], words_only["de"])
    result["en>de, smoothed word counts (JSD)"] = mrr(counts["en"], counts["de"])
    for name, value in result.items():
        print(f"{name}: {value:.3f}")
    print(f"chance {np.mean(1.0 / np.arange(1, len(rows) + 1)):.3f}; {args.samples} draws, "
          f"{time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"samples": args.samples, "topics": args.topics, "seed": args.seed, "mrr": result}, file,
                      indent=1)


if __name__ == "__main__":
    main()
