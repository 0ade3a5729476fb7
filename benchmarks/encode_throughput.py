"""Encoding throughput (items/s) of the offline encoders on CPU, on real Multi30k data.

    python benchmarks/encode_throughput.py --data ../shared/data/multi30k --n 256
"""
import argparse
import time

import torch

from ctm_m3l import load_multi30k
from ctm_m3l.encoders import get_encoder, load_images


def rate(fn, items, repeats=2):
    fn(items[:8])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(items)
        best = min(best, time.perf_counter() - start)
    return len(items) / best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=None)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    rows = load_multi30k("val", root=args.data, images_only=True, limit=args.n)
    print(f"device: cpu, torch threads: {torch.get_num_threads()}, items: {len(rows)}")
    text = get_encoder("offline:minilm", "text", device="cpu", batch_size=args.batch_size)
    image = get_encoder("offline:efficientnet-lite0", "image", device="cpu", batch_size=args.batch_size)
    captions = [r["en"] for r in rows]
    single = [r["en"].split(". ")[0] for r in rows]
    paths = [r["image"] for r in rows]
    print(f"offline:minilm, 5-caption texts (~{sum(len(c.split()) for c in captions) / len(captions):.0f} words): "
          f"{rate(text.encode, captions):.1f} items/s")
    print(f"offline:minilm, single captions: {rate(text.encode, single):.1f} items/s")
    print(f"image decoding only (Pillow, RGB): {rate(lambda p: load_images(p), paths):.1f} items/s")
    print(f"offline:efficientnet-lite0 (decode + 224px + CNN): {rate(image.encode, paths):.1f} items/s")


if __name__ == "__main__":
    main()
