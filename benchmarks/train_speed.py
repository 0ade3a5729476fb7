"""Per-epoch training time: CTM's own ZeroShotTM on one view vs M3LTM on three views.

Same Multi30k tuples (real bags of words over 2,000-word en/de vocabularies), 100 topics.
Embedding *values* do not change the cost, so embeddings are random with the sizes of the
offline encoders (384-d texts, 1280-d images), every tuple given an image (the heaviest case).

Shared machines drift in speed by tens of percent over minutes, so the two models' epochs
alternate (CTM, M3LTM, CTM, M3LTM...) after a warm-up epoch each, and the ratio printed is the
median of the per-round ratios.

CTM runs with ``num_data_loader_workers=0``, its fastest setting on a 2-core machine (its
default, one worker process per CPU, is slower there); ``--ctm-workers`` sets it.

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
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="leave out M3LTM(torch_compile=True)")
    parser.add_argument("--ctm-workers", type=int, default=0,
                        help="CTM's num_data_loader_workers: 0 (default here), its fastest setting on this "
                             "2-core machine; CTM's own default is the number of CPUs")
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
    print(f"{data}; device {args.device}; torch threads {torch.get_num_threads()}; "
          f"CTM data loader workers {args.ctm_workers}")
    ctm_data = CTMDataset(X_contextual=emb["en"].astype(np.float32), X_bow=data.bow["en"],
                          idx2token=dict(enumerate(data.vocabularies["en"])))
    for batch_size in args.batch_size:
        ctm = ZeroShotTM(bow_size=len(data.vocabularies["en"]), contextual_size=384, n_components=100,
                         batch_size=batch_size, num_epochs=1, num_data_loader_workers=args.ctm_workers)
        ctm.device = torch.device(args.device)
        ctm.model.to(ctm.device)
        models = {"M3LTM": M3LTM(views=["en", "de", "image"], n_components=100, batch_size=batch_size,
                                 num_epochs=1, device=args.device, random_state=0)}
        if args.compile:
            models["M3LTM compiled"] = M3LTM(views=["en", "de", "image"], n_components=100, batch_size=batch_size,
                                             num_epochs=1, device=args.device, random_state=0, torch_compile=True)
        epochs = {"CTM": lambda ctm=ctm: ctm.fit(ctm_data, n_samples=1, do_train_predictions=False)}
        for name, model in models.items():
            epochs[name] = lambda model=model: model.fit(data, progress_bar=False)
        for name, epoch in epochs.items():  # warm-up (and, compiled, the one-off compilation)
            print(f"batch {batch_size}: {name} warm-up epoch {timed(epoch):.1f} s", flush=True)
        rounds = [{name: timed(epoch) for name, epoch in epochs.items()} for _ in range(args.rounds)]
        print(f"batch {batch_size}: rounds (s) {[{k: round(v, 2) for k, v in r.items()} for r in rounds]}")
        ctm_s = float(np.median([r["CTM"] for r in rounds]))
        line = [f"batch {batch_size}: CTM ZeroShotTM 1 view {ctm_s:.2f} s/epoch"]
        for name in models:
            seconds = float(np.median([r[name] for r in rounds]))
            ratios = [r[name] / r["CTM"] for r in rounds]
            line.append(f"{name} 3 views {seconds:.2f} s/epoch, ratio {float(np.median(ratios)):.2f} "
                        f"(rounds {min(ratios):.2f}-{max(ratios):.2f}), {n / seconds:,.0f} tuples/s")
        print(" | ".join(line) + " (ratios: median of rounds)", flush=True)
    print(f"peak memory (process RSS): {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
