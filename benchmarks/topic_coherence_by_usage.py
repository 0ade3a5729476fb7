"""Where a model's coherence goes: each topic's NPMI against how much the training texts use it.

Loads a saved model (``model.save(folder, preparation=prep)`` or ``ctm-m3l fit``) with its
preparation, prepares Multi30k `train` with it (embeddings from ``--cache-dir`` where they are
cached), and prints for every language: the mean NPMI (as ``evaluate`` reports it), the mean
NPMI of each quarter of the topics ordered by their usage (the mean topic share over the
language's training texts, from that language's network alone), the usage-weighted mean, how
many topics are no text's largest, and the least coherent topics with their usage and words.

    python benchmarks/topic_coherence_by_usage.py --data ../shared/data/multi30k \
        --cache-dir CACHE --model MODEL [--json OUT.json]

``--layout parallel4`` reads the four-language translations instead of the comparable tuples.
"""
import argparse
import json

import numpy as np

from ctm_m3l import M3LTM, M3LDataPreparation, load_multi30k
from ctm_m3l.evaluation import npmi_per_topic


def coherence_by_usage(model, train, language: str, topk: int = 10, quarters: int = 4) -> dict:
    """Per-topic NPMI and usage of ``language``'s topics over ``train``, and their summary."""
    topics = model.get_topic_lists(topk, language=language)
    texts = [d.split() for d in train.documents[language] if d]
    per_topic = npmi_per_topic(topics, texts, topk=topk)
    theta = model.get_thetas(train, view=language, seed=0)
    usage = theta.mean(axis=0)
    largest = np.bincount(theta.argmax(axis=1), minlength=len(usage))
    by_usage = np.array_split(np.argsort(usage), quarters)
    return {"npmi": float(per_topic.mean()),
            "npmi_by_usage_quarter": [float(per_topic[q].mean()) for q in by_usage],
            "usage_by_quarter": [float(usage[q].mean()) for q in by_usage],
            "npmi_usage_weighted": float((usage * per_topic).sum() / usage.sum()),
            "correlation": float(np.corrcoef(usage, per_topic)[0, 1]),
            "never_largest": int((largest == 0).sum()),
            "topics": [{"topic": int(i), "npmi": float(per_topic[i]), "usage": float(usage[i]), "words": topics[i]}
                       for i in range(len(topics))]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="Multi30k root (default: $CTM_M3L_DATA)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--model", required=True, help="a saved model folder, saved with its preparation")
    parser.add_argument("--layout", default="comparable", choices=("comparable", "parallel4"))
    parser.add_argument("--worst", type=int, default=5, help="least coherent topics to print per language")
    parser.add_argument("--json", default=None, help="also write every topic's NPMI, usage and words here")
    args = parser.parse_args(argv)

    model = M3LTM.load(args.model)
    prep = M3LDataPreparation.load(args.model, cache_dir=args.cache_dir)
    train = prep.transform(load_multi30k("train", root=args.data, layout=args.layout))
    results = {}
    for language in model.language_views:
        r = results[language] = coherence_by_usage(model, train, language)
        quarters = " / ".join(f"{v:.3f}" for v in r["npmi_by_usage_quarter"])
        print(f"{language}: NPMI {r['npmi']:.3f}; by usage quarter, least used first: {quarters} "
              f"(mean usage {' / '.join(f'{u:.4f}' for u in r['usage_by_quarter'])}); usage-weighted "
              f"{r['npmi_usage_weighted']:.3f}; correlation of usage and NPMI {r['correlation']:.2f}; "
              f"{r['never_largest']} topics no text's largest")
        for t in sorted(r["topics"], key=lambda t: t["npmi"])[:args.worst]:
            print(f"    topic {t['topic']:3d}  NPMI {t['npmi']:+.3f}  usage {t['usage']:.4f}  {' '.join(t['words'])}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
