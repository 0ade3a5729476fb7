"""What an image network's posterior looks like after training, per layout (issue #24's photo
probes): en-de-photo at full scale, one M3L-Contrast variant, a few epochs; prints retrieval,
coherence and, per view, the spread of log sigma^2 over `val` (mean, 10th / 90th percentile,
share of components at the cap) and appends one JSON record to ``--ledger``.

    python benchmarks/image_layout_probe.py --data ../shared/data/multi30k --cache-dir CACHE \\
        --variant "mu-only norm, InfoNCE summed, combined input, s=100, image ctm-shifted norm" --epochs 10
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from topic_space_multi30k import VARIANTS, photo_views  # noqa: E402

from ctm_m3l import M3LTM, M3LDataPreparation, load_multi30k  # noqa: E402
from ctm_m3l.evaluation import evaluate  # noqa: E402
from ctm_m3l.networks import LOGVAR_MAX  # noqa: E402

VIEWS = ("en", "de", "image")
KEYS = ("mrr_en_de", "uap_en_image", "uap_de_image", "npmi_en", "npmi_de", "diversity_en")


def log_variance_spread(model, dataset) -> dict:
    """Per view, over the items that have it: mean, 10th and 90th percentile of log sigma^2,
    and the share of components at the cap."""
    spread = {}
    model.model.eval()
    with torch.no_grad():
        for index, view in enumerate(VIEWS):
            has = dataset.has_view(view)
            x = np.asarray(dataset.embeddings[view][has], dtype=np.float32)
            if model.inference_input == "combined" and view in model.vocabularies:
                x = np.hstack([x, dataset.bow[view][has].toarray().astype(np.float32)])
            _, logvar = model.model.posterior(index, torch.from_numpy(x).to(model.device))
            spread[view] = {"mean": round(float(logvar.mean()), 2), "p10": round(float(logvar.quantile(0.1)), 2),
                            "p90": round(float(logvar.quantile(0.9)), 2),
                            "at_cap": round(float((logvar >= LOGVAR_MAX - 1e-3).float().mean()), 3)}
    return spread


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="Multi30k root (default: $CTM_M3L_DATA)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--variant", required=True, choices=[v for v in VARIANTS if v != "defaults"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ledger", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    prep = M3LDataPreparation(photo_views(), cache_dir=args.cache_dir)
    train = prep.fit(load_multi30k("train", root=args.data))
    val = prep.transform(load_multi30k("val", root=args.data))
    start = time.perf_counter()
    model = M3LTM(views=list(VIEWS), n_components=100, num_epochs=args.epochs, random_state=args.seed,
                  torch_compile=True, **VARIANTS[args.variant])
    model.fit(train, progress_bar=False)
    metrics = evaluate(model, train, val, seed=args.seed)
    image_theta = model.get_thetas(val, view="image", seed=args.seed)[val.has_view("image")]
    record = {"variant": args.variant, "epochs": args.epochs, "seed": args.seed,
              **{key: round(metrics[key], 4) for key in KEYS},
              "largest_share_image": round(float(image_theta.max(axis=1).mean()), 3),
              "log_variance": log_variance_spread(model, val), "seconds": round(time.perf_counter() - start)}
    print(json.dumps(record), flush=True)
    if args.ledger is not None:
        with open(args.ledger, "a") as handle:
            handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
