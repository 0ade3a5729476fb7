"""ZeroshotTM-KD (Pivovarova & Zosa, MediaEval 2021): teacher-student distillation.

A teacher ``ZeroShotTM`` is trained first (on one language's texts, or on the concatenated
embeddings of the whole tuple: the *joint* teacher).  Each student is a ``ZeroShotTM`` on
another view that keeps the reconstruction loss but replaces the KL to the prior by the KL to
the teacher's posterior for the same tuple.  Students of text views reconstruct their own
language (so their topic words line up with the teacher's topics); image students reconstruct
the teacher's language.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from contextualized_topic_models.models.ctm import ZeroShotTM
from contextualized_topic_models.networks.decoding_network import DecoderNetwork

from .._validation import InvalidParameterError, Names, check_views, validate_params
from ..data import MultiViewDataset
from ..losses import gaussian_kl, reconstruction_loss
from ._ctm import CTM_CONSTRAINTS, ctm_thetas, fit_ctm
from .base import Baseline, rows_or_nan

__all__ = ["KDBaseline", "KDStudent"]


class _StudentDecoderNetwork(DecoderNetwork):
    """CTM's decoder network whose "prior" is the teacher's posterior, passed in as extra
    columns of the contextual input while training (``[embedding | mu_t | logvar_t]``)."""

    def _split(self, x_bert: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        width = self.inf_net.input_layer.in_features
        return x_bert[:, :width], x_bert[:, width:]

    def forward(self, x, x_bert, labels=None):
        embedding, teacher = self._split(x_bert)
        out = super().forward(x, embedding, labels)
        k = self.n_components
        return (teacher[:, :k], teacher[:, k:].exp(), *out[2:])

    def get_posterior(self, x, x_bert, labels=None):
        return super().get_posterior(x, self._split(x_bert)[0], labels)


class KDStudent(ZeroShotTM):
    """A ``ZeroShotTM`` distilled from a teacher: CTM's own training loop, with the KL to the
    prior replaced by the KL to the teacher's posterior of the same tuple."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Same parameters (and optimizer); only forward/get_posterior differ.
        self.model.__class__ = _StudentDecoderNetwork

    def _loss(self, inputs, word_dists, prior_mean, prior_variance, posterior_mean, posterior_variance,
              posterior_log_variance):
        # Per-row teacher posteriors: CTM's own formula sums the prior's log-determinant over
        # the whole batch, which is only right for one prior shared by every row.
        kl = gaussian_kl(posterior_mean, posterior_log_variance, prior_mean, prior_variance.log())
        return kl, reconstruction_loss(inputs, torch.log(word_dists + 1e-10))


class KDBaseline(Baseline):
    """Teacher-student ZeroshotTM for multilingual or multimodal tuples.

    Args:
        views: the views to give topic distributions for.
        teacher: a text view (the *text teacher*, e.g. ``"en"``) or ``"joint"`` (the teacher's
            input is the concatenation of every view's embedding, on tuples that have them all).
        language: the language whose bag of words the teacher (and image students)
            reconstruct; default: the teacher view, or the first text view for ``"joint"``.
        n_components, num_epochs, batch_size, lr, hidden_sizes: for every ``ZeroShotTM``
            (paper: 100 topics, 100 epochs, batch 64, one hidden layer of 100).
    """

    name = "zeroshot-kd"
    _fitted_attribute = "teacher"
    _parameter_constraints: dict[str, list] = {
        "views": [Names("view names")],
        **CTM_CONSTRAINTS,
    }

    def __init__(self, views: Sequence[str], teacher: str = "joint", language: str | None = None,
                 n_components: int = 100, num_epochs: int = 100, batch_size: int = 64, lr: float = 2e-3,
                 hidden_sizes: tuple = (100,), random_state: int | None = None, **ctm_kwargs: Any) -> None:
        validate_params(self._parameter_constraints, locals(), "KDBaseline")
        self.views = list(views)
        if teacher != "joint" and teacher not in self.views:
            raise InvalidParameterError(f"KDBaseline: teacher must be 'joint' or one of the views {self.views}, "
                                        f"got {teacher!r}")
        self.teacher_spec, self.language = teacher, language
        self.settings = dict(n_components=n_components, num_epochs=num_epochs, batch_size=batch_size, lr=lr,
                             hidden_sizes=tuple(hidden_sizes), num_data_loader_workers=0, **ctm_kwargs)
        self.n_components, self.random_state = n_components, random_state
        self.teacher: ZeroShotTM | None = None
        self.students: dict[str, KDStudent] = {}
        self.decoded_language: dict[str, str] = {}

    # -- helpers ---------------------------------------------------------------------------------
    def _teacher_input(self, dataset: MultiViewDataset) -> tuple[np.ndarray, np.ndarray]:
        if self.teacher_spec == "joint":
            rows = np.logical_and.reduce([dataset.has_view(v) for v in self.views])
            x = np.concatenate([dataset.embeddings[v] for v in self.views], axis=1)
        else:
            rows = dataset.has_view(self.teacher_spec)
            x = dataset.embeddings[self.teacher_spec]
        return x.astype(np.float32), rows

    def _posterior(self, model: ZeroShotTM, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        model.model.eval()
        mus, logvars = [], []
        with torch.no_grad():
            for start in range(0, len(x), 4096):
                chunk = torch.from_numpy(x[start:start + 4096]).to(model.device)
                mu, logvar = model.model.get_posterior(None, chunk)
                mus.append(mu.cpu().numpy())
                logvars.append(logvar.cpu().numpy())
        return np.concatenate(mus), np.concatenate(logvars)

    # -- fit ------------------------------------------------------------------------------------
    def fit(self, dataset: MultiViewDataset) -> KDBaseline:
        check_views(dataset, self.views, self.name)
        texts = [v for v in self.views if v in dataset.bow]
        language = self.language or (self.teacher_spec if self.teacher_spec != "joint" else (texts or [None])[0])
        if language not in dataset.bow:
            raise ValueError(f"zeroshot-kd: the teacher needs a text view to reconstruct; {language!r} is not one")
        self.language = language
        x, rows = self._teacher_input(dataset)
        rows &= dataset.has_view(language)
        if rows.sum() < 2:
            raise ValueError(f"zeroshot-kd: fewer than 2 tuples have every view the {self.teacher_spec!r} teacher needs")
        self.vocabularies = {v: list(dataset.vocabularies[v]) for v in texts}
        self.teacher = fit_ctm(ZeroShotTM, x[rows], dataset.bow[language][rows], self.vocabularies[language],
                               self.settings, self.random_state, f"zeroshot-kd teacher {self.teacher_spec!r}")
        teacher_mu = np.zeros((len(dataset), self.n_components), np.float32)
        teacher_logvar = np.zeros_like(teacher_mu)
        teacher_mu[rows], teacher_logvar[rows] = self._posterior(self.teacher, x[rows])
        for view in self.views:
            if view == self.teacher_spec:
                continue
            target = view if view in dataset.bow else language
            student_rows = rows & dataset.has_view(view) & dataset.has_view(target)
            contextual = np.concatenate([dataset.embeddings[view], teacher_mu, teacher_logvar], axis=1)[student_rows]
            # The student's network reads the view's embedding; the teacher's posterior rides along.
            self.students[view] = fit_ctm(
                KDStudent, contextual, dataset.bow[target][student_rows], self.vocabularies[target], self.settings,
                self.random_state, f"zeroshot-kd student {view!r} (tuples that pair it with the teacher)",
                contextual_size=dataset.embeddings[view].shape[1], learn_priors=False)
            self.decoded_language[view] = target
        order = {v: i for i, v in enumerate(dataset.view_names)}
        self.language_views = sorted({language, *self.decoded_language.values()}, key=order.__getitem__)
        return self

    # -- outputs ----------------------------------------------------------------------------------
    def get_thetas(self, dataset: MultiViewDataset, n_samples: int = 20, view: str | None = None,
                   seed: int | None = None) -> np.ndarray:
        self._check_fitted()
        view = self._check_view(dataset, view)
        model = self.teacher if view == self.teacher_spec else self.students[view]
        theta = ctm_thetas(model, dataset.embeddings[view][dataset.has_view(view)], n_samples, seed, view)
        return rows_or_nan(dataset, view, theta, self.n_components)

    def get_topic_lists(self, k: int = 10, language: str | None = None) -> list[list[str]]:
        self._check_fitted()
        language = language or self.language
        if language == self.language:
            return self.teacher.get_topic_lists(k)
        for view, decoded in self.decoded_language.items():
            if decoded == language:
                return self.students[view].get_topic_lists(k)
        raise ValueError(f"zeroshot-kd has topics in {self.language_views}, not in {language!r}")
