"""Fit an en+de+image M3LTM on Multi30k and draw the topic space of held-out tuples (paper
Figure 2) as a PNG and an interactive HTML page, and the aligned topics as a table.

    python examples/plot_topic_space.py --data ../shared/data/multi30k --out plots/
"""
import argparse
from pathlib import Path

from ctm_m3l import M3LTM, ImageView, M3LDataPreparation, TextView, load_multi30k
from ctm_m3l.figures import topic_space_figure, topics_figure, write_page
from ctm_m3l.plots import plot_topic_space, plot_topic_table, topic_space, topic_table


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", default="plots")
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--n-components", type=int, default=50)
    parser.add_argument("--num-epochs", type=int, default=20)
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "ctm_m3l" / "embeddings"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prep = M3LDataPreparation([TextView("en", encoder="offline:minilm"), TextView("de", encoder="offline:minilm"),
                               ImageView("image", encoder="offline:efficientnet-lite0")], cache_dir=args.cache_dir)
    train = prep.fit(load_multi30k("train", root=args.data, limit=args.n_train))
    test_rows = load_multi30k("val", root=args.data, images_only=True)
    test = prep.transform(test_rows)
    model = M3LTM(views=["en", "de", "image"], n_components=args.n_components, num_epochs=args.num_epochs,
                  random_state=0).fit(train)
    thetas = {v: model.get_thetas(test, view=v, seed=0) for v in ["en", "de", "image"]}
    space = topic_space(thetas, ids=test.ids)
    plot_topic_space(space, out / "topic_space.png", title="M3L-Contrast: held-out Multi30k tuples")
    items = {v: [r.get(v) for r in test_rows] for v in ["en", "de", "image"]}
    words = {lang: model.get_topic_lists(8, language=lang) for lang in model.language_views}
    figure = topic_space_figure(space, thetas=thetas, items=items, topic_words=words, image_views=["image"])
    write_page(out / "topic_space.html", figure, [topics_figure(words, topics=range(12))],
               image_paths=[p for p in items["image"] if p])
    table = topic_table(model, k=8)
    plot_topic_table(table, out / "topics.png", topics=range(12))
    print(table.head(12).to_string())
    print(f"wrote {out / 'topic_space.png'}, {out / 'topic_space.html'}, {out / 'topics.png'}")


if __name__ == "__main__":
    main()
