"""An M3LTM's network and optimizer, sized from its first training dataset."""
from __future__ import annotations

import os
import warnings

import torch
from torch import optim
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ..data import MultiViewDataset
from ..networks import MultiViewDecoderNetwork

__all__ = ["bind", "input_sizes", "new_network", "build_network", "check_compatible", "check_fit_data",
           "copy_topics"]


def bind(estimator, dataset: MultiViewDataset) -> None:
    """Learn view kinds and sizes from ``dataset`` and build the network (first fit); later
    fits must bring data of the same views, sizes and vocabularies."""
    if not isinstance(dataset, MultiViewDataset):
        raise TypeError(
            f"fit expects a MultiViewDataset (from M3LDataPreparation.fit), got {type(dataset).__name__}")
    unknown = [v for v in estimator.views if v not in dataset.view_names]
    if unknown:
        raise ValueError(f"view(s) {unknown} are not in the dataset, whose views are {dataset.view_names}")
    kinds = {v.name: v.kind for v in dataset.views}
    sizes = {v: int(dataset.embeddings[v].shape[1]) for v in estimator.views}
    if estimator.model is not None:
        if any(kinds[v] != estimator.view_kinds[v] or sizes[v] != estimator.embedding_sizes[v]
               for v in estimator.views) \
                or any(dataset.vocabularies[v] != estimator.vocabularies[v] for v in estimator.language_views):
            raise ValueError("this dataset's views, embedding sizes or vocabularies differ from the "
                             "ones the model was fitted on; prepare it with the same M3LDataPreparation")
        return
    if not any(kinds[v] == "text" for v in estimator.views):
        raise ValueError(f"views {estimator.views} include no text view; at least one language is needed for topics")
    empty = [v for v in estimator.views if not dataset.has_view(v).any()]
    if empty:
        raise ValueError(f"view(s) {empty} have no items in the training data; their networks cannot learn")
    estimator.view_kinds = {v: kinds[v] for v in estimator.views}
    estimator.embedding_sizes = sizes
    estimator.vocabularies = {v: list(dataset.vocabularies[v]) for v in estimator.language_views}
    build_network(estimator)


def input_sizes(estimator) -> list[int]:
    """What each view's inference network reads: its embedding, and for a language view of a
    ``inference_input="combined"`` model its bag of words after it."""
    combined = estimator.inference_input == "combined"
    return [estimator.embedding_sizes[v] + (len(estimator.vocabularies[v]) if combined and v in estimator.vocabularies
                                            else 0) for v in estimator.views]


def new_network(estimator) -> MultiViewDecoderNetwork:
    vocab_sizes = {estimator.views.index(v): len(estimator.vocabularies[v]) for v in estimator.language_views}
    return MultiViewDecoderNetwork(
        input_sizes(estimator), vocab_sizes, estimator.n_components,
        estimator.model_type, estimator.hidden_sizes, estimator.activation, estimator.dropout,
        estimator.learn_priors, posterior_norm=posterior_norms(estimator),
    )


def posterior_norms(estimator) -> list[str]:
    """Each view's posterior layout: ``image_posterior_norm`` for image views where it is set,
    ``posterior_norm`` otherwise."""
    image = estimator.image_posterior_norm or estimator.posterior_norm
    return [image if estimator.view_kinds[v] == "image" else estimator.posterior_norm for v in estimator.views]


def build_network(estimator) -> None:
    """A fresh network (seeded by ``random_state``), its optimizer and scheduler."""
    if estimator.random_state is not None:
        torch.manual_seed(estimator.random_state)
    estimator.model = new_network(estimator).to(estimator.device)
    parameters = estimator.model.parameters
    if estimator.solver == "adam":
        try:
            # One fused kernel instead of a Python loop over parameters; older torch builds lack it on CPU.
            estimator.optimizer = optim.Adam(parameters(), lr=estimator.lr, betas=(estimator.momentum, 0.99),
                                             fused=True)
        except (RuntimeError, TypeError, ValueError):
            estimator.optimizer = optim.Adam(parameters(), lr=estimator.lr, betas=(estimator.momentum, 0.99))
    else:
        estimator.optimizer = optim.SGD(parameters(), lr=estimator.lr, momentum=estimator.momentum)
    estimator.scheduler = ReduceLROnPlateau(estimator.optimizer, patience=10) if estimator.reduce_on_plateau else None


def check_compatible(estimator, dataset: MultiViewDataset, name: str) -> None:
    """``dataset`` must have been prepared like the training data: the same vocabularies
    and embedding sizes for the model's views (other words in the same columns would be
    read as this model's words)."""
    for view in estimator.views:
        if view not in dataset.view_names:
            continue
        size = dataset.embeddings[view].shape[1]
        if size != estimator.embedding_sizes[view]:
            raise ValueError(f"{name}, view {view!r}: {size}-d embeddings, but the model was trained on "
                             f"{estimator.embedding_sizes[view]}-d ones; prepare it with the training data's "
                             "M3LDataPreparation")
        if view in estimator.vocabularies and dataset.vocabularies.get(view) != estimator.vocabularies[view]:
            raise ValueError(f"{name}, view {view!r}: its vocabulary is not the one the model was trained "
                             "on, so its bag-of-words columns mean other words; prepare it with "
                             "prep.transform(...) of the training data's M3LDataPreparation")


def check_fit_data(estimator, train: MultiViewDataset, validation: MultiViewDataset | None, patience: int) -> None:
    """``fit``'s checks of its data beyond :func:`bind`'s: the validation set's views and
    vocabularies, at least two tuples, and a warning for a one-view model with nothing to
    regularise its posterior."""
    from .._validation import check_int

    if validation is not None:
        if not isinstance(validation, MultiViewDataset):
            raise TypeError("validation_dataset must be a MultiViewDataset")
        missing = [v for v in estimator.views if v not in validation.view_names]
        if missing:
            raise ValueError(f"validation_dataset lacks view(s) {missing}")
        check_compatible(estimator, validation, "validation_dataset")
        check_int("patience", patience, 1)
    if len(train) < 2:
        raise ValueError("training needs at least 2 tuples (contrastive negatives come from other tuples)")
    if len(estimator.views) == 1 and estimator.weights["prior_kl"] == 0:
        warnings.warn(f"a one-view M3LTM ({estimator.views[0]!r}) has no pairwise KL and no InfoNCE, and with "
                      "loss_weights['prior_kl'] = 0 (the default) nothing regularises its posterior: it "
                      "trains as an autoencoder. For a one-view topic model pass "
                      "loss_weights={'prior_kl': 1} (CTM's VAE objective) or use ZeroShotTM", stacklevel=3)


def copy_topics(estimator, source, fresh: bool, resuming: bool) -> None:
    """``fit(topics_from=source)``: every language's topic-word weights copied from ``source`` (a
    fitted M3LTM or the folder of a saved one) into the network :func:`bind` built, which must
    have its number of topics, decoder and, per language, vocabulary; ``source`` is recorded
    in ``estimator.topics_source`` (saved with the model).  Without a source, ``topic_epochs=0``
    (topics that never train) needs weights from a checkpoint or an earlier fit."""
    if source is None:
        if estimator.topic_epochs == 0 and fresh and not resuming:
            raise ValueError("topic_epochs=0 keeps the topic-word weights as they start, and a new network's are "
                             "random: give fit topics_from= (a fitted M3LTM or a saved model's folder) or "
                             "resume_from=")
        return
    where = ""
    if isinstance(source, (str, os.PathLike)):
        where = f" ({source})"
        source = type(estimator).load(source, device="cpu")
    if not isinstance(source, type(estimator)):
        raise TypeError(f"topics_from must be a fitted {type(estimator).__name__} or a saved model's folder, "
                        f"got {type(source).__name__}")
    if source.model is None:
        raise ValueError("topics_from is an M3LTM that was never fitted: it has no topics to give")
    for name in ("n_components", "model_type"):
        if getattr(source, name) != getattr(estimator, name):
            raise ValueError(f"topics_from{where} has {name}={getattr(source, name)!r} and this model "
                             f"{getattr(estimator, name)!r}: its topic-word weights do not fit this decoder")
    for language in estimator.language_views:
        if language not in source.vocabularies:
            raise ValueError(f"topics_from{where} has no topics for language {language!r} (its languages: "
                             f"{list(source.vocabularies)})")
        ours, theirs = estimator.vocabularies[language], source.vocabularies[language]
        if ours != theirs:
            first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
            raise ValueError(f"topics_from{where}, language {language!r}: its vocabulary ({len(theirs)} words) is "
                             f"not this dataset's ({len(ours)} words; first difference at word {first}), so its "
                             "topic-word weights would score other words; prepare both with the same "
                             "M3LDataPreparation")
    with torch.no_grad():
        for index, language in enumerate(estimator.language_views):
            words = source.model.topic_word[source.language_views.index(language)]
            estimator.model.topic_words[index, :, :words.shape[1]] = words.to(estimator.device)
    estimator.topics_source = {"settings": source._settings(), "epochs": len(source.history)}
