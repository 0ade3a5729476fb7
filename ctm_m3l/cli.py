"""The ``ctm-m3l`` command: ``fit`` a model on tuples, print its ``topics``, ``infer`` new items."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from ._validation import Options
from .baselines.registry import ALIGN_CHOICES, MODELS, build_system, check_align
from .model import M3LTM


def _views(args):
    from .views import ImageView, TextView

    names = [v.strip() for v in args.views.split(",") if v.strip()]
    if not names:
        raise ValueError("--views needs at least one view name, e.g. --views en,de,image")
    images = set(v.strip() for v in args.image_views.split(",")) if args.image_views else \
        {v for v in names if v.lower().startswith(("image", "img", "photo"))}
    tokenizers = {}
    for pair in args.tokenizer or []:
        view, _, reference = pair.partition("=")
        if not reference or ":" not in reference:
            raise ValueError(f"--tokenizer takes VIEW=MODULE:FUNCTION (e.g. zh=jieba:lcut), got {pair!r}")
        if view not in names or view in images:
            raise ValueError(f"--tokenizer {pair!r}: {view!r} is not one of the text views "
                             f"{[n for n in names if n not in images]}")
        tokenizers[view] = reference
    return [ImageView(n, encoder=args.image_encoder) if n in images else
            TextView(n, encoder=args.text_encoder, vocabulary_size=args.vocabulary_size, tokenizer=tokenizers.get(n))
            for n in names]


def _embeddings(pairs: list[str] | None) -> dict[str, np.ndarray]:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"--embeddings takes VIEW=FILE.npy, got {pair!r}")
        view, path = pair.split("=", 1)
        out[view] = np.load(path, allow_pickle=False)
    return out


def _m3l_options(args) -> dict:
    """The M3LTM settings given on the command line (``--loss-weights KEY=VALUE...``,
    ``--temperature``, ``--similarity``, ``--pair-kl-on``, ``--posterior-norm``,
    ``--image-posterior-norm``, ``--contrastive-reduction``, ``--inference-input``,
    ``--hidden-sizes``, ``--topic-epochs``, ``--topic-fit``), validated by M3LTM itself; the others keep M3LTM's
    defaults."""
    options = {}
    if args.loss_weights:
        options["loss_weights"] = {}
        for pair in args.loss_weights:
            key, _, value = pair.partition("=")  # no "=": value "" is no number either
            try:
                options["loss_weights"][key.strip()] = float(value)
            except ValueError:
                raise ValueError(f"--loss-weights takes KEY=NUMBER (e.g. pair_kl=0.1), got {pair!r}") from None
    for name in ("temperature", "similarity", "pair_kl_on", "posterior_norm", "image_posterior_norm",
                 "contrastive_reduction", "inference_input", "topic_epochs", "topic_fit"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if options.get("topic_fit") == "none":
        options["topic_fit"] = None
    if args.hidden_sizes is not None:
        options["hidden_sizes"] = tuple(args.hidden_sizes)
    return options


def cmd_fit(args) -> int:
    from .data import M3LDataPreparation

    views = _views(args)
    prep = M3LDataPreparation(views, cache_dir=args.cache_dir, device=args.device, show_progress_bar=True,
                              encoder_backend=args.encoder_backend)
    train = prep.fit(args.train, custom_embeddings=_embeddings(args.embeddings) or None)
    model = build_system("m3l", views, train, args.n_components, args.num_epochs, args.seed, args.batch_size,
                         args.device, lr=args.lr, torch_compile=args.torch_compile, m3l_options=_m3l_options(args))
    model.fit(train, verbose=args.verbose, distributed=args.distributed,
              checkpoint_dir=args.checkpoint_dir, resume_from=args.resume_from, topics_from=args.topics_from)
    if not model.is_main_process:
        return 0
    out = model.save(args.output, preparation=prep)
    print(f"saved to {out}")
    return 0


def cmd_evaluate(args) -> int:
    import time

    from .data import M3LDataPreparation
    from .experiments import run_system

    start = time.perf_counter()
    m3l_options = _m3l_options(args)
    if args.model != "m3l" and m3l_options:
        raise ValueError(f"--loss-weights, --temperature, --similarity, --pair-kl-on, --posterior-norm, "
                         f"--image-posterior-norm, --contrastive-reduction, --inference-input, --hidden-sizes, "
                         f"--topic-epochs and --topic-fit set M3L-Contrast's loss, networks and training; "
                         f"--model {args.model} has none of them")
    if args.model != "m3l" and args.torch_compile:
        raise ValueError(f"--torch-compile compiles M3L-Contrast's training step; --model {args.model} does not "
                         "train with it")
    check_align(args.model, args.align)  # before encoding, which takes the time
    views = _views(args)
    prep = M3LDataPreparation(views, cache_dir=args.cache_dir, device=args.device, show_progress_bar=True,
                              encoder_backend=args.encoder_backend)
    words_only = args.model == "pltm"  # PLTM reads words alone: no encoder is loaded
    train = prep.fit(args.train, words_only=words_only)
    test = prep.transform(args.test, words_only=words_only)
    run = run_system(args.model, views, train, test, args.n_components, args.num_epochs, args.seed,
                     args.batch_size, args.device, lr=args.lr, progress_bar=True, m3l_options=m3l_options,
                     torch_compile=args.torch_compile, align=args.align)
    result = {
        "model": run["model"],
        "config": {k: v for k, v in vars(args).items() if k != "func"},
        "metrics": run["metrics"],
        "seconds": time.perf_counter() - start,
    }
    Path(args.output).write_text(json.dumps(result, indent=1), encoding="utf-8")
    for key, value in run["metrics"].items():
        print(f"{key}\t{value:.4f}")
    print(f"wrote {args.output}")
    return 0


def cmd_reproduce(args) -> int:
    from .experiments import ReproduceConfig, reproduce

    config = ReproduceConfig.quick() if args.quick else ReproduceConfig()
    if args.seeds:
        config.seeds = args.seeds
    if args.paper_settings:
        import copy

        from .defaults import PAPER_SETTINGS

        config.m3l_options = copy.deepcopy(PAPER_SETTINGS)  # the module's dict stays as shipped
    only = [name.strip() for name in args.only.split(",") if name.strip()] if args.only else None
    reproduce(args.data, args.out, config, cache_dir=args.cache_dir, device=args.device, only=only,
              jobs=args.jobs, torch_compile=args.torch_compile, train=not args.report_only)
    print(f"wrote {Path(args.out) / 'results.json'}, {Path(args.out) / 'tables.md'} and the figures")
    return 0


def cmd_topics(args) -> int:
    from .model import M3LTM

    model = M3LTM.load(args.model, device="cpu")
    languages = [args.language] if args.language else model.language_views
    lists = {lang: model.get_topic_lists(k=args.k, language=lang) for lang in languages}
    for topic in range(model.n_components):
        print(f"topic {topic}")
        for lang in languages:
            print(f"  {lang}: {' '.join(lists[lang][topic])}")
    return 0


def cmd_infer(args) -> int:
    from .data import M3LDataPreparation
    from .model import M3LTM

    model = M3LTM.load(args.model, device=args.device)
    prep = M3LDataPreparation.load(args.model, device=args.device, trust_remote_code=args.trust_tokenizer)
    if args.view not in prep.view_names:
        raise ValueError(f"unknown view {args.view!r}; the model's views are {prep.view_names}")
    if args.encoder:
        prep.views[prep.view_names.index(args.view)].encoder = args.encoder
    custom = np.load(args.embeddings, allow_pickle=False) if args.embeddings else None
    data = prep.transform(args.input, view=args.view, custom_embeddings=custom)
    theta = model.get_thetas(data, view=args.view, n_samples=args.n_samples, seed=args.seed)
    output = Path(args.output)
    if output.suffix.lower() == ".jsonl":
        with open(output, "w", encoding="utf-8") as fh:
            for row_id, row in zip(data.ids, theta):
                fh.write(json.dumps({"id": row_id, "topics": None if np.isnan(row).any() else row.tolist()}) + "\n")
    else:
        with open(output, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["id"] + [f"topic_{k}" for k in range(theta.shape[1])])
            for row_id, row in zip(data.ids, theta):
                writer.writerow([row_id] + ["" if np.isnan(x) else f"{x:.6g}" for x in row])
    print(f"wrote {len(theta)} topic distributions to {output}")
    return 0


def cmd_explore(args) -> int:
    from .data import M3LDataPreparation
    from .figures import explore_page
    from .model import M3LTM

    model = M3LTM.load(args.model, device=args.device)
    prep = M3LDataPreparation.load(args.model, device=args.device, trust_remote_code=args.trust_tokenizer)
    out = explore_page(model, prep, args.data, args.output, custom_embeddings=_embeddings(args.embeddings) or None,
                       n_topics=args.topics, seed=args.seed)
    print(f"wrote {out}")
    return 0


def _data_and_model_options(parser, text_encoder, image_encoder, batch_size, seed, epochs_help) -> None:
    """The options `fit` and `evaluate` share: views, encoders, vocabulary and training."""
    parser.add_argument("--views", required=True, help="comma-separated view names, e.g. en,de,image")
    parser.add_argument("--image-views", help="which views are images (default: names starting with image/img/photo)")
    parser.add_argument("--text-encoder", default=text_encoder,
                        help=f"sentence-transformers name/dir or offline:minilm for text views (default {text_encoder})")
    parser.add_argument("--image-encoder", default=image_encoder,
                        help=f"e.g. clip-ViT-B-32 or offline:efficientnet-lite0 for image views (default {image_encoder})")
    parser.add_argument("--vocabulary-size", type=int, default=2000, help="words kept per language (default 2000)")
    parser.add_argument("--tokenizer", nargs="*", metavar="VIEW=MODULE:FUNCTION",
                        help="a word segmenter for a text view in a language written without spaces, "
                             "e.g. zh=jieba:lcut (default: split at spaces and punctuation)")
    parser.add_argument("--n-components", type=int, default=100, help="number of topics (default 100)")
    parser.add_argument("--num-epochs", type=int, default=100, help=epochs_help)
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help="tuples per batch (default 32 for m3l, 64 for the CTM baselines)")
    parser.add_argument("--lr", type=float, default=2e-3, help="learning rate (default 2e-3)")
    parser.add_argument("--seed", type=int, default=seed, help=f"random seed (default {seed})")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--cache-dir", default=None, help="folder to cache embeddings in")
    parser.add_argument("--encoder-backend", choices=("torch", "openvino"), default="torch",
                        help="run the encoders with torch (default) or OpenVINO (CPU, faster, the same embeddings "
                             "to rounding; needs the openvino package)")
    parser.add_argument("--loss-weights", nargs="*", metavar="KEY=WEIGHT",
                        help="M3L-Contrast's loss weights: reconstruction (default 1), prior_kl (KL to the topic "
                             "prior, default 0 as in Eq. 1), image_prior_kl (that KL for image views; default 0, or prior_kl's "
                             "when only that is given), pair_kl (default 1), contrastive (s, default 100)")
    parser.add_argument("--temperature", type=float, help="M3L-Contrast's InfoNCE tau (default 0.07)")
    parser.add_argument("--similarity", choices=_m3l_choices("similarity"),
                        help="M3L-Contrast's InfoNCE similarity: cosine (the authors' code, default) or dot (Eq. 1)")
    parser.add_argument("--pair-kl-on", choices=_m3l_choices("pair_kl_on"),
                        help="what M3L-Contrast's pairwise KL compares: theta, the sampled topic proportions (the "
                             "authors' code, default), or posterior, the Gaussian posteriors (Eq. 1 as printed); "
                             "docs/research/which-loss.md")
    parser.add_argument("--posterior-norm", choices=_m3l_choices("posterior_norm"),
                        help="how M3L-Contrast's inference networks normalise their posterior: batch norm on mu and "
                             "log sigma^2 (ctm, the paper's), the same with a learned shift of log sigma^2 "
                             "(ctm-shifted, default), on mu only (mean), or neither (none)")
    parser.add_argument("--image-posterior-norm", choices=_m3l_choices("image_posterior_norm"),
                        help="the same for the image views' networks (default ctm-shifted)")
    parser.add_argument("--contrastive-reduction", choices=_m3l_choices("contrastive_reduction"),
                        help="M3L-Contrast's InfoNCE per view pair: mean over the batch's tuples (the authors' code) "
                             "or sum (as Eq. 1 sums its terms; default)")
    parser.add_argument("--inference-input", choices=_m3l_choices("inference_input"),
                        help="what a language view's inference network reads: its embedding (contextual, the "
                             "paper's) or its bag of words as well (combined, as CTM's CombinedTM; default)")
    parser.add_argument("--hidden-sizes", type=int, nargs="+", metavar="UNITS",
                        help="M3L-Contrast's inference networks' hidden layers (default: one of 100, the paper's; "
                             "200 retrieves better and gives less coherent topics: docs/research/topic-space.md)")
    parser.add_argument("--topic-epochs", type=int, metavar="EPOCHS",
                        help="M3L-Contrast's topics train for the first EPOCHS epochs only (with --topics-from or "
                             "--topic-fit: the last EPOCHS); the inference networks "
                             "train for all of them (default: the topics train every epoch; 50 of 100 keeps the "
                             "topics' coherence of epoch 50; 0 with fit's --topics-from: the topics stay that "
                             "model's: docs/research/topic-space.md)")
    parser.add_argument("--topic-fit", type=_topic_fit, metavar="paper|none|JSON",
                        help="M3L-Contrast trains its topics in a first fit with other settings ('paper': the "
                             "paper's at batch 64 with s = 100, its weight per tuple; or a JSON object of M3LTM "
                             "settings), then its inference networks against them, kept fixed or, with "
                             "--topic-epochs, trained on in its last epochs ('none', default: both together in one "
                             "fit): docs/research/topic-space.md")
    parser.add_argument("--torch-compile", action="store_true", help=_COMPILE_HELP)


def _topic_fit(value: str):
    """``--topic-fit``: a name M3LTM accepts (``paper``), ``none`` (kept as the string, since
    argparse's None means "not given") or a JSON object of settings."""
    if value.lstrip().startswith("{"):
        try:
            return json.loads(value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"not a JSON object of M3LTM settings ({err})") from None
    if value not in _m3l_choices("topic_fit") + ("none",):
        raise argparse.ArgumentTypeError(f"{value!r}: give one of {list(_m3l_choices('topic_fit')) + ['none']} or a "
                                         "JSON object")
    return value


def _m3l_choices(parameter: str) -> tuple[str, ...]:
    """The values M3LTM accepts for ``parameter``, from its ``_parameter_constraints``, so that
    the CLI offers what the estimator validates and nothing else."""
    return next(c.values for c in M3LTM._parameter_constraints[parameter] if isinstance(c, Options))


_COMPILE_HELP = ("train M3L-Contrast with its training step compiled by torch.compile: faster epochs after a "
                 "one-off compilation (needs a C++ compiler; falls back to eager with a warning)")


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="ctm-m3l", description="Multilingual and multimodal topic models (M3L-Contrast).")
    parser.add_argument("--version", action="version", version=f"ctm-m3l {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="train an M3LTM on tuples and save it")
    fit.add_argument("--train", required=True, help="JSONL or CSV file of tuples, one field per view")
    _data_and_model_options(fit, text_encoder=None, image_encoder=None, batch_size=32, seed=None,
                            epochs_help="training epochs (default 100)")
    fit.add_argument("--embeddings", nargs="*", metavar="VIEW=FILE.npy",
                     help="precomputed embeddings (one row per tuple) instead of an encoder")
    fit.add_argument("--output", required=True, help="directory to save the model to")
    fit.add_argument("--verbose", action="store_true", help="print every loss term per epoch")
    fit.add_argument("--distributed", action="store_true",
                     help="data-parallel training; launch with torchrun --nproc_per_node=N (batch size is per rank)")
    fit.add_argument("--checkpoint-dir", default=None, help="write a resumable checkpoint there every epoch")
    fit.add_argument("--resume-from", default=None, help="continue a killed run from its checkpoint")
    fit.add_argument("--topics-from", default=None, metavar="MODEL_DIR",
                     help="start from the topic-word weights of this saved model (same topic number and "
                          "vocabularies: prepared from the same --train); with --topic-epochs 0 they stay fixed "
                          "and only the inference networks train")
    fit.set_defaults(func=cmd_fit)

    ev = sub.add_parser("evaluate", help="train a system and compute every metric on held-out tuples")
    ev.add_argument("--train", required=True, help="JSONL or CSV file of training tuples")
    ev.add_argument("--test", required=True, help="JSONL or CSV file of held-out tuples")
    ev.add_argument("--model", choices=MODELS, default="m3l",
                    help="m3l (M3L-Contrast), zeroshot (CTM's ZeroShotTM on the first language), "
                         "zeroshot-kd (teacher: the first language), pltm (texts only), embeddings (cosine)")
    _data_and_model_options(ev, text_encoder="offline:minilm", image_encoder="offline:efficientnet-lite0",
                            batch_size=None, seed=0,
                            epochs_help="training epochs (neural models) or Gibbs iterations (pltm) (default 100)")
    ev.add_argument("--align", choices=ALIGN_CHOICES, default="auto",
                    help="zeroshot and embeddings compare views in one embedding space: mcse maps the views "
                         "into one by MCSE projection heads fitted on --train first (the model is then named "
                         "zeroshot+mcse), none uses the embeddings as they are (aligned encoders: CLIP, "
                         "multilingual SBERT), auto (default) aligns when the views' embedding sizes differ. "
                         "Sizes cannot tell an English encoder used for German (offline:minilm) from a "
                         "multilingual one: pass mcse there")
    ev.add_argument("--output", required=True, help="results JSON: model, config, metrics, seconds")
    ev.set_defaults(func=cmd_evaluate)

    rep = sub.add_parser("reproduce", help="the paper's experiments on Multi30k (Tables 1, 2, 4; Figures 3-6)")
    rep.add_argument("--data", default=None, help="Multi30k root (default: $CTM_M3L_DATA)")
    rep.add_argument("--out", required=True,
                     help="folder for results.json, tables.md and the figures; every finished run is kept in "
                          "its runs.jsonl, and running again with the same folder continues an interrupted run")
    rep.add_argument("--quick", action="store_true",
                     help="a small version (1,500 tuples, 20 topics, 10 epochs, one seed) that runs in minutes on CPU")
    rep.add_argument("--seeds", type=int, nargs="+", help="seeds (default: 0 1 2; --quick: 0)")
    rep.add_argument("--only", default=None,
                     help="comma-separated experiments to run: table1, table2, topics, batch, table4 (default: all)")
    rep.add_argument("--jobs", type=int, default=1,
                     help="runs trained at once, each in its own process with (CPU cores / jobs) torch threads "
                          "(default 1); these small networks are bound by per-operator overhead, so on CPU "
                          "several one-thread jobs finish more runs per hour than one job with every core")
    rep.add_argument("--cache-dir", default=None, help="folder to cache embeddings in")
    rep.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    rep.add_argument("--torch-compile", action="store_true",
                     help=_COMPILE_HELP + "; the baselines train as CTM does. Finished runs count either way (a "
                          "compiled fit follows the eager one with the same seed)")
    rep.add_argument("--paper-settings", action="store_true",
                     help="train M3L-Contrast with the paper's network and loss (ctm_m3l.PAPER_SETTINGS, 0.1.0's "
                          "defaults) instead of M3LTM's defaults; the committed ledger "
                          "(benchmarks/results/multi30k-full) is theirs")
    rep.add_argument("--report-only", action="store_true",
                     help="train nothing: write the tables, results.json and figures of the planned runs already "
                          "finished in OUT/runs.jsonl (no data needed), e.g. to see three seeds of Tables 1 and 2 "
                          "while the ablations are still running elsewhere")
    rep.set_defaults(func=cmd_reproduce)

    topics = sub.add_parser("topics", help="print a saved model's aligned topics per language")
    topics.add_argument("model", help="directory of a saved model")
    topics.add_argument("--k", type=int, default=10, help="words per topic (default 10)")
    topics.add_argument("--language", help="one language only (default: all)")
    topics.set_defaults(func=cmd_topics)

    infer = sub.add_parser("infer", help="topic distributions of new items of one view")
    infer.add_argument("model", help="directory of a model saved by `ctm-m3l fit`")
    infer.add_argument("--input", required=True, help="JSONL/CSV file with a field named like the view")
    infer.add_argument("--view", required=True, help="which view the items are (e.g. de or image)")
    infer.add_argument("--encoder", help="encoder for the view (default: the one used in fit; a saved encoder "
                                          "path outside the model folder is used only when given here)")
    infer.add_argument("--trust-tokenizer", action="store_true",
                       help="import the word segmenter the model folder names even when it is not a known one "
                            "(e.g. jieba:lcut); importing a module runs its code: only for folders you trust")
    infer.add_argument("--embeddings", help="precomputed embeddings (.npy) instead of an encoder")
    infer.add_argument("--n-samples", type=int, default=20, help="samples averaged per item (default 20)")
    infer.add_argument("--seed", type=int, default=None, help="seed of the sampling noise")
    infer.add_argument("--device", default=None, help="cpu or cuda")
    infer.add_argument("--output", required=True, help="output .csv or .jsonl")
    infer.set_defaults(func=cmd_infer)

    explore = sub.add_parser("explore", help="an interactive page (one HTML file) of a saved model's topic space")
    explore.add_argument("model", help="directory of a model saved by `ctm-m3l fit`")
    explore.add_argument("--data", required=True, help="JSONL/CSV tuples to map (any of the model's views)")
    explore.add_argument("--embeddings", nargs="*", metavar="VIEW=FILE.npy",
                         help="precomputed embeddings instead of the encoders")
    explore.add_argument("--topics", type=int, default=20, help="most frequent topics shown side by side (default 20)")
    explore.add_argument("--seed", type=int, default=0, help="seed of the sampling noise and of t-SNE (default 0)")
    explore.add_argument("--trust-tokenizer", action="store_true", help="as for infer")
    explore.add_argument("--device", default=None, help="cpu or cuda")
    explore.add_argument("--output", required=True, help="the page to write (.html)")
    explore.set_defaults(func=cmd_explore)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, FloatingPointError) as err:
        print(f"ctm-m3l {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
