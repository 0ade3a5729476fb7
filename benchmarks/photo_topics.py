"""What an image's top topics say: M3L-Contrast on Multi30k en + de + photo, photos of `val`.

Trains (or loads, with ``--model``) an ``M3LTM`` on the `train` tuples that have a photo
(6,993; English and German with MiniLM, photos with EfficientNet-Lite0), then prints, for the
`val` photos asked for (``--photos``, by index among val's photos, or a random sample), the
photo's file, its English descriptions, and its top topics from the image network alone
with their words in English and German (``get_item_topics(view="image", language=...)``).
Look at the photos themselves to judge whether the words describe them.

    python benchmarks/photo_topics.py --data ../shared/data/multi30k --cache-dir CACHE \
        --save photo-model --sample 12
    python benchmarks/photo_topics.py --data ../shared/data/multi30k --cache-dir CACHE \
        --model photo-model --photos 3 17 41

Settings not given keep ``M3LTM``'s defaults (100 topics, 100 epochs).
"""
import argparse
import json
import time

import numpy as np

from ctm_m3l import M3LTM, ImageView, M3LDataPreparation, TextView, load_multi30k


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="Multi30k root (default: $CTM_M3L_DATA)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--model", default=None, help="a saved model folder to load instead of training")
    parser.add_argument("--save", default=None, help="save the trained model (and its preparation) here")
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-compile", action="store_true")
    parser.add_argument("--photos", type=int, nargs="*", default=None, help="indices among val's photos")
    parser.add_argument("--sample", type=int, default=6, help="random val photos to show (without --photos)")
    parser.add_argument("--n-topics", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the examples to this JSON file")
    args = parser.parse_args(argv)

    val_rows = load_multi30k("val", root=args.data, images_only=True)
    if args.model:
        model = M3LTM.load(args.model)
        prep = M3LDataPreparation.load(args.model)
    else:
        views = [TextView("en", encoder="offline:minilm"), TextView("de", encoder="offline:minilm"),
                 ImageView("image", encoder="offline:efficientnet-lite0")]
        prep = M3LDataPreparation(views, cache_dir=args.cache_dir)
        train = prep.fit(load_multi30k("train", root=args.data, images_only=True))
        model = M3LTM(views=["en", "de", "image"], n_components=args.topics, num_epochs=args.epochs,
                      random_state=args.seed, torch_compile=args.torch_compile)
        start = time.perf_counter()
        model.fit(train)
        print(f"trained in {time.perf_counter() - start:.0f} s")
        if args.save:
            model.save(args.save, preparation=prep)
    val = prep.transform(val_rows)
    chosen = args.photos if args.photos else \
        sorted(np.random.default_rng(args.seed).choice(len(val_rows), size=min(args.sample, len(val_rows)),
                                                        replace=False).tolist())
    topics = {lang: model.get_item_topics(val, view="image", language=lang, n_topics=args.n_topics, k=8, seed=0)
              for lang in ("en", "de")}
    examples = []
    for i in chosen:
        row = val_rows[i]
        example = {"index": i, "id": row["id"], "photo": row["image"], "description": row["en"],
                   "topics": [{"topic": t, "share": round(p, 3), "en": en_words, "de": de_words}
                              for (t, p, en_words), (_, _, de_words) in zip(topics["en"][i], topics["de"][i])]}
        examples.append(example)
        print(f"\n[{i}] {row['image']}\n    described: {example['description'][:160]}")
        for topic in example["topics"]:
            print(f"    topic {topic['topic']:3d} ({topic['share']:.2f}): en {' '.join(topic['en'])} | "
                  f"de {' '.join(topic['de'])}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(examples, fh, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
