"""What the reproduction runs: the paper's experiments as a plan of seeded runs, each with a key
that says everything its result depends on."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..baselines.registry import DEFAULT_BATCH_SIZES


@dataclass
class ReproduceConfig:
    """What to run.  The defaults are the paper's; :meth:`quick` is a small version."""

    n_train: int | None = None            # None: all 29,000 training tuples
    n_test: int | None = None             # None: all 1,014 validation tuples (242 with an image)
    n_components: int = 100
    num_epochs: int = 100
    pltm_iterations: int = 1000
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    topic_numbers: list[int] = field(default_factory=lambda: [25, 50, 100])
    batch_sizes: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    # (en encoder, de encoder, image encoder); offline by default, add e.g.
    # ("clip-ViT-B-32-multilingual-v1", "clip-ViT-B-32-multilingual-v1", "clip-ViT-B-32") with network.
    encoder_combos: list[tuple[str, str, str]] = field(
        default_factory=lambda: [("offline:minilm", "offline:minilm", "offline:efficientnet-lite0")])
    # Table 4 also runs every combination with its embeddings mapped into one space by MCSE
    # heads fitted on the training tuples: aligned vs unaligned inputs with the encoders at hand.
    table4_mcse: bool = True
    # M3LTM settings the M3L-Contrast runs use instead of its defaults (part of their keys):
    # e.g. ctm_m3l.PAPER_SETTINGS, the paper's network and loss (``reproduce --paper-settings``).
    m3l_options: dict = field(default_factory=dict)

    @classmethod
    def quick(cls) -> ReproduceConfig:
        return cls(n_train=1500, n_test=150, n_components=20, num_epochs=10, pltm_iterations=100, seeds=[0],
                   topic_numbers=[10, 20], batch_sizes=[16, 32])


#: The inference networks' hidden layers of every run recorded before the label named the width.
_FIRST_HIDDEN_SIZES = (100,)


def m3l_loss_label(options: dict | None = None, images: bool = True) -> str:
    """M3L-Contrast's loss and networks as ``M3LTM(**options)`` trains them (and ``topic_epochs``,
    ``topic_fit`` or the hidden layers, when the topics train for fewer epochs or in a first fit,
    or the networks have another width), in a few characters (part of a run's key: results of
    another loss, e.g. an earlier default, never stand in for these).  The settings added or
    named later are named only where they differ from what every run before them had, so those
    runs keep their keys.  ``images=False``: for runs without an image view, whose results the
    image views' settings (their layout, their KL to the prior) do not change, so they are left
    out: a new image default keeps those runs."""
    from ..model import M3LTM
    from ..persistence import SETTINGS_ADDED

    model = M3LTM(views=["_"], **(options or {}))
    w = model.weights
    label = (f"rec{w['reconstruction']:g}+prior{w['prior_kl']:g}+pair{w['pair_kl']:g}({model.pair_kl_on})"
             f"+s{w['contrastive']:g}({model.similarity},tau{model.temperature:g})")
    if images and w["image_prior_kl"] != w["prior_kl"]:
        label += f"+image_prior{w['image_prior_kl']:g}"
    names = ("posterior_norm", "contrastive_reduction", "inference_input") + (("image_posterior_norm",) * images)
    for name in names + ("topic_epochs", "topic_fit"):
        value = getattr(model, name)
        if value != SETTINGS_ADDED[name]:
            label += f"+{name}={value if not isinstance(value, dict) else json.dumps(value, sort_keys=True)}"
    if model.hidden_sizes != _FIRST_HIDDEN_SIZES:
        label += f"+hidden_sizes={list(model.hidden_sizes)}"
    return label


EXPERIMENTS = ("table1", "table2", "topics", "batch", "table4")


# (key, title, views, systems, metric columns) of Tables 1 and 2.
_TABLES = (
    ("table1", "Table 1: multilingual (en, de)", "text", ("pltm", "zeroshot", "zeroshot-kd", "m3l"),
     ["npmi_en", "npmi_de", "mrr_en_de", "jsd_en_de"]),
    ("table2", "Table 2: multilingual and multimodal (en, de, image)", "all", ("zeroshot", "zeroshot-kd", "m3l"),
     ["npmi_en", "npmi_de", "uap_en_image", "jsd_en_image", "uap_de_image", "jsd_de_image"]),
)


# (key, label, views, metric, y label) of the topic-number (Figures 3, 4) and batch-size (5, 6) ablations.
_TOPIC_FIGURES = (("fig3", "en,de", "text", "mrr_en_de", "MRR en->de"),
                  ("fig4", "en,de,image", "all", "uap_en_image", "UAP en->image"))


_BATCH_FIGURES = (("fig5", "en,de", "text", "mrr_en_de", "MRR en->de"),
                  ("fig6", "en,de,image", "all", "uap_en_image", "UAP en->image"))


_TABLE4_KEYS = ["mrr_en_de", "jsd_en_de", "uap_en_image", "jsd_en_image", "uap_de_image", "jsd_de_image"]


@dataclass(frozen=True)
class _Run:
    """One training and evaluation: everything its result depends on."""

    system: str
    views: str            # "text" (en, de) or "all" (en, de, image)
    combo: int            # index into config.encoder_combos
    n_components: int
    batch_size: int | None
    seed: int
    mcse: bool = False    # embeddings aligned by MCSE heads (fitted on the training tuples) first

    def key(self, config: ReproduceConfig) -> str:
        """Identifies the run across invocations: the same key, the same result (runs are
        seeded), so a finished run is never repeated, and a run of another configuration
        (other data size, epochs...) never stands in for this one."""
        length = f"iterations={config.pltm_iterations}" if self.system == "pltm" else f"epochs={config.num_epochs}"
        batch = self.batch_size or DEFAULT_BATCH_SIZES.get(self.system)
        return "|".join([self.system, self.views, "/".join(config.encoder_combos[self.combo])]
                        + (["aligned=mcse"] if self.mcse else [])
                        + ([f"loss={m3l_loss_label(config.m3l_options, images=self.views != 'text')}"]
                           if self.system == "m3l" else [])
                        # ZeroshotTM trains a model per language (German topics), as the paper does
                        + (["languages=each"] if self.system == "zeroshot" else [])
                        + [f"train={config.n_train or 'all'}", f"test={config.n_test or 'all'}",
                           f"K={self.n_components}", f"batch={batch or '-'}", length, f"seed={self.seed}"])


def _plan(config: ReproduceConfig, only) -> list[tuple[str, _Run]]:
    """``(experiment, run)`` pairs, one seed after another so that an interrupted run has
    complete tables for its first seeds."""
    plan = []
    for seed in config.seeds:
        for key, _, views, systems, _ in _TABLES:
            if key in only:
                plan += [(key, _Run(name, _table_views(name, views, only), 0, config.n_components, None, seed))
                         for name in systems]
        if "topics" in only:
            for fig, _, views, _, _ in _TOPIC_FIGURES:
                plan += [(f"{fig}_topics", _Run(name, views, 0, k, None, seed))
                         for name in ("zeroshot", "m3l") for k in config.topic_numbers]
        if "batch" in only:
            for fig, _, views, _, _ in _BATCH_FIGURES:
                plan += [(f"{fig}_batch", _Run("m3l", views, 0, config.n_components, b, seed))
                         for b in config.batch_sizes]
        if "table4" in only:
            plan += [("table4", _Run("m3l", "all", c, config.n_components, None, seed, mcse))
                     for c in range(len(config.encoder_combos))
                     for mcse in ((False, True) if config.table4_mcse else (False,))]
    return plan


def _table_views(system: str, views: str, only) -> str:
    """The views a table's run of ``system`` trains on.  ZeroshotTM-KD distils its students
    from the English teacher one view at a time, each re-seeded as the teacher was, so the
    all-views run's English teacher and German student are the text-only run's, to the bit
    (``tests/integration/test_baselines.py``): when Table 2 runs too, Table 1 reads its en/de metrics
    from Table 2's run instead of training the teacher and the German student twice."""
    return "all" if system == "zeroshot-kd" and views == "text" and "table2" in only else views


def _distinct(plan, config: ReproduceConfig) -> dict[str, _Run]:
    """The plan's runs by key, in plan order: a run two experiments share appears once."""
    distinct: dict[str, _Run] = {}
    for _, run in plan:
        distinct.setdefault(run.key(config), run)
    return distinct
