"""How training cost grows with tuples and views, and inference speed.

Synthetic data of realistic density: ~30 word tokens per text over a 2,000-word vocabulary
(Multi30k's comparable texts after stop-word removal), Zipf-distributed words; random
embeddings of the offline encoders' sizes (384-d texts, 1280-d images).  Bags of words stay
sparse (CSR) on the host and on the device; training reads only the nonzero counts of each
batch (no dense bag-of-words matrix is ever built).

    python benchmarks/scaling.py                        # 1k, 10k, 100k, 1M tuples; 2-8 views
    python benchmarks/scaling.py --tuples 1000 10000 --views 2 3
    python benchmarks/scaling.py --pipeline 10000 100000 --images ../shared/data/multi30k/images

``--pipeline N...``: the whole pipeline, raw rows -> fitted model, for N synthetic tuples (two
languages of Zipf-distributed words as texts, and an image path per tuple cycling over the
real JPEG files in ``--images``), with fast callable encoders (a hashed random projection of
each text's words; each photo's header read and its file hashed), so the figures show the
package's own cost per stage: reading rows, preparing (tokenising, vocabularies, bags of
words, image checks, encoding), one training epoch, inference; time and peak memory.
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


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pipeline(n: int, images: list[str], seed: int = 0) -> None:
    """Raw rows -> prepared data -> fitted model -> topic distributions, timed per stage."""
    import hashlib

    from ctm_m3l import M3LDataPreparation

    rng = np.random.default_rng(seed)
    words = np.array([f"w{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{chr(97 + i // 676)}" for i in range(VOCABULARY)])
    ranks = np.arange(1, VOCABULARY + 1)
    zipf = (1 / ranks) / (1 / ranks).sum()
    stages = []

    def stage(name, start, extra=""):
        stages.append((name, time.perf_counter() - start, rss_mib(), peak_mib(), extra))

    start = time.perf_counter()
    rows = [{"id": i, "en": " ".join(words[rng.choice(VOCABULARY, TOKENS_PER_TEXT, p=zipf)]),
             "de": " ".join(words[rng.choice(VOCABULARY, TOKENS_PER_TEXT, p=zipf)]),
             "image": images[i % len(images)]} for i in range(n)]
    stage("rows", start)
    projection = np.random.default_rng(1).standard_normal((4096, 384)).astype(np.float32)

    def text_encoder(texts):
        out = np.zeros((len(texts), 384), np.float32)
        for i, text in enumerate(texts):
            buckets = [int.from_bytes(hashlib.blake2b(w.encode(), digest_size=4).digest(), "little") % 4096
                       for w in text.split()]
            out[i] = projection[buckets].mean(0)
        return out

    def image_encoder(paths):
        out = np.zeros((len(paths), 64), np.float32)
        for i, path in enumerate(paths):
            with open(path, "rb") as fh:
                out[i] = np.frombuffer(hashlib.sha512(fh.read()).digest(), dtype=np.uint8)[:64] / 255.0
        return out

    prep = M3LDataPreparation([TextView("en", encoder=text_encoder, stopwords=None),
                               TextView("de", encoder=text_encoder, stopwords=None),
                               ImageView("image", encoder=image_encoder)])
    start = time.perf_counter()
    data = prep.fit(rows)
    stage("prepare (tokenise, vocabularies, BoW, image headers, encode)", start, f"{data}")
    start = time.perf_counter()
    seconds, model = epoch_seconds(data, 64, "cpu")  # after a warm-up fit on 2,000 tuples
    stage("train one epoch (+ warm-up)", start, f"epoch {seconds:.1f} s, {n / seconds:,.0f} tuples/s")
    start = time.perf_counter()
    theta = model.get_thetas(data, view="image")
    stage("get_thetas (image view)", start, f"{len(theta) / (time.perf_counter() - start):,.0f} items/s")
    print(f"\nwhole pipeline, {n:,} tuples: stage | seconds | RSS after MiB | peak RSS so far MiB")
    for name, seconds, rss, peak, extra in stages:
        print(f"  {name} | {seconds:.1f} | {rss:,.0f} | {peak:,.0f}" + (f" | {extra}" if extra else ""), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pipeline", type=int, nargs="+", default=None,
                        help="only the whole pipeline, for these numbers of tuples")
    parser.add_argument("--images", default="../shared/data/multi30k/images",
                        help="folder of JPEG files the pipeline's image paths cycle over")
    parser.add_argument("--tuples", type=int, nargs="+", default=[1000, 10000, 100000, 1000000])
    parser.add_argument("--views", type=int, nargs="+", default=[2, 3, 5, 8])
    parser.add_argument("--views-tuples", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--inference-items", type=int, default=100000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.pipeline:
        from pathlib import Path

        images = sorted(str(p) for p in Path(args.images).glob("*.jpg"))
        if not images:
            parser.error(f"no .jpg files in {args.images}")
        for n in args.pipeline:
            pipeline(n, images)
        return
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
