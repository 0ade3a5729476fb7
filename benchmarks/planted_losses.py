"""M3L-Contrast's loss variants on planted data (the test suite's): what aligns?

800 training tuples generated from 5 shared topics (ctm_m3l.data.synthetic): English and German
texts with their own vocabularies, and for each view (en, de, image) embeddings from its own
random linear map of the true topic proportions, so no two views' embeddings are aligned.
Trains 50 epochs per loss and prints the MRR of retrieving each of 200 held-out tuples'
German text (and image) from its English text, with 20, 100 and 200 samples averaged per
topic distribution (chance 0.03), and the mean largest topic share of the English texts.

    python benchmarks/planted_losses.py          # ~1 minute per loss on one thread
"""
import numpy as np
import torch

from ctm_m3l import M3LTM
from ctm_m3l.data.synthetic import planted_datasets
from ctm_m3l.evaluation import mrr

VIEWS, K = ["en", "de", "image"], 5

GAUSSIAN = {"pair_kl_on": "posterior", "similarity": "dot"}
VARIANTS = {
    "default (theta KL, cosine, no prior KL)": {},
    "with prior KL": {"loss_weights": {"prior_kl": 1.0}},
    "dot InfoNCE": {"similarity": "dot"},
    "without pair KL": {"loss_weights": {"pair_kl": 0.0}},
    "without InfoNCE": {"loss_weights": {"contrastive": 0.0}},
    "Eq. 1 as printed (Gaussian KL, dot)": GAUSSIAN,
    "earlier default (Eq. 1 + prior KL)": {**GAUSSIAN, "loss_weights": {"prior_kl": 1.0}},
    "Gaussian KL without InfoNCE": {**GAUSSIAN, "loss_weights": {"prior_kl": 1.0, "contrastive": 0.0}},
}


def main():
    torch.set_num_threads(1)
    _, train, test = planted_datasets(n_topics=K)
    print(f"chance MRR {np.mean(1.0 / np.arange(1, len(test) + 1)):.3f}", flush=True)
    for name, options in VARIANTS.items():
        model = M3LTM(views=VIEWS, n_components=K, num_epochs=50, random_state=0, **options)
        model.fit(train, progress_bar=False)
        cells = []
        for n_samples in (20, 100, 200):
            theta = {v: model.get_thetas(test, view=v, n_samples=n_samples, seed=0) for v in VIEWS}
            cells.append(f"{mrr(theta['en'], theta['de']):.3f} / {mrr(theta['en'], theta['image']):.3f}")
        print(f"{name:42s} en->de / en->image MRR with 20, 100, 200 samples: {' | '.join(cells)}; "
              f"largest topic share {theta['en'].max(1).mean():.3f}", flush=True)


if __name__ == "__main__":
    main()
