"""The M3L-Contrast network: one CTM inference network per view, one topic-word matrix per
language.  Parameters and forward computations only; the objective lives in ``losses.py``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from contextualized_topic_models.networks.inference_network import ContextualInferenceNetwork
from torch import nn

__all__ = ["MultiViewDecoderNetwork", "GlobalBatchNorm1d", "batch_norm_1d"]


def batch_norm_1d(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor,
                  training: bool, momentum: float, eps: float, distributed: bool = False) -> torch.Tensor:
    """Batch norm without affine parameters, over the local rows or, with ``distributed``,
    over the rows of every rank (statistics summed with an autograd-aware ``all_reduce``),
    so data-parallel training normalises exactly as one big batch would.  A batch of fewer
    than 2 rows uses the running statistics."""
    if training and distributed:
        from torch.distributed.nn.functional import all_reduce

        width = x.shape[1]
        count = torch.full((1,), float(x.shape[0]), dtype=x.dtype, device=x.device)
        stats = all_reduce(torch.cat([x.sum(0), (x * x).sum(0), count]))
        n = stats[-1]
        if n.item() >= 2:
            mean = stats[:width] / n
            var = (stats[width:2 * width] / n - mean * mean).clamp(min=0)
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(momentum * mean)
                running_var.mul_(1 - momentum).add_(momentum * var * n / (n - 1))
            return (x - mean) / torch.sqrt(var + eps)
        training = False
    training = training and x.shape[0] > 1
    return F.batch_norm(x, running_mean, running_var, training=training, momentum=momentum, eps=eps)


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` whose training statistics span every rank (see :func:`batch_norm_1d`).
    Same buffers as ``BatchNorm1d``: state dicts load into either."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return batch_norm_1d(x, self.running_mean, self.running_var, self.training, self.momentum,
                             self.eps, distributed=True)


class MultiViewDecoderNetwork(nn.Module):
    """Per-view Gaussian posteriors over ``n_components`` topics and per-language decoders.

    Args:
        embedding_sizes: embedding dimension of every view, in view order.
        vocabulary_sizes: ``{view index: vocabulary size}`` for the text (language) views.
        n_components: number of topics ``K``.
        model_type: ``"prodLDA"`` (default, as CTM) or ``"LDA"``.
        hidden_sizes: hidden layers of each inference network (paper: one layer of 100).
        activation: ``"softplus"`` or ``"relu"``.
        dropout: dropout in the inference networks and on theta (CTM: 0.2).
        learn_priors: learn the prior mean and variance (CTM default).
    """

    def __init__(self, embedding_sizes: Sequence[int], vocabulary_sizes: dict[int, int],
                 n_components: int, model_type: str = "prodLDA",
                 hidden_sizes: Sequence[int] = (100,), activation: str = "softplus",
                 dropout: float = 0.2, learn_priors: bool = True) -> None:
        super().__init__()
        self.n_components = n_components
        self.model_type = model_type
        self.language_views = sorted(vocabulary_sizes)
        self.inference = nn.ModuleList(
            ContextualInferenceNetwork(size, size, n_components, tuple(hidden_sizes),
                                       activation, dropout)
            for size in embedding_sizes
        )
        # One topic-word matrix per language, all indexed by the same K topics: aligned topics.
        self.topic_word = nn.ParameterList()
        self.topic_word_batchnorm = nn.ModuleList()
        for view in self.language_views:
            beta = nn.Parameter(torch.empty(n_components, vocabulary_sizes[view]))
            nn.init.xavier_uniform_(beta)
            self.topic_word.append(beta)
            # As CTM: normalises each word's logit over the batch (prodLDA) or over topics (LDA).
            self.topic_word_batchnorm.append(nn.BatchNorm1d(vocabulary_sizes[view], affine=False))
        prior_mean = torch.zeros(n_components)
        prior_variance = torch.full((n_components,), 1.0 - 1.0 / n_components)
        if learn_priors:
            self.prior_mean = nn.Parameter(prior_mean)
            self.prior_variance = nn.Parameter(prior_variance)
        else:
            self.register_buffer("prior_mean", prior_mean)
            self.register_buffer("prior_variance", prior_variance)
        self.drop_theta = nn.Dropout(p=dropout)
        self.distributed = False

    def use_global_batch_norm(self) -> None:
        """Normalise over the global batch of all ranks (data-parallel training)."""
        for net in self.inference:
            for name in ("f_mu_batchnorm", "f_sigma_batchnorm"):
                old = getattr(net, name)
                new = GlobalBatchNorm1d(old.num_features, eps=old.eps, momentum=old.momentum, affine=False)
                new.load_state_dict(old.state_dict())
                setattr(net, name, new.to(old.running_mean.device))
        self.distributed = True

    def posterior(self, view: int, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log sigma^2)``, each ``(n, K)``, of view ``view`` for ``(n, d)`` embeddings."""
        net = self.inference[view]
        if self.training and embeddings.shape[0] < 2 and not self.distributed:
            # BatchNorm cannot take batch statistics of one row: use its running statistics.
            net.eval()
            try:
                return net(None, embeddings)
            finally:
                net.train()
        return net(None, embeddings)

    @staticmethod
    def theta_from_noise(mu: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``softmax(mu + sigma * noise)``: reparameterised topic proportions for standard
        normal ``noise`` (broadcast over any leading sample dimensions)."""
        return F.softmax(mu + noise * torch.exp(0.5 * logvar), dim=-1)

    def _batchnorm(self, language: int, x: torch.Tensor) -> torch.Tensor:
        bn = self.topic_word_batchnorm[language]
        # LDA normalises beta itself (rows = topics), identical on every rank: no global stats.
        distributed = self.distributed and self.model_type == "prodLDA"
        return batch_norm_1d(x, bn.running_mean, bn.running_var, self.training, bn.momentum, bn.eps,
                             distributed=distributed)

    def word_log_probs(self, language: int, theta: torch.Tensor) -> torch.Tensor:
        """``(n, W)`` log word distribution of language ``language`` (position in
        ``language_views``) for ``(n, K)`` topic proportions."""
        theta = self.drop_theta(theta)
        beta = self.topic_word[language]
        if self.model_type == "prodLDA":
            return F.log_softmax(self._batchnorm(language, theta @ beta), dim=-1)
        topic_word = F.softmax(self._batchnorm(language, beta), dim=-1)
        return torch.log(theta @ topic_word + 1e-10)

    def topic_word_matrix(self, language: int) -> torch.Tensor:
        """``(K, W)`` weights whose row order ranks each topic's words (CTM's ``beta``;
        for LDA the normalised topic-word distribution)."""
        beta = self.topic_word[language]
        if self.model_type == "prodLDA":
            return beta
        bn = self.topic_word_batchnorm[language]
        return F.softmax(F.batch_norm(beta, bn.running_mean, bn.running_var, training=False,
                                      eps=bn.eps), dim=-1)
