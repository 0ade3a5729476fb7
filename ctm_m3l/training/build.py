"""An M3LTM's network and optimizer, sized from its first training dataset."""
from __future__ import annotations

import torch
from torch import optim
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ..data import MultiViewDataset
from ..networks import MultiViewDecoderNetwork

__all__ = ["bind", "input_sizes", "new_network", "build_network", "check_compatible"]


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
