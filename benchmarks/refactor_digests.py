"""SHA-256 digests of what seeded fits give, to show a refactor changed no number (issue #26).

A seeded M3LTM fit on planted tuples (its weights, history, thetas per view sampled and at the
posterior mean, the tensors of its saved folder and of its checkpoint) and one system of each
baseline kind (ZeroshotTM + MCSE, ZeroshotTM-KD, PLTM, embedding retrieval: representations
and topic words), on this machine's CPU:

    python benchmarks/refactor_digests.py > before.json      # at the commit before
    python benchmarks/refactor_digests.py --check before.json  # after: exit 1 on any difference

Float results are compared to the bit, so compare on one machine and one torch build.
"""
import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

try:
    from ctm_m3l.data.synthetic import planted_tuples
except ImportError:  # before the data package existed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from planted import planted_tuples

from ctm_m3l import M3LTM, ImageView, M3LDataPreparation, TextView


def _digest(value) -> str:
    h = hashlib.sha256()
    if isinstance(value, dict):
        for key in sorted(value):
            h.update(key.encode())
            h.update(_digest(value[key]).encode())
    elif torch.is_tensor(value):
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    elif isinstance(value, np.ndarray):
        h.update(np.ascontiguousarray(value).tobytes())
    else:
        h.update(json.dumps(value, sort_keys=True).encode())
    return h.hexdigest()[:16]


def digests() -> dict[str, str]:
    from safetensors.torch import load_file

    try:
        from ctm_m3l.baselines.registry import build_system
    except ImportError:  # before the registry existed
        from ctm_m3l.cli import build_system

    torch.set_num_threads(1)
    rows, emb, _ = planted_tuples(360, n_topics=5, seed=4)
    views = [TextView("en", stopwords=None), TextView("de", stopwords=None), ImageView("image")]
    prep = M3LDataPreparation(views)
    train = prep.fit(rows[:300], custom_embeddings={k: v[:300] for k, v in emb.items()})
    test = prep.transform(rows[300:], custom_embeddings={k: v[300:] for k, v in emb.items()})
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = M3LTM(views=["en", "de", "image"], n_components=5, num_epochs=6, batch_size=32, random_state=0)
        model.fit(train, validation_dataset=test, checkpoint_dir=Path(tmp) / "ck", progress_bar=False)
        out["m3l.weights"] = _digest(model.model.state_dict())
        out["m3l.history"] = _digest([{k: v for k, v in r.items() if k != "seconds"} for r in model.history])
        for view in model.views:
            out[f"m3l.theta.{view}"] = _digest(model.get_thetas(test, view=view, seed=0))
            out[f"m3l.theta_mean.{view}"] = _digest(model.get_thetas(test, view=view, n_samples=0))
        out["m3l.topics"] = _digest({lang: model.get_topic_lists(5, language=lang) for lang in model.language_views})
        out["m3l.checkpoint"] = _digest(
            {k: v for k, v in load_file(str(Path(tmp) / "ck" / "checkpoint.safetensors")).items()})
        model.save(Path(tmp) / "model", preparation=prep)
        out["m3l.saved"] = _digest(load_file(str(Path(tmp) / "model" / "model.safetensors")))
        settings = json.loads((Path(tmp) / "model" / "config.json").read_text())["settings"]
        out["m3l.saved_settings"] = _digest(settings)
        loaded = M3LTM.load(Path(tmp) / "model")
        out["m3l.loaded_theta.de"] = _digest(loaded.get_thetas(test, view="de", seed=0))
        for view in model.views:
            out[f"m3l.represent.{view}"] = _digest(model.represent(test, view, seed=0))
    for name in ("zeroshot", "zeroshot-kd", "pltm", "embeddings"):
        system = build_system(name, views, train, n_components=5, num_epochs=30 if name == "pltm" else 4,
                              seed=0, batch_size=None)
        system.fit(train)
        for view in system.views:
            out[f"{name}.represent.{view}"] = _digest(system.represent(test, view, seed=0))
        if system.has_topics:
            out[f"{name}.topics"] = _digest({lang: system.get_topic_lists(5, language=lang)
                                             for lang in system.language_views})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", type=Path, help="digests recorded before; exit 1 when any differs")
    args = parser.parse_args(argv)
    now = digests()
    if args.check is None:
        print(json.dumps(now, indent=1))
        return 0
    before = json.loads(args.check.read_text())
    differ = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    for key in differ:
        print(f"DIFFERS {key}: before {before.get(key)} now {now.get(key)}")
    print(f"{len(before) - len(differ)} of {len(before)} digests identical")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
