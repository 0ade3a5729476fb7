"""M3L-Contrast (Zosa & Pivovarova, COLING 2022) as a CTM ``ZeroShotTM``.

One inference network per view gives a Gaussian posterior over topics; one topic-word
matrix per language decodes that language's bag of words from its own sampled topics.
The loss of a batch of tuples ``i`` with views ``a, b`` is

    sum_i [ w_rec   * sum_{languages l of i} RL(x^l_i, theta^l_i)
          + w_prior * sum_{views a of i} KL(q_a || prior)
          + w_pair  * sum_{a != b of i} KL(q_a || q_b) ]
    + s * InfoNCE(theta; positives = views of one tuple, negatives = views of others)

(Eq. 1 of the paper; see ``losses.py`` for each term).  Terms use only the views a tuple has.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
import warnings
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from contextualized_topic_models.models.ctm import ZeroShotTM
from scipy.special import softmax
from torch import optim
from torch.optim.lr_scheduler import ReduceLROnPlateau
from tqdm.auto import tqdm

from . import __version__
from .data import MultiViewDataset
from .losses import (multiview_info_nce, pairwise_theta_kl, pairwise_view_kl, prior_kl, reconstruction_loss,
                     sparse_reconstruction_loss)
from .networks import POSTERIOR_NORMS, MultiViewDecoderNetwork
from .persistence import (PREPARATION, CheckpointMismatchError, ModelFolderError, check_finite, commit_folder,
                          dataset_digest, model_folder, read_json, sha256_file, tensor_digest, verify_folder,
                          write_atomic)

__all__ = ["M3LTM", "DEFAULT_LOSS_WEIGHTS"]

#: Default weights of the loss terms: Eq. 1's (no KL to the prior, the pairwise KL and s = 50),
#: as the authors' released multimodal code trains; see the README ("Which loss") for why.
DEFAULT_LOSS_WEIGHTS = {"reconstruction": 1.0, "prior_kl": 0.0, "pair_kl": 1.0, "contrastive": 50.0}

_FORMAT = "ctm-m3l-model"
_FORMAT_VERSION = 2
_CONFIG = "config.json"
_WEIGHTS = "model.safetensors"
_CHECKPOINT_FORMAT = "ctm-m3l-checkpoint"
_CHECKPOINT = "checkpoint.safetensors"
# Shapes (batch size, topics, vocabulary, views) for which the compiled objective keeps
# graphs in one process: a fit meets 2-4 (the full and the last batch, with and without
# missing views), so at least 32 configurations stay compiled.
_RECOMPILE_LIMIT = 128
#: Settings added after a format version was first written, with the values that saved
#: models and checkpoints lacking them were trained with.
_SETTINGS_ADDED = {"pair_kl_on": "posterior", "posterior_norm": "ctm", "contrastive_reduction": "mean"}


def _resolve_device(device: Any) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a valid torch device (e.g. 'cpu', 'cuda', 'cuda:1')") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for CUDA, but torch sees no CUDA device here")
    return dev


class M3LTM(ZeroShotTM):
    """Multilingual and multimodal contrastive topic model.

    Args:
        views: names of the views the model uses (``["en", "de", "image"]``); the kind of
            each (text or image) and the sizes come from the dataset given to ``fit``.
        n_components: number of topics (paper: 100).
        model_type: ``"prodLDA"`` or ``"LDA"`` decoder, as in CTM.
        hidden_sizes: hidden layers of each view's inference network (paper: ``(100,)``).
        activation: ``"softplus"`` or ``"relu"``.
        dropout: dropout of the inference networks and of theta (CTM: 0.2).
        learn_priors: learn the topic prior's mean and variance (CTM: True).
        batch_size: tuples per batch (paper: 32 for M3L-Contrast).
        lr: learning rate (paper: 2e-3).
        momentum: Adam's beta1 (CTM: 0.99), or SGD's momentum.
        solver: ``"adam"`` or ``"sgd"``.
        num_epochs: training epochs (paper: 100).
        reduce_on_plateau: divide the learning rate by 10 when the training loss stalls for
            10 epochs (CTM).
        temperature: InfoNCE temperature tau (paper: 0.07).
        similarity: ``"cosine"`` (NT-Xent, the authors' released code; default) or ``"dot"``
            (Eq. 1 as printed).
        loss_weights: weights of ``"reconstruction"``, ``"prior_kl"`` (CTM's KL of each
            view's posterior to the topic prior), ``"pair_kl"`` and ``"contrastive"`` (s);
            missing keys keep :data:`DEFAULT_LOSS_WEIGHTS` (1, 0, 1, 50: Eq. 1's terms).
        pair_kl_on: what the pairwise KL between a tuple's views compares: ``"theta"``, the
            sampled topic proportions on the simplex (the authors' released multimodal code;
            default), or ``"posterior"``, the Gaussian posteriors (Eq. 1 as printed).  The
            defaults are the released code's loss: on Multi30k val (4 seeds) it retrieved
            images from texts ~3x better, German from English ~3x better and gave more
            coherent topics than Eq. 1 read literally (Gaussian KL, dot product, with or
            without the prior KL); README, "Which loss".
        posterior_norm: how each inference network normalises its posterior: ``"ctm"``, batch
            norm on ``mu`` and on ``log sigma^2`` (CTM's ``ContextualInferenceNetwork``, which
            the paper's code uses); ``"mean"``, batch norm on ``mu`` only and a learned bias on
            ``log sigma^2``; ``"none"``, learned biases on both.  The batch norm on
            ``log sigma^2`` re-centres every log-variance at 0, so every posterior keeps a
            variance near 1 and averaged samples give flat mixtures
            (``benchmarks/topic_space_planted.py``).
        contrastive_reduction: InfoNCE per view pair as a ``"mean"`` over the batch's tuples
            (the released code's NT-Xent) or a ``"sum"`` over them, as Eq. 1 sums all its terms.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... (default: CUDA when available).
        random_state: seed for initialisation, batch order and sampling; None for fresh randomness.
        torch_compile: compile the training objective with ``torch.compile`` (static shapes,
            each batch's bags of words made dense on the device).  On CPU an epoch takes about
            0.8x (batch 64) / 0.65x (batch 32) of the eager one after a one-off compilation of
            ~40 s (cached on disk by PyTorch after that; ``benchmarks/train_speed.py``).  Needs
            a C++ compiler; when compilation fails training goes on eagerly with a warning.
            Dropout draws from torch's generator as eagerly, so a compiled fit follows the eager
            fit with the same seed (up to float rounding).  Single-process training only.
        num_data_loader_workers: accepted for CTM compatibility; unused (batches are indexed
            on the device, with no DataLoader).
    """

    def __init__(self, views: Sequence[str], n_components: int = 100, model_type: str = "prodLDA",
                 hidden_sizes: Sequence[int] = (100,), activation: str = "softplus",
                 dropout: float = 0.2, learn_priors: bool = True, batch_size: int = 32,
                 lr: float = 2e-3, momentum: float = 0.99, solver: str = "adam",
                 num_epochs: int = 100, reduce_on_plateau: bool = False, temperature: float = 0.07,
                 similarity: str = "cosine", loss_weights: Mapping[str, float] | None = None,
                 pair_kl_on: str = "theta", device: Any = None, random_state: int | None = None,
                 num_data_loader_workers: int = 0, torch_compile: bool = False, posterior_norm: str = "ctm",
                 contrastive_reduction: str = "mean") -> None:
        # CTM's constructor builds a one-view network and its optimizer from sizes given up
        # front; this model learns its sizes from the dataset in ``fit``, so it sets CTM's
        # attributes itself instead of calling ``super().__init__``.
        if isinstance(views, str) or not isinstance(views, Sequence) or not views:
            raise TypeError("views must be a non-empty list of view names, e.g. ['en', 'de', 'image']")
        if not all(isinstance(v, str) and v for v in views):
            raise TypeError(f"view names must be non-empty strings, got {list(views)!r}")
        if len(set(views)) != len(views):
            raise ValueError(f"views has a repeated name: {list(views)}")
        _check_int("n_components", n_components, 1)
        _check_int("batch_size", batch_size, 2)
        _check_int("num_epochs", num_epochs, 0)
        if model_type not in ("prodLDA", "LDA"):
            raise ValueError(f"model_type must be 'prodLDA' or 'LDA', got {model_type!r}")
        if isinstance(hidden_sizes, int):
            hidden_sizes = (hidden_sizes,)
        hidden_sizes = tuple(hidden_sizes)
        if not hidden_sizes or not all(isinstance(h, int) and h > 0 for h in hidden_sizes):
            raise ValueError(f"hidden_sizes must be a non-empty tuple of positive ints, got {hidden_sizes!r}")
        if activation not in ("softplus", "relu"):
            raise ValueError(f"activation must be 'softplus' or 'relu', got {activation!r}")
        if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if not isinstance(learn_priors, bool):
            raise TypeError("learn_priors must be a bool")
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if not (isinstance(momentum, (int, float)) and 0 < momentum <= 1):
            raise ValueError(f"momentum must be in (0, 1], got {momentum!r}")
        if solver not in ("adam", "sgd"):
            raise ValueError(f"solver must be 'adam' or 'sgd', got {solver!r}")
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if similarity not in ("dot", "cosine"):
            raise ValueError(f"similarity must be 'dot' or 'cosine', got {similarity!r}")
        if pair_kl_on not in ("posterior", "theta"):
            raise ValueError(f"pair_kl_on must be 'posterior' or 'theta', got {pair_kl_on!r}")
        if posterior_norm not in POSTERIOR_NORMS:
            raise ValueError(f"posterior_norm must be one of {POSTERIOR_NORMS}, got {posterior_norm!r}")
        if contrastive_reduction not in ("mean", "sum"):
            raise ValueError(f"contrastive_reduction must be 'mean' or 'sum', got {contrastive_reduction!r}")
        weights = dict(DEFAULT_LOSS_WEIGHTS)
        if loss_weights is not None:
            if not isinstance(loss_weights, Mapping):
                raise TypeError("loss_weights must be a dict, e.g. {'prior_kl': 1, 'pair_kl': 1, 'contrastive': 50}")
            unknown = set(loss_weights) - set(DEFAULT_LOSS_WEIGHTS)
            if unknown:
                raise ValueError(f"unknown loss_weights key(s) {sorted(unknown)}; known: {sorted(DEFAULT_LOSS_WEIGHTS)}")
            for key, value in loss_weights.items():
                if not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
                    raise ValueError(f"loss_weights[{key!r}] must be a finite number >= 0, got {value!r}")
                weights[key] = float(value)
            if not any(weights.values()):
                raise ValueError(f"loss_weights are all 0 ({weights}): nothing would be trained")
        if random_state is not None and not isinstance(random_state, int):
            raise TypeError("random_state must be an int or None")
        if not isinstance(torch_compile, bool):
            raise TypeError("torch_compile must be a bool")

        self.views = list(views)
        self.n_components = n_components
        self.model_type = model_type
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.dropout = float(dropout)
        self.learn_priors = learn_priors
        self.batch_size = batch_size
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.solver = solver
        self.num_epochs = num_epochs
        self.reduce_on_plateau = reduce_on_plateau
        self.temperature = float(temperature)
        self.similarity = similarity
        self.pair_kl_on = pair_kl_on
        self.posterior_norm = posterior_norm
        self.contrastive_reduction = contrastive_reduction
        self.weights = weights
        self.random_state = random_state
        self.num_data_loader_workers = num_data_loader_workers
        self.torch_compile = torch_compile
        self.device = _resolve_device(device)
        self.USE_CUDA = self.device.type == "cuda"

        # Learned from the training dataset.
        self.view_kinds: dict[str, str] = {}
        self.embedding_sizes: dict[str, int] = {}
        self.vocabularies: dict[str, list[str]] = {}
        self.model: MultiViewDecoderNetwork | None = None
        self.optimizer = None
        self.scheduler = None
        self.history: list[dict[str, float]] = []
        # Data-parallel state, set by fit(distributed=True): {"rank", "world"} and the DDP module.
        self._dist: dict[str, int] | None = None
        self._objective = None
        self._compiled = None  # torch.compile'd _terms while fit runs with torch_compile
        # CTM's attributes, kept so CTM code that reads them still works.
        self.training_doc_topic_distributions = None
        self.early_stopping = None
        self.best_loss_train = float("inf")
        self.model_dir = None
        self.nn_epoch = None
        self.validation_data = None
        self.best_components = None

    # -- properties -------------------------------------------------------------------------
    @property
    def language_views(self) -> list[str]:
        """The text views, in order: each has its own vocabulary and topic-word matrix."""
        return [v for v in self.views if self.view_kinds.get(v) == "text"]

    @property
    def image_views(self) -> list[str]:
        return [v for v in self.views if self.view_kinds.get(v) == "image"]

    def _check_fitted(self) -> None:
        if self.model is None:
            raise RuntimeError("this M3LTM is not fitted yet: call fit(dataset) or M3LTM.load(path)")

    # -- building -----------------------------------------------------------------------------
    def _bind(self, dataset: MultiViewDataset) -> None:
        """Learn view kinds and sizes from ``dataset`` and build the network (first fit)."""
        if not isinstance(dataset, MultiViewDataset):
            raise TypeError(
                f"fit expects a MultiViewDataset (from M3LDataPreparation.fit), got {type(dataset).__name__}")
        unknown = [v for v in self.views if v not in dataset.view_names]
        if unknown:
            raise ValueError(f"view(s) {unknown} are not in the dataset, whose views are {dataset.view_names}")
        kinds = {v.name: v.kind for v in dataset.views}
        sizes = {v: int(dataset.embeddings[v].shape[1]) for v in self.views}
        if self.model is not None:
            if any(kinds[v] != self.view_kinds[v] or sizes[v] != self.embedding_sizes[v] for v in self.views) \
                    or any(dataset.vocabularies[v] != self.vocabularies[v] for v in self.language_views):
                raise ValueError("this dataset's views, embedding sizes or vocabularies differ from the "
                                 "ones the model was fitted on; prepare it with the same M3LDataPreparation")
            return
        if not any(kinds[v] == "text" for v in self.views):
            raise ValueError(f"views {self.views} include no text view; at least one language is needed for topics")
        empty = [v for v in self.views if not dataset.has_view(v).any()]
        if empty:
            raise ValueError(f"view(s) {empty} have no items in the training data; their networks cannot learn")
        self.view_kinds = {v: kinds[v] for v in self.views}
        self.embedding_sizes = sizes
        self.vocabularies = {v: list(dataset.vocabularies[v]) for v in self.language_views}
        self._build_network()

    def _new_network(self) -> MultiViewDecoderNetwork:
        vocab_sizes = {self.views.index(v): len(self.vocabularies[v]) for v in self.language_views}
        return MultiViewDecoderNetwork(
            [self.embedding_sizes[v] for v in self.views], vocab_sizes, self.n_components,
            self.model_type, self.hidden_sizes, self.activation, self.dropout, self.learn_priors,
            posterior_norm=self.posterior_norm,
        )

    def _build_network(self) -> None:
        if self.random_state is not None:
            torch.manual_seed(self.random_state)
        self.model = self._new_network().to(self.device)
        if self.solver == "adam":
            try:
                # One fused kernel instead of a Python loop over parameters (~1.5 ms of a
                # ~17 ms CPU step here); older torch builds lack it on CPU.
                self.optimizer = optim.Adam(self.model.parameters(), lr=self.lr, betas=(self.momentum, 0.99),
                                            fused=True)
            except (RuntimeError, TypeError, ValueError):
                self.optimizer = optim.Adam(self.model.parameters(), lr=self.lr, betas=(self.momentum, 0.99))
        else:
            self.optimizer = optim.SGD(self.model.parameters(), lr=self.lr, momentum=self.momentum)
        self.scheduler = ReduceLROnPlateau(self.optimizer, patience=10) if self.reduce_on_plateau else None

    # -- data on the device -------------------------------------------------------------------
    def _device_data(self, dataset: MultiViewDataset) -> dict[str, Any]:
        """The dataset's model views as device tensors.  The languages' bags of words stay
        sparse: one CSR matrix whose columns are every language's vocabulary in turn."""
        columns = [dataset.view_index(v) for v in self.views]
        mask = dataset.view_mask[:, columns]
        embeddings = [torch.from_numpy(np.ascontiguousarray(dataset.embeddings[v], dtype=np.float32)).to(self.device)
                      for v in self.views]
        # A tuple lacking a language contributes no words of it, whatever its row holds.
        parts = [sp.diags(mask[:, self.views.index(v)].astype(np.float32)) @ dataset.bow[v].tocsr()
                 for v in self.language_views]
        csr = sp.hstack(parts, format="csr", dtype=np.float32)
        csr.sum_duplicates()
        csr.eliminate_zeros()
        bow = {
            "width": csr.shape[1],
            "indptr_host": csr.indptr.astype(np.int64),
            "indptr": torch.from_numpy(csr.indptr.astype(np.int64)).to(self.device),
            "indices": torch.from_numpy(csr.indices.astype(np.int64)).to(self.device),
            "data": torch.from_numpy(csr.data.astype(np.float32)).to(self.device),
        }
        return {"mask": mask, "embeddings": embeddings, "bow": bow, "n": len(dataset)}

    def _batches(self, n: int, generator: torch.Generator | None, shuffle: bool) -> list[np.ndarray]:
        """Global batches of tuple indices (``batch_size`` per rank when distributed)."""
        size = self.batch_size * self._world
        order = torch.randperm(n, generator=generator).numpy() if shuffle else np.arange(n)
        batches = [order[s:s + size] for s in range(0, n, size)]
        if len(batches) > 1 and len(batches[-1]) < 2 * self._world:
            # Too small to give every rank rows (or one tuple: no negatives, no batch
            # statistics): fold it into the previous batch.
            batches[-2] = np.concatenate([batches[-2], batches[-1]])
            batches.pop()
        return batches

    @property
    def _world(self) -> int:
        return self._dist["world"] if self._dist else 1

    def _bow_entries(self, bow: dict, rows: torch.Tensor,
                     rows_host: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(position in rows, word column, count)`` of the nonzero counts of the given rows,
        gathered from the CSR arrays on the device (the host only sizes the result)."""
        indptr_host = bow["indptr_host"]
        total = int((indptr_host[rows_host + 1] - indptr_host[rows_host]).sum())
        indptr = bow["indptr"]
        starts = indptr.index_select(0, rows)
        counts = indptr.index_select(0, rows + 1) - starts
        row_of = torch.repeat_interleave(torch.arange(len(rows_host), device=self.device), counts,
                                         output_size=total)
        offsets = torch.cumsum(counts, 0) - counts
        position = (starts - offsets).index_select(0, row_of) + torch.arange(total, device=self.device)
        return row_of, bow["indices"].index_select(0, position), bow["data"].index_select(0, position)

    # -- the objective ------------------------------------------------------------------------
    def _batch_terms(self, data: dict, batch_host: np.ndarray) -> dict[str, torch.Tensor]:
        """Loss terms of one global batch: this rank's sums and the global InfoNCE.

        Every view of every tuple goes through the network together; the views a tuple lacks
        are masked out of the batch statistics and of every term.  Single process: the whole
        batch.  Distributed: this rank's contiguous slice of it; the noise of the whole batch
        is drawn on every rank (same seed), batch norm spans all ranks and thetas are
        all-gathered for InfoNCE, so the terms equal one big batch's.
        """
        net = self.model
        dist_info = self._dist
        n_views, k = len(self.views), self.n_components
        if dist_info:
            bounds = np.linspace(0, len(batch_host), self._world + 1).round().astype(int)
            rank = dist_info["rank"]
        else:
            bounds, rank = (0, len(batch_host)), 0
        local_host = batch_host[bounds[rank]:bounds[rank + 1]]
        batch = torch.from_numpy(local_host).to(self.device)
        mask_host = data["mask"][local_host]  # (b, V) on the host: no device sync to plan the batch
        # (V, b) view mask; None when every tuple has every view (one fused batch norm, no
        # masking, nothing copied to the device).  Ranks always pass the mask: their batch-norm
        # all_reduce must have the same shape everywhere.
        present = None if mask_host.all() and not dist_info else \
            torch.from_numpy(np.ascontiguousarray(mask_host.T)).to(self.device)
        embeddings = [e.index_select(0, batch) for e in data["embeddings"]]
        # Noise for the whole global batch (the same draw on every rank), this rank's rows.
        noise = torch.randn(n_views, len(batch_host), k, device=self.device)[:, bounds[rank]:bounds[rank + 1]]
        bow = self._bow_entries(data["bow"], batch, local_host)
        if self._compiled is not None and net.training:
            rows, words, counts = bow
            dense = torch.zeros(len(local_host), data["bow"]["width"], device=self.device)
            dense = dense.index_put_((rows, words), counts)
            try:
                return self._compiled(embeddings, noise, dense, present)
            except torch._dynamo.exc.TorchDynamoException as error:  # e.g. no C++ compiler
                warnings.warn(f"torch.compile failed ({type(error).__name__}: {str(error)[:300]}); "
                              "training continues without it")
                self._compiled = None
        if not dist_info:
            return self._terms(embeddings, noise, bow, present)
        global_mask = data["mask"][batch_host]
        global_present = None if global_mask.all() else \
            torch.from_numpy(np.ascontiguousarray(global_mask.T)).to(self.device)
        return self._terms(embeddings, noise, bow, present,
                           gather=lambda theta: self._gather_batch(theta, bounds), global_present=global_present)

    def _terms(self, embeddings: list[torch.Tensor], noise: torch.Tensor,
               bow: torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor], present: torch.Tensor | None,
               gather=None, global_present: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The loss terms of one batch from its views' embeddings, noise ``(V, b, K)``, bags of
        words (dense ``(b, W)``, or ``(row, word, count)`` entries) and view mask.  With
        ``gather`` (distributed), InfoNCE runs on the gathered global batch's thetas, whose
        mask is ``global_present``."""
        net = self.model
        mu, logvar = net.posteriors(embeddings, present)
        theta = net.theta_from_noise(mu, logvar, noise)  # (V, b, K)
        # A term weighted 0 is computed for the record only, outside the graph, except under DDP,
        # which expects every parameter (the prior's too) to get a gradient at every step.
        w, keep = self.weights, bool(self._dist)
        with _differentiable(w["reconstruction"], keep):
            log_probs = net.all_word_log_probs(theta, present)  # (b, W): every language side by side
            rec = (reconstruction_loss(bow, log_probs) if isinstance(bow, torch.Tensor)
                   else sparse_reconstruction_loss(log_probs, *bow)).sum()
        zero = torch.zeros((), device=mu.device)
        with _differentiable(w["prior_kl"], keep):  # reported whatever its weight
            kl = prior_kl(mu, logvar, net.prior_mean, net.prior_variance)  # (V, b)
            pkl = kl.sum() if present is None else torch.where(present, kl, zero).sum()
        n_views = mu.shape[0]
        with _differentiable(w["pair_kl"], keep):
            if n_views == 1:
                pair = zero
            elif self.pair_kl_on == "theta":
                pair = pairwise_theta_kl(theta, present).sum()
            else:
                pair = pairwise_view_kl(mu, logvar, present).sum()
        if gather is not None:
            theta, present = gather(theta), global_present
        with _differentiable(w["contrastive"], keep):
            contrastive = multiview_info_nce(theta, present, self.temperature, self.similarity,
                                             self.contrastive_reduction) if n_views > 1 else zero
        local = _weighted_sum([(w["reconstruction"], rec), (w["prior_kl"], pkl), (w["pair_kl"], pair)], zero, keep)
        # DDP averages gradients over ranks: scaling the per-tuple sums by the world size makes
        # the average the gradient of the global batch's sum (InfoNCE's gradient already
        # arrives summed over ranks through the all-gather).
        loss = _weighted_sum([(self._world, local), (w["contrastive"], contrastive)], zero, keep)
        return {"loss": loss, "reconstruction": rec, "prior_kl": pkl, "pair_kl": pair,
                "contrastive": contrastive}

    def _compile_terms(self):
        """``_terms`` compiled as ``fit(torch_compile=True)`` runs it.  Static shapes: one graph
        per batch size met (the full batches and the last one).  fallback_random: dropout draws
        from torch's own generator, as eagerly, so a compiled fit draws the same masks as an
        eager fit with the same seed (and, on CPU, faster than inductor's per-element one).

        The graphs are cached on ``_terms``'s code, shared by every M3LTM of the process, and
        dynamo stops compiling a function after ``recompile_limit`` (8) shapes and runs it
        eagerly for good: a process that fits models with several batch sizes, topic numbers
        or vocabularies (an ablation, ``reproduce``'s workers) would silently lose compilation
        after a few fits.  The compiled calls run with a limit of at least
        ``_RECOMPILE_LIMIT`` shapes."""
        compiled = torch.compile(self._terms, dynamic=False, options={"fallback_random": True})
        config = torch._dynamo.config

        def terms(*args):  # config.patch does the same in ~30 us a step, this in ~6
            limit = config.recompile_limit
            config.recompile_limit = max(limit, _RECOMPILE_LIMIT)
            try:
                return compiled(*args)
            finally:
                config.recompile_limit = limit
        return terms

    def _gather_batch(self, theta: torch.Tensor, bounds: np.ndarray) -> torch.Tensor:
        """``(V, B, K)`` thetas of the whole global batch, gradients flowing to every rank."""
        sizes = np.diff(bounds)
        width = int(sizes.max())
        padded = torch.zeros(theta.shape[0], width, theta.shape[2], device=theta.device, dtype=theta.dtype)
        padded = padded.index_copy(1, torch.arange(theta.shape[1], device=theta.device), theta) \
            if theta.shape[1] else padded
        parts = _GatherWithGradient.apply(padded)  # (world, V, width, K)
        return torch.cat([parts[r, :, :size] for r, size in enumerate(sizes)], dim=1)

    def _run_epoch(self, data: dict, generator: torch.Generator | None, train: bool) -> dict[str, float]:
        self.model.train(train)
        step = self._objective if train and self._objective is not None else self._batch_terms
        keys = ["reconstruction", "prior_kl", "pair_kl", "contrastive", "loss"]
        totals = torch.zeros(len(keys), device=self.device)  # summed on the device: no sync per step
        batches = self._batches(data["n"], generator, shuffle=train)
        with torch.set_grad_enabled(train):
            for batch_host in batches:
                terms = step(data, batch_host)
                if train:
                    if not terms["loss"].requires_grad:
                        raise ValueError(f"the loss of this {len(self.views)}-view model has no term with a weight "
                                         f"above 0 (loss_weights {self.weights}): nothing to train")
                    self.optimizer.zero_grad(set_to_none=True)
                    terms["loss"].backward()
                    self.optimizer.step()
                totals += torch.stack([terms[key].detach() for key in keys])
        if self._dist:
            import torch.distributed as dist

            local = totals.clone()
            dist.all_reduce(local)  # per-tuple sums add up over ranks
            totals = torch.cat([local[:3], totals[3:4], local[4:5] / self._world])
        values = dict(zip(keys, totals.tolist()))  # one host sync per epoch
        # Sums over tuples are reported per tuple; the contrastive term (a mean per batch) as
        # its mean over batches.
        out = {key: values[key] / data["n"] for key in ("loss", "reconstruction", "prior_kl", "pair_kl")}
        out["contrastive"] = values["contrastive"] / max(len(batches), 1)
        if not all(math.isfinite(v) for v in out.values()):
            raise FloatingPointError(
                f"the loss became {out} (not finite); lower lr, check the embeddings' scale, or "
                "use similarity='cosine'")
        return out

    # -- fit ------------------------------------------------------------------------------------
    def fit(self, train_dataset: MultiViewDataset, validation_dataset: MultiViewDataset | None = None,
            save_dir: str | os.PathLike | None = None, verbose: bool = False, patience: int = 5,
            delta: float = 0, n_samples: int = 20, do_train_predictions: bool = False,
            progress_bar: bool = True, checkpoint_dir: str | os.PathLike | None = None,
            checkpoint_every: int = 1, resume_from: str | os.PathLike | None = None,
            distributed: bool = False) -> "M3LTM":
        """Train on ``train_dataset``.

        Args:
            train_dataset: a :class:`MultiViewDataset` from ``M3LDataPreparation.fit``.
            validation_dataset: prepared with the same preparation; training stops when its
                loss has not improved by more than ``delta`` for ``patience`` epochs, and the
                best epoch's weights are kept (CTM's early stopping).
            save_dir: save the final (or best) model there (see :meth:`save`).
            verbose: print every loss term per epoch.
            n_samples: samples averaged for ``training_doc_topic_distributions`` when
                ``do_train_predictions`` is set.
            progress_bar: show a tqdm bar over epochs.
            checkpoint_dir: write ``checkpoint.safetensors`` there every ``checkpoint_every``
                epochs (atomically: a killed run leaves the previous checkpoint intact), with
                the optimizer, random-number and early-stopping state.
            resume_from: a checkpoint file (or the directory holding it) to continue from;
                with the same data and seed the run ends with the same weights as one that
                was never interrupted.
            distributed: data-parallel training under ``torchrun`` (DistributedDataParallel):
                every rank trains on its slice of each global batch of
                ``batch_size * world_size`` tuples; batch norm and the InfoNCE negatives span
                all ranks, so the loss and gradients are those of one big batch. Only rank 0
                prints, checkpoints and saves. See the README, "Several GPUs".

        Returns:
            self.
        """
        if distributed:
            self._setup_distributed()
        self._bind(train_dataset)
        if validation_dataset is not None:
            if not isinstance(validation_dataset, MultiViewDataset):
                raise TypeError("validation_dataset must be a MultiViewDataset")
            missing = [v for v in self.views if v not in validation_dataset.view_names]
            if missing:
                raise ValueError(f"validation_dataset lacks view(s) {missing}")
            self._check_compatible(validation_dataset, "validation_dataset")
            _check_int("patience", patience, 1)
        if len(train_dataset) < 2:
            raise ValueError("training needs at least 2 tuples (contrastive negatives come from other tuples)")
        if len(self.views) == 1 and self.weights["prior_kl"] == 0:
            warnings.warn(f"a one-view M3LTM ({self.views[0]!r}) has no pairwise KL and no InfoNCE, and with "
                          "loss_weights['prior_kl'] = 0 (the default) nothing regularises its posterior: it "
                          "trains as an autoencoder. For a one-view topic model pass "
                          "loss_weights={'prior_kl': 1} (CTM's VAE objective) or use ZeroShotTM")
        self.model_dir = save_dir
        self.validation_data = validation_dataset
        seed = self.random_state if self.random_state is not None else int(torch.randint(0, 2**62, (1,)).item())
        if distributed:
            import torch.distributed as dist
            from torch.nn.parallel import DistributedDataParallel

            shared = torch.tensor([seed], dtype=torch.int64, device=self.device)
            dist.broadcast(shared, 0)  # one batch order and one noise stream on every rank
            seed = int(shared.item())
            self.model.use_global_batch_norm()
            self._objective = DistributedDataParallel(
                _Objective(self), device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.torch_compile:
                warnings.warn("torch_compile is for single-process training; distributed training runs eagerly")
        elif self.torch_compile:
            self._compiled = self._compile_terms()
        main = self.is_main_process
        progress_bar, verbose = progress_bar and main, verbose and main
        generator = torch.Generator()
        generator.manual_seed(seed)
        torch.manual_seed(seed)
        _check_int("checkpoint_every", checkpoint_every, 1)
        train_data = self._device_data(train_dataset)
        val_data = self._device_data(validation_dataset) if validation_dataset is not None else None
        best_val, best_state, stale, first_epoch = float("inf"), None, 0, 0
        digests = {}
        if checkpoint_dir is not None or resume_from is not None:
            digests["train"] = dataset_digest(train_dataset, self.views)
            if validation_dataset is not None:
                digests["validation"] = dataset_digest(validation_dataset, self.views)
        if resume_from is not None:
            first_epoch, best_val, stale, best_state = self._restore_checkpoint(resume_from, generator, digests)
            if val_data is not None and stale >= patience:
                first_epoch = self.num_epochs  # that run had already stopped early
        bar = tqdm(range(first_epoch, self.num_epochs), disable=not progress_bar, desc="M3LTM", leave=True,
                   initial=first_epoch, total=self.num_epochs)
        for epoch in bar:
            self.nn_epoch = epoch
            start = time.perf_counter()
            record = {"epoch": epoch + 1, **self._run_epoch(train_data, generator, train=True)}
            if not math.isfinite(record["loss"]):
                self._diverged(f"epoch {epoch + 1}'s loss is {record['loss']}", checkpoint_dir)
            if self.scheduler is not None:
                self.scheduler.step(record["loss"])
            if val_data is not None:
                val = self._run_epoch(val_data, None, train=False)
                record.update({f"val_{k}": v for k, v in val.items()})
            record["seconds"] = time.perf_counter() - start
            self.history.append(record)
            self.best_loss_train = min(self.best_loss_train, record["loss"])
            bar.set_postfix(loss=f"{record['loss']:.2f}",
                            **({"val": f"{record['val_loss']:.2f}"} if val_data is not None else {}))
            if verbose:
                print(_format_record(record, self.num_epochs))
            if val_data is not None:
                if record["val_loss"] < best_val - delta:
                    best_val, stale = record["val_loss"], 0
                    best_state = copy.deepcopy(self.model.state_dict())
                else:
                    stale += 1
            if checkpoint_dir is not None and main and (
                    (epoch + 1) % checkpoint_every == 0 or epoch + 1 == self.num_epochs):
                self._write_checkpoint(checkpoint_dir, epoch + 1, generator, best_val, stale, best_state, digests)
            if val_data is not None and stale >= patience:
                if verbose:
                    print(f"Early stopping after epoch {epoch + 1}; keeping the weights of the best epoch")
                break
        bar.close()
        self._objective = self._compiled = None
        if best_state is not None:
            self.model.load_state_dict(best_state)
        bad = check_finite(self.model.state_dict())
        if bad:
            self._diverged(f"after the last step {', '.join(bad)} hold NaN or infinity", checkpoint_dir)
        self.best_components = self.model.topic_word_matrix(0).detach()
        if do_train_predictions:
            self.training_doc_topic_distributions = {
                v: self.get_thetas(train_dataset, view=v, n_samples=n_samples) for v in self.views}
        if save_dir is not None and main:
            self.save(save_dir)
        return self

    def _diverged(self, what: str, checkpoint_dir: Any) -> None:
        self._objective = self._compiled = None
        where = (f"; the checkpoint in {checkpoint_dir} holds the last finite epoch" if checkpoint_dir is not None
                 else "")
        raise FloatingPointError(f"training diverged: {what}. Lower lr (now {self.lr}) or the contrastive "
                                 f"weight{where}")

    def _check_compatible(self, dataset: MultiViewDataset, name: str) -> None:
        """``dataset`` must have been prepared like the training data: the same vocabularies
        and embedding sizes for the model's views (other words in the same columns would be
        read as this model's words)."""
        for view in self.views:
            if view not in dataset.view_names:
                continue
            size = dataset.embeddings[view].shape[1]
            if size != self.embedding_sizes[view]:
                raise ValueError(f"{name}, view {view!r}: {size}-d embeddings, but the model was trained on "
                                 f"{self.embedding_sizes[view]}-d ones; prepare it with the training data's "
                                 "M3LDataPreparation")
            if view in self.vocabularies and dataset.vocabularies.get(view) != self.vocabularies[view]:
                raise ValueError(f"{name}, view {view!r}: its vocabulary is not the one the model was trained "
                                 "on, so its bag-of-words columns mean other words; prepare it with "
                                 "prep.transform(...) of the training data's M3LDataPreparation")

    @property
    def is_main_process(self) -> bool:
        """False on every rank but 0 of a distributed run (those neither print nor save)."""
        return not self._dist or self._dist["rank"] == 0

    def _setup_distributed(self) -> None:
        import torch.distributed as dist

        if not dist.is_available():
            raise RuntimeError("distributed=True: this torch build has no torch.distributed")
        if not dist.is_initialized():
            if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
                raise RuntimeError(
                    "distributed=True needs a process group: run under torchrun "
                    "(torchrun --nproc_per_node=N your_script.py) or call "
                    "torch.distributed.init_process_group first")
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", dist.get_rank() % torch.cuda.device_count()))
            self.device = torch.device("cuda", local)
            torch.cuda.set_device(self.device)
            if self.model is not None:
                self.model.to(self.device)
        self._dist = {"rank": dist.get_rank(), "world": dist.get_world_size()}

    # -- inference --------------------------------------------------------------------------------
    def _resolve_view(self, dataset: MultiViewDataset, view: str | None) -> str:
        if view is None:
            present = [v for v in self.views if v in dataset.view_names and dataset.has_view(v).any()]
            if len(present) != 1:
                raise ValueError(f"this dataset has items in views {present}; say which with view=...")
            return present[0]
        if view not in self.views:
            raise ValueError(f"unknown view {view!r}; the model's views are {self.views}")
        if view not in dataset.view_names:
            raise ValueError(f"view {view!r} is not in this dataset, whose views are {dataset.view_names}")
        return view

    def get_thetas(self, dataset: MultiViewDataset, n_samples: int = 20, view: str | None = None,
                   seed: int | None = None, batch_size: int = 4096) -> np.ndarray:
        """Topic distributions of ``dataset``'s items in one view.

        Each item goes through that view's inference network alone; ``n_samples`` samples of
        ``softmax(mu + sigma * eps)`` are averaged, as in CTM.

        Args:
            dataset: a :class:`MultiViewDataset` (e.g. ``prep.transform(texts, view="de")``).
            n_samples: samples averaged per item (paper: 20); 0: no sampling, the proportions
                at the posterior mean, ``softmax(mu)`` (deterministic, and as peaked as the
                posterior's centre: averaging samples of a wide posterior flattens the mixture).
            view: which view; may be left out when the dataset has items in one view only.
            seed: seed of the sampling noise, for repeatable results; each view draws its
                own noise from it (:func:`view_seed`), so the same seed for two views does not
                make their distributions alike.

        Returns:
            ``(n, K)`` array whose rows sum to 1; rows of tuples that lack the view are NaN.
        """
        self._check_fitted()
        if not isinstance(dataset, MultiViewDataset):
            raise TypeError(f"expected a MultiViewDataset, got {type(dataset).__name__}")
        _check_int("n_samples", n_samples, 0)
        view = self._resolve_view(dataset, view)
        self._check_compatible(dataset, "dataset")
        a = self.views.index(view)
        embeddings = dataset.embeddings[view]
        rows = np.flatnonzero(dataset.has_view(view))
        out = np.full((len(dataset), self.n_components), np.nan)
        if len(rows) < len(dataset):
            warnings.warn(f"{len(dataset) - len(rows)} of {len(dataset)} tuples have no {view!r} view; "
                          "their rows are NaN", stacklevel=2)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(view_seed(seed, view))
        self.model.eval()
        with torch.no_grad():
            for s in range(0, len(rows), batch_size):
                chunk = rows[s:s + batch_size]
                x = torch.from_numpy(np.ascontiguousarray(embeddings[chunk], dtype=np.float32)).to(self.device)
                mu, logvar = self.model.posterior(a, x)
                if n_samples == 0:  # no sampling: the topic proportions at the posterior mean
                    theta = torch.softmax(mu, dim=-1)
                else:
                    eps = torch.randn((n_samples, *mu.shape), generator=generator, device=self.device)
                    theta = self.model.theta_from_noise(mu, logvar, eps).mean(dim=0)
                out[chunk] = theta.double().cpu().numpy()
        out[rows] /= out[rows].sum(axis=1, keepdims=True)
        return out

    #: Shared with the baselines (``ctm_m3l.baselines.Baseline``): retrieval compares topic
    #: distributions by Jensen-Shannon divergence.
    name = "m3l"
    distance = "jsd"
    has_topics = True

    def represent(self, dataset: MultiViewDataset, view: str, seed: int | None = 0) -> np.ndarray:
        """What retrieval compares: the topic distributions of ``view`` (see ``distance``)."""
        return self.get_thetas(dataset, view=view, seed=seed)

    def get_doc_topic_distribution(self, dataset: MultiViewDataset, n_samples: int = 20,
                                   view: str | None = None, seed: int | None = None) -> np.ndarray:
        """CTM's name for :meth:`get_thetas`."""
        return self.get_thetas(dataset, n_samples=n_samples, view=view, seed=seed)

    def transform(self, dataset: MultiViewDataset, view: str | None = None, n_samples: int = 20,
                  seed: int | None = None) -> np.ndarray:
        """scikit-learn's name for :meth:`get_thetas`."""
        return self.get_thetas(dataset, n_samples=n_samples, view=view, seed=seed)

    def get_predicted_topics(self, dataset: MultiViewDataset, n_samples: int = 20,
                             view: str | None = None, seed: int | None = None) -> np.ndarray:
        """The most likely topic of every item (-1 where the tuple lacks the view)."""
        theta = self.get_thetas(dataset, n_samples=n_samples, view=view, seed=seed)
        top = np.full(len(theta), -1)
        ok = ~np.isnan(theta).any(axis=1)
        top[ok] = theta[ok].argmax(axis=1)
        return top

    predict = get_predicted_topics

    def get_item_topics(self, dataset: MultiViewDataset, view: str | None = None,
                        language: str | None = None, n_topics: int = 3, k: int = 10,
                        n_samples: int = 20, seed: int | None = None) -> list[list[tuple[int, float, list[str]]]]:
        """Each item's top topics as ``(topic, probability, words in `language`)``.

        This is how an image gets words: its topics come from the image network, their words
        from any language's topic-word matrix (``language="de"`` labels images in German).
        Items of tuples that lack the view get an empty list.
        """
        words = self.get_topic_lists(k=k, language=language)
        theta = self.get_thetas(dataset, n_samples=n_samples, view=view, seed=seed)
        out = []
        for row in theta:
            if np.isnan(row).any():
                out.append([])
                continue
            top = np.argsort(-row)[:n_topics]
            out.append([(int(t), float(row[t]), words[t]) for t in top])
        return out

    # -- topics -------------------------------------------------------------------------------------
    def _language(self, language: str | None) -> str:
        self._check_fitted()
        if language is None:
            if len(self.language_views) == 1:
                return self.language_views[0]
            raise ValueError(f"this model has several languages {self.language_views}; pass language=...")
        if language in self.image_views:
            raise ValueError(
                f"{language!r} is an image view and has no vocabulary; image views borrow the words "
                f"of the topics: use language= one of {self.language_views}")
        if language not in self.language_views:
            raise ValueError(f"unknown language {language!r}; the model's languages are {self.language_views}")
        return language

    def get_topic_word_matrix(self, language: str | None = None) -> np.ndarray:
        """``(K, W)`` topic-word weights of ``language`` (unnormalised for prodLDA, as CTM)."""
        index = self.language_views.index(self._language(language))
        return self.model.topic_word_matrix(index).detach().cpu().numpy()

    def get_topic_word_distribution(self, language: str | None = None) -> np.ndarray:
        """``(K, W)`` rows summing to 1."""
        matrix = self.get_topic_word_matrix(language)
        return matrix if self.model_type == "LDA" else softmax(matrix, axis=1)

    def get_topic_lists(self, k: int = 10, language: str | None = None) -> list[list[str]]:
        """The ``k`` top words of every topic in ``language``; topic ``i`` is aligned across
        languages (the same topic, in each language's words)."""
        language = self._language(language)
        vocabulary = self.vocabularies[language]
        _check_int("k", k, 1)
        if k > len(vocabulary):
            raise ValueError(f"k={k} is larger than the {language!r} vocabulary ({len(vocabulary)} words)")
        matrix = self.get_topic_word_matrix(language)
        top = np.argsort(-matrix, axis=1, kind="stable")[:, :k]
        return [[vocabulary[j] for j in row] for row in top]

    def get_topics(self, k: int = 10, language: str | None = None) -> dict[int, list[str]]:
        """``{topic: top k words}`` in ``language`` (CTM's format)."""
        return dict(enumerate(self.get_topic_lists(k=k, language=language)))

    def get_word_distribution_by_topic_id(self, topic: int, language: str | None = None) -> list[tuple[str, float]]:
        """``(word, probability)`` of one topic in ``language``, most probable first."""
        if not isinstance(topic, (int, np.integer)) or not 0 <= topic < self.n_components:
            raise ValueError(f"topic must be an int in [0, {self.n_components}), got {topic!r}")
        language = self._language(language)
        dist = self.get_topic_word_distribution(language)[topic]
        return sorted(zip(self.vocabularies[language], dist.tolist()), key=lambda t: -t[1])

    def get_wordcloud(self, topic_id: int, n_words: int = 5, background_color: str = "black",
                      width: int = 1000, height: int = 400, language: str | None = None):
        """Show a word cloud of one topic in ``language`` (CTM's plot, per language)."""
        import matplotlib.pyplot as plt
        import wordcloud

        words = dict(self.get_word_distribution_by_topic_id(topic_id, language)[:n_words])
        plt.figure(figsize=(10, 4), dpi=200)
        plt.axis("off")
        plt.imshow(wordcloud.WordCloud(width=width, height=height, background_color=background_color)
                   .generate_from_frequencies(words))
        plt.title(f"Topic {topic_id} ({self._language(language)})", loc="center", fontsize=24)
        plt.show()

    def get_ldavis_data_format(self, vocab, dataset: MultiViewDataset, n_samples: int = 20,
                               language: str | None = None) -> dict[str, Any]:
        """pyLDAvis input for one language (``vocab`` may be None: the model's vocabulary)."""
        language = self._language(language)
        has = dataset.has_view(language)
        bow = dataset.bow[language][has]
        return {
            "topic_term_dists": self.get_topic_word_distribution(language),
            "doc_topic_dists": self.get_thetas(dataset, n_samples=n_samples, view=language)[has],
            "doc_lengths": np.ravel(bow.sum(axis=1)),
            "vocab": list(vocab) if vocab is not None else self.vocabularies[language],
            "term_frequency": np.ravel(bow.sum(axis=0)),
        }

    # -- persistence ----------------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {
            "views": self.views, "n_components": self.n_components, "model_type": self.model_type,
            "hidden_sizes": list(self.hidden_sizes), "activation": self.activation,
            "dropout": self.dropout, "learn_priors": self.learn_priors, "batch_size": self.batch_size,
            "lr": self.lr, "momentum": self.momentum, "solver": self.solver,
            "num_epochs": self.num_epochs, "reduce_on_plateau": self.reduce_on_plateau,
            "temperature": self.temperature, "similarity": self.similarity,
            "pair_kl_on": self.pair_kl_on, "loss_weights": self.weights, "random_state": self.random_state,
            "torch_compile": self.torch_compile, "posterior_norm": self.posterior_norm,
            "contrastive_reduction": self.contrastive_reduction,
        }

    def _config(self) -> dict[str, Any]:
        return {
            "format": _FORMAT, "format_version": _FORMAT_VERSION, "ctm_m3l_version": __version__,
            "settings": self._settings(), "view_kinds": self.view_kinds,
            "embedding_sizes": self.embedding_sizes, "vocabularies": self.vocabularies,
            "history": self.history,
        }

    def _write_checkpoint(self, directory: str | os.PathLike, epoch: int, generator: torch.Generator,
                          best_val: float, stale: int, best_state: dict | None, digests: dict[str, str]) -> Path:
        """One file, written to a temporary name and renamed over the previous checkpoint; its
        metadata holds a digest of every tensor and entry, and of the data trained on."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        bad = check_finite(tensors)
        if bad:
            raise FloatingPointError(
                f"epoch {epoch}: {', '.join(k[6:] for k in bad)} hold NaN or infinity; training diverged, so "
                f"no checkpoint was written (the one in {directory}, if any, is of an earlier epoch). "
                "Lower lr, or resume from that checkpoint")
        optimizer = self.optimizer.state_dict()
        scalars = {}
        for index, state in optimizer["state"].items():
            for name, value in state.items():
                if torch.is_tensor(value):
                    tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
                else:
                    scalars[f"{index}.{name}"] = value
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.batch_order"] = generator.get_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        for k, v in (best_state or {}).items():
            tensors[f"best.{k}"] = v.detach().cpu().contiguous()
        metadata = {
            "format": _CHECKPOINT_FORMAT, "config": json.dumps(self._config(), ensure_ascii=False),
            "epoch": str(epoch), "best_val": json.dumps(best_val), "stale": str(stale),
            "optimizer_param_groups": json.dumps(optimizer["param_groups"]),
            "optimizer_scalars": json.dumps(scalars),
            "scheduler": json.dumps(self.scheduler.state_dict() if self.scheduler is not None else None),
            "data": json.dumps(digests),
        }
        metadata["sha256"] = tensor_digest(tensors, metadata)
        path = directory / _CHECKPOINT
        write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
        return path

    def _restore_checkpoint(self, path: str | os.PathLike, generator: torch.Generator,
                            digests: dict[str, str]):
        """Restore a checkpoint into this (bound) model; returns the early-stopping state.
        Raises :class:`CheckpointMismatchError` for a damaged checkpoint or one of other
        settings, data or a longer schedule."""
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if path.is_dir():
            path = path / _CHECKPOINT
        if not path.is_file():
            raise CheckpointMismatchError(f"resume_from: {str(path)!r} is not a checkpoint file")
        try:
            with safe_open(str(path), framework="pt") as fh:
                metadata = fh.metadata() or {}
            tensors = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as err:
            raise CheckpointMismatchError(f"resume_from: {path} is not a readable checkpoint ({err})") from err
        if metadata.get("format") != _CHECKPOINT_FORMAT:
            raise CheckpointMismatchError(f"resume_from: {path} is not a ctm-m3l checkpoint")
        saved_digest = metadata.pop("sha256", None)
        if saved_digest is None:
            raise CheckpointMismatchError(
                f"resume_from: {path} carries no checksum (it was written by ctm-m3l 0.1.0 before checkpoints "
                "had one), so it cannot be told from a damaged file; restart the run")
        if tensor_digest(tensors, metadata) != saved_digest:
            raise CheckpointMismatchError(f"resume_from: {path} does not match its checksum; the file was damaged "
                                          "or modified after it was written. Restart the run")
        try:
            config = json.loads(metadata["config"])
            saved_data = json.loads(metadata["data"])
        except (KeyError, ValueError) as err:
            raise CheckpointMismatchError(f"resume_from: {path}: incomplete metadata ({err})") from err
        if config.get("format_version") != _FORMAT_VERSION:
            raise CheckpointMismatchError(
                f"resume_from: {path} was written by ctm-m3l {config.get('ctm_m3l_version')} (format_version "
                f"{config.get('format_version')}), whose network layout this ctm-m3l ({__version__}, format_version "
                f"{_FORMAT_VERSION}) cannot continue; restart the run, or resume it with that version")
        mine, theirs = self._settings(), _saved_settings(config)
        theirs["hidden_sizes"] = list(theirs["hidden_sizes"])
        differ = sorted(k for k in mine if k != "num_epochs" and mine[k] != theirs.get(k))
        if differ:
            raise CheckpointMismatchError(f"resume_from: {path} was written with different settings: {differ}")
        if config["vocabularies"] != self.vocabularies or config["embedding_sizes"] != self.embedding_sizes:
            raise CheckpointMismatchError(
                f"resume_from: {path} was trained on data with other vocabularies or embedding sizes")
        for split, digest in digests.items():
            if saved_data.get(split) != digest:
                what = "no validation data" if saved_data.get(split) is None else f"other {split} data"
                raise CheckpointMismatchError(
                    f"resume_from: {path} was trained on {what} than this fit's {split}_dataset (same "
                    "vocabularies, other tuples or embeddings); resume with the data it was trained on, or "
                    "restart the run")
        if "validation" in saved_data and "validation" not in digests:
            raise CheckpointMismatchError(f"resume_from: {path} was trained with a validation_dataset; pass the "
                                          "same one to resume (early stopping depends on it)")
        epoch = int(metadata["epoch"])
        if epoch > self.num_epochs:
            raise CheckpointMismatchError(
                f"resume_from: {path} is at epoch {epoch}, past this fit's num_epochs={self.num_epochs}; "
                f"resume with num_epochs >= {epoch}")
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        state: dict[int, dict[str, Any]] = defaultdict(dict)
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state[int(index)][name] = value
        for key, value in json.loads(metadata["optimizer_scalars"]).items():
            index, name = key.split(".", 1)
            state[int(index)][name] = value
        self.optimizer.load_state_dict({"state": dict(state),
                                        "param_groups": json.loads(metadata["optimizer_param_groups"])})
        scheduler = json.loads(metadata["scheduler"])
        if self.scheduler is not None and scheduler is not None:
            self.scheduler.load_state_dict(scheduler)
        torch.set_rng_state(tensors["rng.torch"])
        generator.set_state(tensors["rng.batch_order"])
        if self.device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.history = list(config["history"])
        best = {k[5:]: v.to(self.device) for k, v in tensors.items() if k.startswith("best.")} or None
        return epoch, float(json.loads(metadata["best_val"])), int(metadata["stale"]), best

    def save(self, models_dir: str | os.PathLike, preparation: Any = None) -> Path:
        """Save to the folder ``models_dir``: ``model.safetensors`` (tensors), ``config.json``
        (settings, view kinds, sizes, vocabularies, training history), ``preparation.json``
        when ``preparation`` (the :class:`~ctm_m3l.M3LDataPreparation` the data came from) is
        given, and ``manifest.json`` with every file's SHA-256.

        The folder is written in full beside ``models_dir`` and swapped in at once: a save
        killed at any moment leaves the old model or the new one.  Other files in the folder
        are kept; a ``preparation.json`` already there is kept when it matches this model.
        Tensors holding NaN or infinity are refused.  Loading never unpickles.
        """
        from safetensors.torch import save_file

        self._check_fitted()
        if models_dir is None:
            raise ValueError("save needs a directory")
        directory = Path(models_dir)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        bad = check_finite(tensors)
        if bad:
            raise ValueError(f"refusing to save to {directory}: {', '.join(bad)} hold NaN or infinity (training "
                             "diverged); a model that cannot give topic distributions is not saved")
        preparation_config = self._preparation_config(preparation, directory)
        config = self._config()

        def write(folder: Path) -> list[str]:
            save_file(tensors, str(folder / _WEIGHTS))
            (folder / _CONFIG).write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
            if preparation_config is None:
                return [_CONFIG, _WEIGHTS]
            (folder / PREPARATION).write_text(json.dumps(preparation_config, ensure_ascii=False), encoding="utf-8")
            return [_CONFIG, _WEIGHTS, PREPARATION]

        return commit_folder(directory, write)

    def _preparation_config(self, preparation: Any, directory: Path) -> dict | None:
        """What ``save`` writes as ``preparation.json``: the given preparation's settings (checked
        against this model), else the folder's own when it matches this model."""
        if preparation is not None:
            if not hasattr(preparation, "to_config") or not hasattr(preparation, "embedding_sizes"):
                raise TypeError(f"preparation must be the M3LDataPreparation the data came from, got "
                                f"{type(preparation).__name__}")
            config = preparation.to_config(relative_to=directory)
            problem = self._preparation_mismatch(config)
            if problem:
                raise ValueError(f"preparation does not match this model: {problem}")
            return config
        existing = Path(directory) / PREPARATION
        if not existing.is_file():
            return None
        try:
            verify_folder(Path(directory))
            config = read_json(existing, "preparation")
            problem = self._preparation_mismatch(config)
        except ValueError as err:
            problem = str(err)
        if problem:
            warnings.warn(f"{existing} is not kept: {problem}; pass save(..., preparation=prep) to save the "
                          "preparation of this model", stacklevel=3)
            return None
        return config

    def _preparation_mismatch(self, config: Any) -> str | None:
        if not isinstance(config, dict):
            return "it is not an object"
        vocabularies, sizes = config.get("vocabularies") or {}, config.get("embedding_sizes") or {}
        for view in self.views:
            if sizes.get(view) != self.embedding_sizes[view]:
                return (f"view {view!r} has {sizes.get(view)}-d embeddings there, {self.embedding_sizes[view]}-d in "
                        "the model")
        for view in self.language_views:
            if vocabularies.get(view) != self.vocabularies[view]:
                return f"view {view!r} has another vocabulary there than the model's"
        return None

    @classmethod
    def load(cls, model_dir: str | os.PathLike, device: Any = None) -> "M3LTM":
        """Load a model saved with :meth:`save` (no training data needed).

        Every file is checked against the folder's manifest and the sizes in ``config.json``
        against the weights' header before anything is allocated; nothing is unpickled or
        imported.  Raises :class:`~ctm_m3l.persistence.ModelFolderError` (a ``ValueError``)
        naming the file when the folder is not a saved model, its files were changed after
        saving, or its tensors hold NaN or infinity.
        """
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        directory = model_folder(model_dir)
        files = verify_folder(directory)
        config_path, weights_path = directory / _CONFIG, directory / _WEIGHTS
        if not config_path.is_file() or not weights_path.is_file():
            raise ModelFolderError(f"{str(directory)!r} is not a saved M3LTM: it needs {_CONFIG} and {_WEIGHTS}")
        config = read_json(config_path, "model config")
        if not isinstance(config, dict) or config.get("format") != _FORMAT:
            raise ModelFolderError(f"{config_path}: not an M3LTM config (format is not {_FORMAT!r})")
        if config.get("format_version") != _FORMAT_VERSION:
            raise ModelFolderError(f"{config_path}: format_version {config.get('format_version')!r} is not "
                                   f"supported by this ctm-m3l ({_FORMAT_VERSION})")
        if files is None and sha256_file(weights_path) != config.get("weights_sha256"):
            raise ModelFolderError(f"{weights_path}: the weights do not match the checksum in {_CONFIG}; "
                                   "the file was modified or corrupted after saving")
        try:
            settings = _saved_settings(config)
            settings["hidden_sizes"] = tuple(settings["hidden_sizes"])
            model = cls(**settings, device=device)
            model.view_kinds = _string_map(config["view_kinds"], "view_kinds")
            model.embedding_sizes = {k: _positive(v, f"embedding_sizes[{k!r}]")
                                     for k, v in _string_map(config["embedding_sizes"], "embedding_sizes", object).items()}
            model.vocabularies = {k: _words(v, k) for k, v in
                                  _string_map(config["vocabularies"], "vocabularies", object).items()}
            model.history = list(config.get("history", []))
            if set(model.view_kinds) != set(model.views) or set(model.embedding_sizes) != set(model.views) \
                    or set(model.vocabularies) != set(model.language_views):
                raise ValueError("views, view kinds, sizes and vocabularies disagree")
            expected = model._network_on_meta().state_dict()
        except (KeyError, TypeError, ValueError) as err:
            raise ModelFolderError(f"{config_path}: invalid or altered settings: {err}") from err
        try:
            with safe_open(str(weights_path), framework="pt") as fh:
                header = {k: (tuple(fh.get_slice(k).get_shape()), fh.get_slice(k).get_dtype()) for k in fh.keys()}
        except (SafetensorError, OSError) as err:
            raise ModelFolderError(f"{weights_path}: not a readable safetensors file ({err})") from err
        wrong = sorted(set(header) ^ set(expected)) or [
            k for k in expected if header[k] != (tuple(expected[k].shape), "F32")]
        if wrong:
            raise ModelFolderError(f"{weights_path}: tensors do not match the architecture in {_CONFIG} "
                                   f"({', '.join(wrong[:5])})")
        try:
            state = load_file(str(weights_path), device="cpu")
        except (SafetensorError, OSError) as err:
            raise ModelFolderError(f"{weights_path}: not a readable safetensors file ({err})") from err
        bad = check_finite(state)
        if bad:
            raise ModelFolderError(f"{weights_path}: {', '.join(bad)} hold NaN or infinity; this model cannot "
                                   "give topic distributions")
        model._build_network()
        model.model.load_state_dict(state)
        model.best_components = model.model.topic_word_matrix(0).detach()
        return model

    def _network_on_meta(self) -> MultiViewDecoderNetwork:
        """This model's network with no storage: its parameter shapes, for any sizes."""
        with torch.device("meta"):
            return self._new_network()


class _GatherWithGradient(torch.autograd.Function):
    """All-gather whose backward sums every rank's gradient for this rank's part.

    Written out rather than ``torch.distributed.nn.functional.all_gather`` (whose backward
    is an all-to-all off NCCL): with that one, 2 gloo ranks gave InfoNCE gradients that
    disagreed with the single-process computation (tests/test_distributed.py), although a
    toy case agreed; the cause is not pinned down.  One ``all_reduce`` of a contiguous
    tensor is simple and matches.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor)
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[dist.get_rank()]


class _Objective(torch.nn.Module):
    """The training objective as a module, so DistributedDataParallel can wrap it."""

    def __init__(self, owner: M3LTM) -> None:
        super().__init__()
        self.net = owner.model
        object.__setattr__(self, "owner", owner)  # not a submodule

    def forward(self, data: dict, batch_host: np.ndarray) -> dict[str, torch.Tensor]:
        return self.owner._batch_terms(data, batch_host)


def _differentiable(weight: float, keep: bool = False):
    """Grad mode for computing a loss term of this weight: a term weighted 0 is still computed
    (the fit reports it) but records no graph, so the backward skips it, unless ``keep``."""
    return torch.set_grad_enabled(torch.is_grad_enabled() and (weight != 0 or keep))


def _weighted_sum(terms: list[tuple[float, torch.Tensor]], zero: torch.Tensor, keep: bool = False) -> torch.Tensor:
    """``sum(weight * term)`` without the operations of weights 1, and of weights 0 unless ``keep``."""
    total = None
    for weight, term in terms:
        if weight == 0 and not keep:
            continue
        part = term if weight == 1 else weight * term
        total = part if total is None else total + part
    return zero if total is None else total


def view_seed(seed: int, view: str) -> int:
    """The seed of ``view``'s sampling noise for a user's ``seed``: different views get
    independent noise.  With one seed for every view, row ``i`` of two views of the same
    tuples would draw the same noise, and for wide posteriors that shared noise alone makes
    the two views' topic distributions alike: cross-view retrieval would measure the noise."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(view.encode("utf-8"))]).generate_state(1)[0])


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _saved_settings(config: dict) -> dict:
    """The constructor settings of a saved model or checkpoint's config, with the settings
    added since it was written filled in as it was trained."""
    return {**_SETTINGS_ADDED, **config["settings"]}


def _string_map(value: Any, name: str, kind: type = str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, kind) for k, v in value.items()):
        raise ValueError(f"{name} must map view names to {kind.__name__}s")
    return dict(value)


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r:.50}")
    return value


def _words(value: Any, view: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(w, str) for w in value):
        raise ValueError(f"vocabularies[{view!r}] must be a non-empty list of words")
    if len(set(value)) != len(value):
        raise ValueError(f"vocabularies[{view!r}] repeats a word")
    return value


def _format_record(record: dict, num_epochs: int) -> str:
    terms = ", ".join(f"{k}={v:.4f}" for k, v in record.items() if k not in ("epoch", "seconds"))
    return f"Epoch [{record['epoch']}/{num_epochs}] {terms} ({record['seconds']:.2f}s)"
