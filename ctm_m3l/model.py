"""M3L-Contrast (Zosa & Pivovarova, COLING 2022) as a CTM ``ZeroShotTM``.

One inference network per view gives a Gaussian posterior over topics; one topic-word
matrix per language decodes that language's bag of words from its own sampled topics.
The loss of a batch of tuples ``i`` with views ``a, b`` is

    sum_i [ w_rec   * sum_{languages l of i} RL(x^l_i, theta^l_i)
          + sum_{views a of i} w_prior(a) * KL(q_a || prior)   (images: w_image_prior)
          + w_pair  * sum_{a != b of i} KL(q_a || q_b) ]
    + s * InfoNCE(theta; positives = views of one tuple, negatives = views of others)

(Eq. 1 of the paper; ``training/objective.py`` computes it, ``losses.py`` has each term).
Terms use only the views a tuple has.  This module is the estimator: its settings, ``fit``
(the loop is ``training.FitLoop``), ``save``/``load`` (``persistence``); inference and topic
words come from :class:`~ctm_m3l.inference.TopicModelMixin`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from contextualized_topic_models.models.ctm import ZeroShotTM

from ._common import resolve_device, view_seed
from ._validation import (
    Boolean,
    Interval,
    InvalidParameterError,
    Names,
    NoneValue,
    Options,
    PositiveInts,
    SettingsMap,
    WeightMap,
    check_int,
    validate_params,
)
from .baselines.base import Baseline
from .data import MultiViewDataset
from .defaults import DEFAULT_LOSS_WEIGHTS, PAPER_SETTINGS, PAPER_TOPIC_FIT, resolve_loss_weights
from .inference import TopicModelMixin
from .networks import POSTERIOR_NORMS, MultiViewDecoderNetwork
from .persistence import load_model, model_config, model_settings, save_model
from .training import FitLoop, bind, build_network, check_fit_data, copy_topics, new_network, setup_distributed
from .training.topic_fit import TOPIC_FIT_FIXED, check_topic_fit, normalise_topic_fit, run_topic_fit

__all__ = ["M3LTM", "DEFAULT_LOSS_WEIGHTS", "PAPER_SETTINGS", "PAPER_TOPIC_FIT", "view_seed"]

class M3LTM(TopicModelMixin, ZeroShotTM, Baseline):
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
        topic_epochs: epochs in which the topic-word weights train: the first ones, or the last
            ones where they came from another fit (``topic_fit``, ``fit(topics_from=...)``); the
            networks and prior train every epoch (None, default: every epoch, as the paper, or none
            with ``topic_fit``; 0: never).  On Multi30k 50 keeps epoch 50's more coherent topics.
        topic_fit: a first fit, run by ``fit``, that trains the topic-word weights, which this
            model then keeps fixed (or trains on in its last ``topic_epochs`` epochs) while its
            networks and prior train (None, default: one fit, as the paper).  ``"paper"``:
            :data:`PAPER_TOPIC_FIT` (on Multi30k the paper settings' coherence at the defaults'
            retrieval: docs, "Topic space"), or a dict of its settings over M3LTM's defaults
            (``views``, ``n_components``, ``model_type``, ``random_state``, the device and, unless
            given, ``num_epochs`` are this model's).  It checkpoints under ``checkpoint_dir/topic-fit``.
        reduce_on_plateau: divide the learning rate by 10 when the training loss stalls for
            10 epochs (CTM).
        temperature: InfoNCE temperature tau (paper: 0.07).
        similarity: ``"cosine"`` (NT-Xent, the authors' released code; default) or ``"dot"``
            (Eq. 1 as printed).
        loss_weights: weights of ``"reconstruction"``, ``"prior_kl"`` (CTM's KL of each
            view's posterior to the topic prior), ``"image_prior_kl"`` (that KL for image
            views instead: an image view has no words to reconstruct, so this is what bounds
            its posterior; when only ``"prior_kl"`` is given it applies to every view),
            ``"pair_kl"`` and ``"contrastive"`` (s); missing keys keep
            :data:`DEFAULT_LOSS_WEIGHTS` (1, 0, 0, 1, 100: Eq. 1's terms, s chosen on Multi30k
            ``val`` for InfoNCE summed over tuples).
        pair_kl_on: what the pairwise KL between a tuple's views compares: ``"theta"``, the
            sampled topic proportions on the simplex (the authors' released multimodal code;
            default), or ``"posterior"``, the Gaussian posteriors (Eq. 1 as printed).  The
            docs ("Which loss") compare the two on Multi30k.
        posterior_norm: how each inference network normalises its posterior: ``"ctm"``,
            batch norm on ``mu`` and on ``log sigma^2`` (CTM's ``ContextualInferenceNetwork``,
            which the paper's code uses); ``"ctm-shifted"`` (default), the same followed by a
            learned shift of ``log sigma^2`` per topic; ``"mean"``, batch norm on ``mu`` only
            and a learned bias on ``log sigma^2``; ``"none"``, learned biases on both (a
            learned level of ``log sigma^2`` is capped at
            :data:`~ctm_m3l.networks.LOGVAR_MAX`).  CTM's batch norm on ``log sigma^2``
            re-centres every log-variance at 0, so every posterior keeps a variance near 1 and
            its samples are as wide as its mean's spread, whatever the input says; shifted, the
            network learns that level.  ``"mean"`` retrieves about as well at full
            scale but collapsed to a few topics in 2 of 5 seeds on 10,000 Multi30k tuples,
            where ``"ctm-shifted"`` never did (the docs' "Topic space" notes).
        image_posterior_norm: the layout of the image views' networks (same options; default
            ``"ctm-shifted"``), or ``None`` for ``posterior_norm``'s.  An image view has no
            words to reconstruct: with ``"mean"`` nothing but the alignment terms set its
            variance, and on Multi30k a quarter of its components went to pure noise (photos
            retrieved at chance); CTM's batch norm keeps them aligned but at a variance near 1;
            shifted, the variances keep that spread over photos at a level the network learns
            (the docs' "Topic space" notes).
        contrastive_reduction: how each view pair's InfoNCE is reduced over the batch's tuples:
            ``"mean"`` (the released code's NT-Xent, the scaling s = 50 was tuned with) or
            ``"sum"`` (default), as Eq. 1 sums all its terms (the same s then weighs InfoNCE
            batch-size times more).
        inference_input: what a language view's inference network reads: ``"contextual"``,
            its embedding (ZeroShotTM's input, the paper's), or ``"combined"`` (default), its
            embedding followed by its bag of words (CTM's ``CombinedTM`` input; beyond the
            paper).  Image views always read their embedding.  A combined model infers a text's
            topics from its words too, so new texts must be prepared with the training
            vocabularies (``prep.transform`` does), and a text of a language without a
            vocabulary (zero-shot transfer) needs ``"contextual"``.  The docs' "Topic space"
            notes measure these settings on Multi30k; :data:`PAPER_SETTINGS` are the paper's.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... (default: CUDA when available).
        random_state: seed for initialisation, batch order and sampling; None for fresh randomness.
        torch_compile: compile the training objective with ``torch.compile`` (static shapes; the
            docs' performance page has the speed-up); needs a C++ compiler, else training goes on
            eagerly with a warning.  Dropout draws from torch's generator as eagerly, so a compiled
            fit follows the eager one with the same seed (up to float rounding).  Single process only.
        num_data_loader_workers: accepted for CTM compatibility; unused (batches are indexed
            on the device, with no DataLoader).
    """

    #: What each constructor argument may be (checked by ``_validate_params``).
    _parameter_constraints: dict[str, list] = {
        "views": [Names("view names")],
        "n_components": [Interval(int, 1, None)],
        "model_type": [Options("prodLDA", "LDA")],
        "hidden_sizes": [Interval(int, 1, None), PositiveInts()],
        "activation": [Options("softplus", "relu")],
        "dropout": [Interval(float, 0, 1, closed="left")],
        "learn_priors": [Boolean()],
        "batch_size": [Interval(int, 2, None)],
        "lr": [Interval(float, 0, None, closed="neither")],
        "momentum": [Interval(float, 0, 1, closed="right")],
        "solver": [Options("adam", "sgd")],
        "num_epochs": [Interval(int, 0, None)],
        "topic_epochs": [NoneValue(), Interval(int, 0, None)],
        "reduce_on_plateau": [Boolean()],
        "temperature": [Interval(float, 0, None, closed="neither")],
        "similarity": [Options("cosine", "dot")],
        "loss_weights": [NoneValue(), WeightMap(list(DEFAULT_LOSS_WEIGHTS))],
        "pair_kl_on": [Options("theta", "posterior")],
        "random_state": [NoneValue(), Interval(int, None, None)],
        "num_data_loader_workers": [Interval(int, 0, None)],
        "torch_compile": [Boolean()],
        "posterior_norm": [Options(*POSTERIOR_NORMS)],
        "image_posterior_norm": [NoneValue(), Options(*POSTERIOR_NORMS)],
        "contrastive_reduction": [Options("mean", "sum")],
        "inference_input": [Options("contextual", "combined")],
    }
    _parameter_constraints["topic_fit"] = [NoneValue(), Options("paper"),
                                           SettingsMap(_parameter_constraints, TOPIC_FIT_FIXED, "topic_fit")]

    def __init__(self, views: Sequence[str], n_components: int = 100, model_type: str = "prodLDA",
                 hidden_sizes: Sequence[int] = (100,), activation: str = "softplus",
                 dropout: float = 0.2, learn_priors: bool = True, batch_size: int = 32,
                 lr: float = 2e-3, momentum: float = 0.99, solver: str = "adam",
                 num_epochs: int = 100, reduce_on_plateau: bool = False, temperature: float = 0.07,
                 similarity: str = "cosine", loss_weights: Mapping[str, float] | None = None,
                 pair_kl_on: str = "theta", device: Any = None, random_state: int | None = None,
                 num_data_loader_workers: int = 0, torch_compile: bool = False, posterior_norm: str = "ctm-shifted",
                 contrastive_reduction: str = "sum", inference_input: str = "combined",
                 image_posterior_norm: str | None = "ctm-shifted", topic_epochs: int | None = None,
                 topic_fit: str | Mapping[str, Any] | None = None) -> None:
        # CTM's constructor builds a one-view network and its optimizer from sizes given up
        # front; this model learns its sizes from the dataset in ``fit``, so it sets CTM's
        # attributes itself instead of calling ``super().__init__``.  Settings are checked
        # here, not in ``fit`` as scikit-learn does, because CTM's models check theirs here.
        self._validate_params(locals())
        self.views = list(views)
        self.n_components = n_components
        self.model_type = model_type
        self.hidden_sizes = (hidden_sizes,) if isinstance(hidden_sizes, int) else tuple(hidden_sizes)
        self.activation = activation
        self.dropout = float(dropout)
        self.learn_priors = learn_priors
        self.batch_size = batch_size
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.solver = solver
        self.num_epochs = num_epochs
        self.topic_epochs = topic_epochs
        self.topic_fit = normalise_topic_fit(topic_fit)
        self.reduce_on_plateau = reduce_on_plateau
        self.temperature = float(temperature)
        self.similarity = similarity
        self.pair_kl_on = pair_kl_on
        self.posterior_norm = posterior_norm
        self.image_posterior_norm = image_posterior_norm
        self.contrastive_reduction = contrastive_reduction
        self.inference_input = inference_input
        self.weights = resolve_loss_weights(loss_weights)
        self.random_state = random_state
        self.num_data_loader_workers = num_data_loader_workers
        self.torch_compile = torch_compile
        self.device = resolve_device(device)
        self.USE_CUDA = self.device.type == "cuda"
        # Learned from the training dataset.
        self.view_kinds: dict[str, str] = {}
        self.embedding_sizes: dict[str, int] = {}
        self.vocabularies: dict[str, list[str]] = {}
        self.model: MultiViewDecoderNetwork | None = None
        self.optimizer = None
        self.scheduler = None
        self.history: list[dict[str, float]] = []
        self._distributed = None  # this rank's place, set by fit(distributed=True)
        # CTM's attributes, kept so CTM code that reads them still works.
        self.training_doc_topic_distributions = None
        self.early_stopping = None
        self.best_loss_train = float("inf")
        self.model_dir = None
        self.nn_epoch = None
        self.validation_data = None
        self.best_components = None
        self.topics_source: dict[str, Any] | None = None  # set by fit(topics_from=...)

    def _validate_params(self, params: dict[str, Any]) -> None:
        validate_params(self._parameter_constraints, params, type(self).__name__)
        weights = resolve_loss_weights(params["loss_weights"])
        if not any(weights.values()):
            raise InvalidParameterError(f"M3LTM: loss_weights are all 0 ({weights}): nothing would be trained")
        check_topic_fit(params["topic_fit"])

    @property
    def is_main_process(self) -> bool:
        """False on every rank but 0 of a distributed run (those neither print nor save)."""
        return self._distributed is None or self._distributed.rank == 0

    # -- fit ------------------------------------------------------------------------------------
    def fit(self, train_dataset: MultiViewDataset, validation_dataset: MultiViewDataset | None = None,
            save_dir: str | os.PathLike | None = None, verbose: bool = False, patience: int = 5,
            delta: float = 0, n_samples: int = 20, do_train_predictions: bool = False,
            progress_bar: bool = True, checkpoint_dir: str | os.PathLike | None = None,
            checkpoint_every: int = 1, resume_from: str | os.PathLike | None = None,
            distributed: bool = False, topics_from: M3LTM | str | os.PathLike | None = None) -> M3LTM:
        """Train on ``train_dataset`` (CTM's ``fit`` signature, plus checkpoints and DDP).

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
                prints, checkpoints and saves.
            topics_from: a fitted M3LTM (or a saved model's folder) whose topic-word weights this
                fit starts from (same topic number, decoder and vocabularies); with ``topic_epochs``
                N they stay fixed but in the last N epochs (0: only the networks and the prior train;
                topics from the paper's settings, networks from the defaults: docs, "Topic space").

        Returns:
            self.
        """
        if distributed:
            self._distributed, self.device = setup_distributed(self.device)
            if self.model is not None:
                self.model.to(self.device)
        fresh = self.model is None
        source, resume_from = run_topic_fit(self, train_dataset, validation_dataset, topics_from, fresh, resume_from,
                                            checkpoint_dir, patience=patience, delta=delta, verbose=verbose,
                                            progress_bar=progress_bar, checkpoint_every=checkpoint_every,
                                            distributed=distributed)
        bind(self, train_dataset)
        check_fit_data(self, train_dataset, validation_dataset, patience)
        copy_topics(self, topics_from if source is None else source, fresh, resume_from is not None)
        self.model_dir = save_dir
        self.validation_data = validation_dataset
        seed = self.random_state if self.random_state is not None else int(torch.randint(0, 2**62, (1,)).item())
        if distributed:
            seed = self._distributed.broadcast_seed(seed, self.device)
        loop = FitLoop(self, distributed=self._distributed if distributed else None,
                       compile=self.torch_compile)
        check_int("checkpoint_every", checkpoint_every, 1)
        loop.run(train_dataset, validation_dataset, seed, patience, delta, verbose, progress_bar, checkpoint_dir,
                 checkpoint_every, resume_from)
        self.best_components = self.model.topic_word_matrix(0).detach()
        if do_train_predictions:
            self.training_doc_topic_distributions = {
                v: self.get_thetas(train_dataset, view=v, n_samples=n_samples) for v in self.views}
        if save_dir is not None and self.is_main_process:
            self.save(save_dir)
        return self

    # -- network and persistence ----------------------------------------------------------------
    def _new_network(self) -> MultiViewDecoderNetwork:
        return new_network(self)

    def _build_network(self) -> None:
        build_network(self)

    def _settings(self) -> dict[str, Any]:
        """The constructor arguments as saved (``config.json``'s ``settings``)."""
        return model_settings(self)

    def _config(self) -> dict[str, Any]:
        return model_config(self)

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
        self._check_fitted()
        return save_model(self, models_dir, preparation)

    @classmethod
    def load(cls, model_dir: str | os.PathLike, device: Any = None) -> M3LTM:
        """Load a model saved with :meth:`save` (no training data needed).

        Every file is checked against the folder's manifest and the sizes in ``config.json``
        against the weights' header before anything is allocated; nothing is unpickled or
        imported.  Raises :class:`~ctm_m3l.persistence.ModelFolderError` (a ``ValueError``)
        naming the file when the folder is not a saved model, its files were changed after
        saving, or its tensors hold NaN or infinity.
        """
        return load_model(cls, model_dir, device)

