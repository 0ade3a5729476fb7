"""Faster encoders on CPU: the offline encoders' networks run by OpenVINO.

``backend="openvino"`` converts the PyTorch network once (``openvino.convert_model``, no
ONNX file in between) and keeps the converted model in ``export_dir`` (the embedding cache's
folder) for later runs.  Text transformers run at OpenVINO's default precision for the CPU:
bfloat16 on processors with AMX or AVX-512 BF16 (embeddings within cosine 0.9999 of torch's
on Multi30k), float32 elsewhere; the image CNN always in float32 (bfloat16 moved its
features by up to 0.002 in cosine).  The precision is part of the embedding cache's key.
Tokenising, pooling and normalising stay as sentence-transformers does them.

Known problem: once, on a CI machine we do not have, the process died of a segmentation fault
while OpenVINO's compiled models were freed (not reproduced here; the converted models now own
their weights, which removed the one cause we found).  If it happens to you, use
``backend="torch"``: the embeddings are the same to rounding.

Why OpenVINO rather than sentence-transformers' own ``backend="onnx"/"openvino"``: those go
through Hugging Face Optimum, whose current releases pin ``transformers`` below the version
sentence-transformers itself needs here.  Measured side by side with the torch path:
``benchmarks/encode_throughput.py``.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["BACKENDS", "CompiledNetwork", "LastHiddenState", "openvino_text", "openvino_network"]

BACKENDS = ("torch", "openvino")
_F32 = {"INFERENCE_PRECISION_HINT": "f32"}


def _openvino():
    try:
        import openvino
    except ImportError as err:
        raise ImportError("backend='openvino' needs `pip install openvino` (or `pip install ctm-m3l[offline]`)") \
            from err
    return openvino


class CompiledNetwork:
    """A model compiled by OpenVINO, called as ``network(inputs) -> outputs``, held with the
    ``Core`` that compiled it and released before it (:meth:`close`, or when collected)."""

    def __init__(self, core, compiled):
        self.core, self.compiled = core, compiled

    def __call__(self, inputs):
        return self._compiled()(inputs)

    @property
    def precision(self) -> str:
        return precision(self._compiled())

    def _compiled(self):
        compiled = self.__dict__.get("compiled")
        if compiled is None:
            raise RuntimeError("this OpenVINO network was closed; build the encoder again")
        return compiled

    def close(self) -> None:
        self.__dict__.pop("compiled", None)
        self.__dict__.pop("core", None)

    def __del__(self):
        self.close()


def _convert(module, example: dict | Any, key: str, export_dir: str | os.PathLike | None, inputs=None,
             config: dict | None = None) -> CompiledNetwork:
    """``module`` compiled by OpenVINO for the CPU (with ``config``), converted once and kept
    in ``export_dir`` under ``key`` (a digest of the network's weights).

    The converted model owns a copy of the weights (``share_weights=False``): OpenVINO's native
    model holds no PyTorch tensor (no Python object that native code would release).  With an
    ``export_dir``, the model is compiled from the saved files, as in every later run."""
    openvino = _openvino()
    core = openvino.Core()
    config = config or {}
    path = Path(export_dir) / "openvino" / f"{key}.xml" if export_dir is not None else None
    if path is not None and path.is_file() and path.with_suffix(".bin").is_file():
        try:
            return CompiledNetwork(core, core.compile_model(core.read_model(str(path)), "CPU", config))
        except RuntimeError:  # a damaged export: convert again
            pass
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constant shapes, transformers' deprecations
        converted = openvino.convert_model(module, example_input=example, input=inputs, share_weights=False)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.stem}.tmp-{os.getpid()}-{os.urandom(4).hex()}.xml"
        openvino.save_model(converted, str(tmp), compress_to_fp16=False)
        # The weights first: an .xml is in place only once its .bin is complete.
        os.replace(tmp.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(tmp, path)
        del converted
        converted = core.read_model(str(path))
    return CompiledNetwork(core, core.compile_model(converted, "CPU", config))


def precision(compiled) -> str:
    """The precision OpenVINO computes a compiled model in (``"f32"``, ``"bf16"``...)."""
    try:
        value = compiled.get_property("INFERENCE_PRECISION_HINT")
    except RuntimeError:
        return "unknown"
    try:
        return value.to_string()
    except AttributeError:
        return str(value)


def weights_key(module) -> str:
    """A digest of a network's parameters and buffers (what its converted model depends on)."""
    digest = hashlib.sha256(type(module).__qualname__.encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class LastHiddenState(torch.nn.Module):
    """A Hugging Face transformer as ``(input_ids, attention_mask) -> last hidden state``: the
    part of a sentence-transformers text model that a backend runs."""

    def __init__(self, transformer):
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids, attention_mask):
        return self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def openvino_text(model, batch_size: int, export_dir=None, float32: bool = False) -> Callable[[list[str]], np.ndarray]:
    """A sentence-transformers model of a Transformer, a Pooling (mean or CLS) and an optional
    Normalize module, as ``texts -> (n, d)`` with its transformer run by OpenVINO (at the CPU's
    default precision, or ``float32``)."""
    modules = list(model)
    names = [type(m).__name__ for m in modules]
    pooling = getattr(modules[1], "pooling_mode", None) if len(modules) > 1 else None
    if names[:2] != ["Transformer", "Pooling"] or pooling not in ("mean", "cls") \
            or any(n != "Normalize" for n in names[2:]):
        raise ValueError(f"backend='openvino' runs models made of Transformer, Pooling (mean or cls) and "
                         f"Normalize; this one is {names} (pooling {pooling!r}): use backend='torch'")
    transformer, normalise = modules[0], len(names) > 2
    tokenizer, network = transformer.tokenizer, transformer.auto_model.eval()
    max_length = model.max_seq_length
    example = tokenizer(["a short example", "and a second, longer example text"], padding=True,
                        return_tensors="pt")
    compiled = _convert(LastHiddenState(network), (example["input_ids"], example["attention_mask"]),
                        weights_key(network), export_dir, config=_F32 if float32 else None)

    def encode(texts: list[str]) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), network.config.hidden_size), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # batches of similar lengths
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=max_length,
                              return_tensors="np")
            hidden = compiled({0: batch["input_ids"].astype(np.int64),
                               1: batch["attention_mask"].astype(np.int64)})[0]
            if pooling == "mean":
                mask = batch["attention_mask"][..., None].astype(np.float32)
                vectors = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
            else:
                vectors = hidden[:, 0]
            if normalise:
                vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            out[rows] = vectors
        return out

    encode.precision = compiled.precision
    return encode


def openvino_network(module, input_shape: tuple, export_dir=None) -> Callable[[np.ndarray], np.ndarray]:
    """A PyTorch network of one input (batch first, other sizes fixed) run by OpenVINO."""
    compiled = _convert(module.eval(), torch.zeros((1, *input_shape)), weights_key(module), export_dir,
                        inputs=[(-1, *input_shape)], config=_F32)

    def run(batch):
        return compiled(np.ascontiguousarray(batch, dtype=np.float32))[0]

    run.precision = compiled.precision
    return run
