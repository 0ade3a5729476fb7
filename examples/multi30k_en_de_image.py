"""Fit an en+de+image M3LTM on Multi30k tuples with the offline encoders, then show a few
held-out images with their top topics in English and in German.

    python examples/multi30k_en_de_image.py --data ../shared/data/multi30k --n-train 5000

The data root may also come from the CTM_M3L_DATA environment variable.  Encoders run on
CPU offline: all-MiniLM-L6-v2 (English; used unaligned for German too, which M3L-Contrast
does not need aligned) and ImageNet EfficientNet-Lite0 for the photos.  With network, swap in
the paper's encoders: TextView("de", encoder="paraphrase-multilingual-mpnet-base-v2"),
ImageView("image", encoder="clip-ViT-B-32").
"""
import argparse
import time
from pathlib import Path

from ctm_m3l import M3LTM, ImageView, M3LDataPreparation, TextView, load_multi30k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="Multi30k root (default: $CTM_M3L_DATA)")
    parser.add_argument("--n-train", type=int, default=5000, help="training tuples (default 5000)")
    parser.add_argument("--n-components", type=int, default=50)
    parser.add_argument("--num-epochs", type=int, default=20)
    parser.add_argument("--n-images", type=int, default=4, help="held-out images to describe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "ctm_m3l" / "embeddings"))
    args = parser.parse_args()

    train_rows = load_multi30k("train", root=args.data, limit=args.n_train)
    test_rows = load_multi30k("val", root=args.data, images_only=True, limit=args.n_images)
    prep = M3LDataPreparation([
        TextView("en", encoder="offline:minilm"),
        TextView("de", encoder="offline:minilm"),
        ImageView("image", encoder="offline:efficientnet-lite0"),
    ], cache_dir=args.cache_dir, show_progress_bar=True)
    start = time.perf_counter()
    train = prep.fit(train_rows)
    print(f"{train} prepared in {time.perf_counter() - start:.0f}s")

    model = M3LTM(views=["en", "de", "image"], n_components=args.n_components,
                  num_epochs=args.num_epochs, random_state=args.seed)
    model.fit(train)

    images = prep.transform([r["image"] for r in test_rows], view="image")
    english = model.get_item_topics(images, view="image", language="en", n_topics=2, k=6, seed=0)
    german = model.get_item_topics(images, view="image", language="de", n_topics=2, k=6, seed=0)
    for row, en_topics, de_topics in zip(test_rows, english, german):
        print(f"\n{Path(row['image']).name}: {row['en'][:100]}...")
        for (topic, prob, en_words), (_, _, de_words) in zip(en_topics, de_topics):
            print(f"  topic {topic:2d} ({prob:.2f})  en: {' '.join(en_words)}")
            print(f"  {'':15}de: {' '.join(de_words)}")


if __name__ == "__main__":
    main()
