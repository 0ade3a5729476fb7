"""Seconds per epoch of a fit whose topics are fixed (``topic_epochs=0``, as ``topic_fit``'s
second fit): the topic-word gradient skipped (what the loop does) against computed and then
dropped (what it did before, and still does under DDP), on Multi30k en-de.

    python benchmarks/fixed_topics_speed.py --data ../shared/data/multi30k --cache-dir CACHE

Both ways give the same weights to the last bit (eager); the difference is the decoders'
K x W gradient per language.  Defaults: 29,000 tuples, 100 topics, one hidden layer of 200,
2 epochs per measurement, 2 rounds, one thread.
"""
import argparse
import time

import torch

import ctm_m3l.training.loop as loop
from ctm_m3l import M3LTM, M3LDataPreparation, TextView, load_multi30k


def dropping_gradient(run_epoch):
    """``FitLoop.run_epoch`` as before: the topics' gradient computed, then dropped."""
    def run(self, data, generator, train):
        words = self.estimator.model.topic_words
        words.requires_grad_ = lambda flag=True: words  # the loop's switch made a no-op
        try:
            return run_epoch(self, data, generator, train)
        finally:
            del words.requires_grad_
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the Multi30k folder")
    parser.add_argument("--cache-dir", default=None, help="the embedding cache (else MiniLM encodes)")
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=200)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    prep = M3LDataPreparation([TextView("en", encoder="offline:minilm"), TextView("de", encoder="offline:minilm")],
                              cache_dir=args.cache_dir)
    train = prep.fit(load_multi30k("train", root=args.data, layout="comparable", limit=args.n_train))
    source = M3LTM(["en", "de"], num_epochs=0, random_state=0).fit(train, progress_bar=False)
    skip = loop.FitLoop.run_epoch
    for _ in range(args.rounds):
        for name, run_epoch in (("skipped", skip), ("dropped", dropping_gradient(skip))):
            loop.FitLoop.run_epoch = run_epoch
            model = M3LTM(["en", "de"], num_epochs=args.epochs, random_state=0, topic_epochs=0,
                          hidden_sizes=(args.hidden,))
            start = time.perf_counter()
            try:
                model.fit(train, progress_bar=False, topics_from=source)
            finally:
                loop.FitLoop.run_epoch = skip
            print(f"topic gradient {name}: {(time.perf_counter() - start) / args.epochs:.1f} s per epoch "
                  f"({len(train)} tuples)", flush=True)


if __name__ == "__main__":
    main()
