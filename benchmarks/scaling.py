"""How training cost grows with tuples and views, and inference speed.

Synthetic data of realistic density: ~30 word tokens per text over a 2,000-word vocabulary
(Multi30k's comparable texts after stop-word removal), Zipf-distributed words; random
embeddings of the offline encoders' sizes (384-d texts, 1280-d images).  Bags of words stay
sparse (CSR) on the host and on the device; training reads only the nonzero counts of each
batch (no dense bag-of-words matrix is ever built).

    python benchmarks/scaling.py                        # 1k, 10k, 100k, 1M tuples; 2-8 views
    python benchmarks/scaling.py --tuples 1000 10000 --views 2 3
"""
import argparse
import gc
import resource
import time

import numpy as np
import scipy.sparse as sp
import torch

from ctm_m3l import M3LTM, ImageView, MultiViewDataset, TextView

VOCABULARY = 2000
TOKENS_PER_TEXT = 30


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def synthetic(n: int, n_languages: int, n_images: int, seed: int = 0) -> MultiViewDataset:
    rng = np.random.default_rng(seed)
    views, embeddings, bow, vocabularies = [], {}, {}, {}
    ranks = np.arange(1, VOCABULARY + 1)
    zipf = (1 / ranks) / (1 / ranks).sum()
    for lang in range(n_languages):
        name = f"l{lang}"
        views.append(TextView(name, stopwords=None))
        lengths = rng.poisson(TOKENS_PER_TEXT, size=n)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        indices = rng.choice(VOCABULARY, size=int(indptr[-1]), p=zipf)
        matrix = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(n, VOCABULARY))
        matrix.sum_duplicates()
        bow[name] = matrix
        vocabularies[name] = [f"w{i}" for i in range(VOCABULARY)]
        embeddings[name] = rng.standard_normal((n, 384), dtype=np.float32)
    for image in range(n_images):
        name = f"image{image}"
        views.append(ImageView(name))
        embeddings[name] = rng.standard_normal((n, 1280), dtype=np.float32)
    mask = np.ones((n, len(views)), dtype=bool)
    return MultiViewDataset(views, embeddings, bow, vocabularies, mask)


def epoch_seconds(data: MultiViewDataset, batch_size: int, device: str) -> float:
    model = M3LTM(views=data.view_names, n_components=100, batch_size=batch_size, num_epochs=1,
                  device=device, random_state=0)
    model.fit(data.subset(np.arange(min(len(data), 2000))), progress_bar=False)  # warm-up
    start = time.perf_counter()
    model.fit(data, progress_bar=False)
    return time.perf_counter() - start, model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tuples", type=int, nargs="+", default=[1000, 10000, 100000, 1000000])
    parser.add_argument("--views", type=int, nargs="+", default=[2, 3, 5, 8])
    parser.add_argument("--views-tuples", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--inference-items", type=int, default=100000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, batch {args.batch_size}, 100 topics")

    print("\n3 views (2 languages + 1 image): tuples | build s | epoch s | tuples/s | RSS after MiB | dense BoW would be MiB")
    for n in args.tuples:
        gc.collect()
        start = time.perf_counter()
        data = synthetic(n, 2, 1)
        built = time.perf_counter() - start
        seconds, _ = epoch_seconds(data, args.batch_size, args.device)
        dense = 2 * n * VOCABULARY * 4 / 2**20
        print(f"{n:>9,} | {built:6.1f} | {seconds:8.2f} | {n / seconds:9,.0f} | {rss_mib():9,.0f} | {dense:11,.0f}", flush=True)
        del data
    print(f"\n{args.views_tuples:,} tuples, V views (V-1 languages + 1 image): views | epoch s | per view s")
    for v in args.views:
        data = synthetic(args.views_tuples, v - 1, 1)
        seconds, model = epoch_seconds(data, args.batch_size, args.device)
        print(f"{v:>2} | {seconds:7.2f} | {seconds / v:6.3f}", flush=True)

    data = synthetic(args.inference_items, 2, 1)
    model = M3LTM(views=data.view_names, n_components=100, num_epochs=1, device=args.device, random_state=0)
    model.fit(data.subset(np.arange(2000)), progress_bar=False)
    for view in ("l0", "image0"):
        start = time.perf_counter()
        theta = model.get_thetas(data, view=view, n_samples=20)
        seconds = time.perf_counter() - start
        print(f"\nget_thetas, {len(theta):,} items of view {view}, 20 samples: {seconds:.2f} s "
              f"({len(theta) / seconds:,.0f} items/s)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
