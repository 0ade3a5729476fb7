"""CTM's own ZeroShotTM trained on CTMDataset vs BatchedCTMDataset (the baselines' dataset):
seconds per epoch, and whether the weights after two seeded epochs are the same.

    python benchmarks/ctm_dataset_speed.py --data ../shared/data/multi30k --rounds 2
"""
import argparse
import contextlib
import io
import time

import numpy as np
import torch
from contextualized_topic_models.datasets.dataset import CTMDataset
from contextualized_topic_models.models.ctm import ZeroShotTM

from ctm_m3l import M3LDataPreparation, TextView, load_multi30k
from ctm_m3l.baselines._ctm import BatchedCTMDataset


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=None)
    parser.add_argument("--n", type=int, default=29000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows = load_multi30k("train", root=args.data, limit=args.n)
    # Embedding values do not change the cost: random, with MiniLM's size.
    embeddings = np.random.default_rng(0).normal(size=(len(rows), 384)).astype(np.float32)
    data = M3LDataPreparation([TextView("en")]).fit(rows, custom_embeddings={"en": embeddings})
    vocabulary = dict(enumerate(data.vocabularies["en"]))

    def fit(dataset_class, epochs=1):
        torch.manual_seed(0)
        np.random.seed(0)
        model = ZeroShotTM(bow_size=len(vocabulary), contextual_size=384, n_components=100,
                           batch_size=args.batch_size, num_epochs=epochs, num_data_loader_workers=0)
        start = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):  # CTM's progress bar
            model.fit(dataset_class(embeddings, data.bow["en"], vocabulary), n_samples=1, do_train_predictions=False)
        return model, time.perf_counter() - start

    seconds = {CTMDataset: [], BatchedCTMDataset: []}
    for _ in range(args.rounds):
        for dataset_class in seconds:
            seconds[dataset_class].append(fit(dataset_class)[1])
    for dataset_class, values in seconds.items():
        print(f"{dataset_class.__name__}: {np.median(values):.2f} s/epoch (rounds {[round(v, 2) for v in values]})")
    first, second = fit(CTMDataset, 2)[0], fit(BatchedCTMDataset, 2)[0]
    same = all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()))
    print(f"same weights after 2 seeded epochs: {same}")


if __name__ == "__main__":
    main()
