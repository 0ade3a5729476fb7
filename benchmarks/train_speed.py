"""Per-epoch training time: CTM's own ZeroShotTM on one view vs M3LTM on three views.

Same Multi30k tuples (real bags of words over 2,000-word en/de vocabularies), 100 topics.
Embedding *values* do not change the cost, so embeddings are random with the sizes of the
offline encoders (384-d texts, 1280-d images), every tuple given an image (the heaviest case).

Shared machines drift in speed by tens of percent over minutes, so the two models' epochs
alternate (CTM, M3LTM, CTM, M3LTM...) after a warm-up epoch each, and the ratio printed is the
median of the per-round ratios.

    python benchmarks/train_speed.py --data ../shared/data/multi30k --batch-size 64 32 --rounds 5
"""
import argparse
import resource
import time

import numpy as np
import torch
from contextualized_topic_models.datasets.dataset import CTMDataset
from contextualized_topic_models.models.ctm import ZeroShotTM

from ctm_m3l import M3LTM, ImageView, M3LDataPreparation, TextView, load_multi30k


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fit_one_epoch):
    start = time.perf_counter()
    fit_one_epoch()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=None)
    parser.add_argument("--n", type=int, default=29000)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[64, 32])
    parser.add_argument("--rounds", type=int, default=5, help="alternating CTM / M3LTM epoch pairs")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = load_multi30k("train", root=args.data, limit=args.n)
    n = len(rows)
    rng = np.random.default_rng(0)
    emb = {"en": rng.normal(size=(n, 384)), "de": rng.normal(size=(n, 384)), "image": rng.normal(size=(n, 1280))}
    for i, r in enumerate(rows):
        r["image"] = f"synthetic_{i}.jpg"
    prep = M3LDataPreparation([TextView("en"), TextView("de"), ImageView("image")])
    data = prep.fit(rows, custom_embeddings=emb)
    print(f"{data}; device {args.device}; torch threads {torch.get_num_threads()}")
    ctm_data = CTMDataset(X_contextual=emb["en"].astype(np.float32), X_bow=data.bow["en"],
                          idx2token=dict(enumerate(data.vocabularies["en"])))
    for batch_size in args.batch_size:
        ctm = ZeroShotTM(bow_size=len(data.vocabularies["en"]), contextual_size=384, n_components=100,
                         batch_size=batch_size, num_epochs=1, num_data_loader_workers=0)
        ctm.device = torch.device(args.device)
        ctm.model.to(ctm.device)
        m3l = M3LTM(views=["en", "de", "image"], n_components=100, batch_size=batch_size, num_epochs=1,
                    device=args.device, random_state=0)
        ctm_epoch = lambda: ctm.fit(ctm_data, n_samples=1, do_train_predictions=False)  # noqa: E731
        m3l_epoch = lambda: m3l.fit(data, progress_bar=False)  # noqa: E731
        ctm_epoch(), m3l_epoch()  # warm-up
        rounds = [(timed(ctm_epoch), timed(m3l_epoch)) for _ in range(args.rounds)]
        ctm_s = float(np.median([c for c, _ in rounds]))
        m3l_s = float(np.median([m for _, m in rounds]))
        ratio = float(np.median([m / c for c, m in rounds]))
        print(f"batch {batch_size}: rounds (CTM s, M3LTM s) {[(round(c, 2), round(m, 2)) for c, m in rounds]}")
        print(f"batch {batch_size}: CTM ZeroShotTM 1 view {ctm_s:.2f} s/epoch | M3LTM 3 views {m3l_s:.2f} s/epoch "
              f"| ratio {ratio:.2f} (median of rounds) | M3LTM {n / m3l_s:,.0f} tuples/s", flush=True)
    print(f"peak memory (process RSS): {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
