"""The M3L-Contrast network: one inference network per view, one topic-word matrix per
language.  Parameters and forward computations only; the objective lives in ``losses.py``.

Every view's inference network has the layout of CTM's ``ContextualInferenceNetwork``
(linear, activation, hidden linears, dropout, then linear + batch norm for ``mu`` and for
``log sigma^2``), but the views' layers after the first are stored stacked, ``(V, out, in)``,
so all views run together in one batched matrix product per layer: a training step costs
the same handful of operations for 2 views or 8, instead of a Python loop over per-view
modules (see ``benchmarks/train_speed.py``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MultiViewDecoderNetwork", "batch_norm", "dropout", "POSTERIOR_NORMS", "LOGVAR_MAX"]

#: How the inference networks normalise the posterior's parameters: ``"ctm"``, batch norm on
#: ``mu`` and on ``log sigma^2`` (CTM's ``ContextualInferenceNetwork``, the paper's code);
#: ``"ctm-shifted"``, the same followed by a learned shift of ``log sigma^2`` per topic (the
#: bias of an affine batch norm, which CTM's leaves out: the log-variances keep CTM's spread
#: over items, but their level is learned instead of fixed at 0, a variance near 1);
#: ``"mean"``, batch norm on ``mu`` only and a learned bias on ``log sigma^2``; ``"none"``,
#: learned biases on both.
POSTERIOR_NORMS = ("ctm", "ctm-shifted", "mean", "none")
#: The cap on log sigma^2 where a learned bias sets its level (every layout but ``"ctm"``; by
#: default no KL to the prior bounds it either): sigma = e^5 ~ 150 in logit space, where a
#: sample is a random topic either way.  Without it, in a full-scale fit with
#: photos the image network's went past 88, where ``exp`` overflows float32 and the KL terms
#: became inf.
LOGVAR_MAX = 10.0

_BN_MOMENTUM = 0.1
_BN_EPS = 1e-5


def batch_norm(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor, training: bool,
               mask: torch.Tensor | None = None, distributed: bool = False,
               momentum: float = _BN_MOMENTUM, eps: float = _BN_EPS) -> torch.Tensor:
    """Batch norm without affine parameters of ``(N, C)`` rows, as ``BatchNorm1d``.

    Args:
        x: ``(N, C)``; with ``mask``, ``C = G * C'``: ``G`` column groups (views).
        running_mean, running_var: ``(C,)`` running statistics, updated in place in training.
        training: use (and update) batch statistics rather than the running ones.
        mask: ``(N, G)`` bool, the rows that count in each group's statistics; the other rows
            are normalised too (with the same statistics) and ignored by the caller.
        distributed: statistics over the rows of every rank (autograd-aware ``all_reduce``),
            so data-parallel training normalises exactly as one big batch would.

    A group with fewer than 2 counted rows (over all ranks) uses, and leaves unchanged, its
    running statistics: a single row has no batch variance.
    """
    n, width = x.shape
    if not training:
        return F.batch_norm(x, running_mean, running_var, training=False, eps=eps)
    if mask is None and not distributed:
        # The common case: one fused kernel.
        return F.batch_norm(x, running_mean, running_var, training=n > 1, momentum=momentum, eps=eps)
    if mask is None:
        mask = torch.ones(n, 1, dtype=torch.bool, device=x.device)
    groups = mask.shape[1]
    xg = x.view(n, groups, width // groups)
    weight = mask.to(x.dtype).unsqueeze(-1)  # (N, G, 1)
    reduce = _all_reduce if distributed else (lambda t: t)
    first = reduce(torch.cat([(xg * weight).sum(0).flatten(), weight.sum(0).flatten()]))
    count = first[-groups:].view(groups, 1)
    mean = first[:-groups].view(groups, -1) / count.clamp(min=1)
    centred = xg - mean
    var = reduce((centred * centred * weight).sum(0)) / count.clamp(min=1)
    usable = count >= 2
    stored_mean, stored_var = running_mean.view(groups, -1), running_var.view(groups, -1)
    with torch.no_grad():
        unbiased = var * count / (count - 1).clamp(min=1)
        stored_mean.copy_(torch.where(usable, stored_mean + momentum * (mean - stored_mean), stored_mean))
        stored_var.copy_(torch.where(usable, stored_var + momentum * (unbiased - stored_var), stored_var))
    mean = torch.where(usable, mean, stored_mean)
    var = torch.where(usable, var, stored_var)
    return ((xg - mean) * torch.rsqrt(var + eps)).view(n, width)


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout``; on CPU computed as ``x * (rand >= p) / (1 - p)``, the same distribution
    in less time (torch's CPU ``bernoulli_`` draws its numbers one by one).  Both draw
    from torch's generator, so a seed fixes the masks, eagerly and compiled alike."""
    if not training or p == 0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    return x * ((torch.rand_like(x) >= p).to(x.dtype) * (1.0 / (1.0 - p)))


def _linear_init_(weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    """``nn.Linear``'s default initialisation, for one layer stored as slices."""
    bound = 1.0 / math.sqrt(weight.shape[-1])
    nn.init.uniform_(weight, -bound, bound)
    if bias is not None:
        nn.init.uniform_(bias, -bound, bound)


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

    Parameters (``V`` views, ``H`` hidden sizes): ``input_weight[v]`` ``(H_0, d_v)`` and
    ``input_bias`` ``(V, H_0)``; ``hidden_weight[i]`` ``(V, H_i+1, H_i)``;
    ``posterior_weight`` ``(V, 2K, H_last)`` whose first ``K`` rows give ``mu`` and last ``K``
    give ``log sigma^2`` (two linear layers side by side); ``topic_words`` ``(L, K, W_max)``,
    whose ``topic_word[l]`` ``(K, W_l)`` is language ``l``'s.

    The ``mu`` and ``log sigma^2`` layers have no bias, unlike CTM's: the batch norm after
    them subtracts any constant per column, so a bias gets no gradient but rounding noise,
    which Adam scales up to full-size steps (a random walk of ``lr`` per step).  Training
    cancels it; at inference the running mean lags behind it, so it only added noise to the
    topic distributions (0.006 at most in a 3-topic model after 2 epochs on 300 tuples,
    where a compiled and an eager fit that agreed to 1e-7 everywhere else disagreed).  The
    function the network computes is CTM's.
    """

    def __init__(self, embedding_sizes: Sequence[int], vocabulary_sizes: dict[int, int],
                 n_components: int, model_type: str = "prodLDA",
                 hidden_sizes: Sequence[int] = (100,), activation: str = "softplus",
                 dropout: float = 0.2, learn_priors: bool = True,
                 posterior_norm: str | Sequence[str] = "ctm") -> None:
        super().__init__()
        n_views, k = len(embedding_sizes), n_components
        norms = [posterior_norm] * n_views if isinstance(posterior_norm, str) else list(posterior_norm)
        if len(norms) != n_views:
            raise ValueError(f"posterior_norm: {len(norms)} layouts for {n_views} views")
        for norm in norms:
            if norm not in POSTERIOR_NORMS:
                raise ValueError(f"posterior_norm must be one of {POSTERIOR_NORMS}, got {norm!r}")
        #: Each view's layout (``POSTERIOR_NORMS``); ``posterior_norm`` is the common one, or
        #: ``None`` where the views differ.
        self.posterior_norms = tuple(norms)
        self.posterior_norm = norms[0] if len(set(norms)) == 1 else None
        hidden_sizes = tuple(hidden_sizes)
        self.n_views = n_views
        self.n_components = n_components
        self.model_type = model_type
        self.language_views = sorted(vocabulary_sizes)
        self.activation = F.softplus if activation == "softplus" else F.relu
        self.dropout = float(dropout)
        self.distributed = False

        self.input_weight = nn.ParameterList(nn.Parameter(torch.empty(hidden_sizes[0], d))
                                             for d in embedding_sizes)
        self.input_bias = nn.Parameter(torch.empty(n_views, hidden_sizes[0]))
        self.hidden_weight = nn.ParameterList(nn.Parameter(torch.empty(n_views, h_out, h_in))
                                              for h_in, h_out in zip(hidden_sizes[:-1], hidden_sizes[1:]))
        self.hidden_bias = nn.ParameterList(nn.Parameter(torch.empty(n_views, h_out)) for h_out in hidden_sizes[1:])
        self.posterior_weight = nn.Parameter(torch.empty(n_views, 2 * k, hidden_sizes[-1]))
        for v in range(n_views):
            _linear_init_(self.input_weight[v], self.input_bias[v])
            for weight, bias in zip(self.hidden_weight, self.hidden_bias):
                _linear_init_(weight[v], bias[v])
            # mu and log sigma^2 are two layers, each initialised as its own nn.Linear.
            _linear_init_(self.posterior_weight[v, :k])
            _linear_init_(self.posterior_weight[v, k:])
        # Batch norm after the mu and log sigma^2 layers (CTM: both), or learned biases where
        # there is none ("ctm-shifted": both, and a bias after the one on log sigma^2).  A bias
        # before a batch norm would get no gradient (see the class).
        # The running statistics of view v are entries [offset[v], offset[v + 1]).
        widths = [{"ctm": 2 * k, "ctm-shifted": 2 * k, "mean": k, "none": 0}[norm] for norm in norms]
        self._stat_offsets = [sum(widths[:v]) for v in range(n_views + 1)]
        if self._stat_offsets[-1]:
            self.register_buffer("posterior_running_mean", torch.zeros(self._stat_offsets[-1]))
            self.register_buffer("posterior_running_var", torch.ones(self._stat_offsets[-1]))
        bound = 1.0 / math.sqrt(hidden_sizes[-1])
        # (V, K) for every view when any view has one (the others' rows stay unused).
        if "none" in norms:
            self.mu_bias = nn.Parameter(torch.empty(n_views, k).uniform_(-bound, bound))
        if any(norm != "ctm" for norm in norms):
            self.logvar_bias = nn.Parameter(torch.empty(n_views, k).uniform_(-bound, bound))

        # One topic-word matrix per language, all indexed by the same K topics: aligned topics.
        # Stored stacked, (L, K, W_max), narrower vocabularies padded with zero columns that no
        # computation reads (so they get no gradient and stay zero): the decoders of all
        # languages are one batched product, with nothing to stack per step.
        self.vocabulary_sizes = [vocabulary_sizes[view] for view in self.language_views]
        self.topic_words = nn.Parameter(torch.zeros(len(self.language_views), k,
                                                    max(self.vocabulary_sizes, default=0)))
        for language, width in enumerate(self.vocabulary_sizes):
            with torch.no_grad():
                beta = torch.empty(k, width)
                nn.init.xavier_uniform_(beta)
                self.topic_words[language, :, :width] = beta
            # As CTM: normalises each word's logit over the batch (prodLDA) or over topics (LDA).
            self.register_buffer(f"topic_word_running_mean_{language}", torch.zeros(width))
            self.register_buffer(f"topic_word_running_var_{language}", torch.ones(width))
        prior_mean = torch.zeros(k)
        prior_variance = torch.full((k,), 1.0 - 1.0 / k)
        if learn_priors:
            self.prior_mean = nn.Parameter(prior_mean)
            self.prior_variance = nn.Parameter(prior_variance)
        else:
            self.register_buffer("prior_mean", prior_mean)
            self.register_buffer("prior_variance", prior_variance)

    @property
    def topic_word(self) -> list[torch.Tensor]:
        """Every language's ``(K, W_l)`` topic-word matrix (CTM's ``beta``), as views of
        :attr:`topic_words`."""
        return [self.topic_words[language, :, :width] for language, width in enumerate(self.vocabulary_sizes)]

    def use_global_batch_norm(self) -> None:
        """Normalise over the global batch of all ranks (data-parallel training)."""
        self.distributed = True

    # -- inference networks ---------------------------------------------------------------------
    def _encode(self, embeddings: Sequence[torch.Tensor], view: int | None,
                present: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log sigma^2)``, each ``(G, N, K)``, of all views (``view=None``, ``G = V``) or
        of one view (``G = 1``)."""
        pick = slice(None) if view is None else slice(view, view + 1)
        views = range(self.n_views) if view is None else [view]
        h = torch.stack([torch.addmm(self.input_bias[v], x, self.input_weight[v].t())
                         for v, x in zip(views, embeddings)])  # (G, N, H_0)
        h = self.activation(h)
        for weight, bias in zip(self.hidden_weight, self.hidden_bias):
            h = self.activation(torch.baddbmm(bias[pick].unsqueeze(1), h, weight[pick].transpose(1, 2)))
        h = dropout(h, self.dropout, self.training)
        out = torch.bmm(h, self.posterior_weight[pick].transpose(1, 2))  # (G, N, 2K), no bias: see the class
        if view is not None or self.posterior_norm is not None:
            normed = self._normalise(out, view, present)
        else:  # views with different layouts: each with its own
            normed = torch.cat([self._normalise(out[v:v + 1], v, None if present is None else present[v:v + 1])
                                for v in range(self.n_views)])
        if present is not None:
            # Rows of absent views were normalised with other rows' statistics and can be
            # extreme; zeros keep every downstream value (and 0-weighted gradient) finite.
            normed = torch.where(present.unsqueeze(-1), normed, torch.zeros((), dtype=normed.dtype,
                                                                             device=normed.device))
        k = self.n_components
        return normed[..., :k], normed[..., k:]

    def _normalise(self, out: torch.Tensor, view: int | None, present: torch.Tensor | None) -> torch.Tensor:
        """``(G, N, 2K)`` ``[mu, log sigma^2]`` from the posterior layer's output, of all views
        (``view=None``, which then share one layout) or of one view."""
        norm = self.posterior_norm if view is None else self.posterior_norms[view]
        if norm == "ctm":
            return self._posterior_batch_norm(out, view, present)
        # A learned bias sets the level of log sigma^2 (after its batch norm for "ctm-shifted"),
        # under the cap.
        k = self.n_components
        pick = slice(None) if view is None else slice(view, view + 1)
        if norm == "ctm-shifted":
            normed = self._posterior_batch_norm(out, view, present)
            mu, logvar = normed[..., :k], normed[..., k:]
        else:
            mu = (self._posterior_batch_norm(out[..., :k], view, present) if norm == "mean"
                  else out[..., :k] + self.mu_bias[pick].unsqueeze(1))
            logvar = out[..., k:]
        logvar = (logvar + self.logvar_bias[pick].unsqueeze(1)).clamp(max=LOGVAR_MAX)
        return torch.cat([mu, logvar], dim=-1)

    def _posterior_batch_norm(self, out: torch.Tensor, view: int | None, present: torch.Tensor | None) -> torch.Tensor:
        """Batch norm of ``(G, N, C)`` posterior columns, each view's rows with its own statistics."""
        groups, n, width = out.shape
        offsets = self._stat_offsets
        stats = slice(None) if view is None else slice(offsets[view], offsets[view + 1])
        flat = out.transpose(0, 1).reshape(n, groups * width)
        mask = None if present is None else present.t()
        normed = batch_norm(flat, self.posterior_running_mean[stats], self.posterior_running_var[stats],
                            self.training, mask=mask, distributed=self.distributed)
        return normed.view(n, groups, width).transpose(0, 1)

    def posteriors(self, embeddings: Sequence[torch.Tensor],
                   present: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log sigma^2)``, each ``(V, N, K)``, of every view.

        Args:
            embeddings: ``V`` tensors ``(N, d_v)``, one per view, rows aligned (tuples).
            present: ``(V, N)`` bool, which tuples have which view (batch statistics use only
                those rows); ``None`` when every tuple has every view.
        """
        return self._encode(embeddings, None, present)

    def posterior(self, view: int, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log sigma^2)``, each ``(n, K)``, of view ``view`` for ``(n, d)`` embeddings."""
        mu, logvar = self._encode([embeddings], view, None)
        return mu[0], logvar[0]

    @staticmethod
    def theta_from_noise(mu: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``softmax(mu + sigma * noise)``: reparameterised topic proportions for standard
        normal ``noise`` (broadcast over any leading sample dimensions)."""
        return F.softmax(mu + noise * torch.exp(0.5 * logvar), dim=-1)

    # -- decoders -------------------------------------------------------------------------------
    def _topic_word_stats(self, language: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (getattr(self, f"topic_word_running_mean_{language}"),
                getattr(self, f"topic_word_running_var_{language}"))

    def word_log_probs(self, language: int, theta: torch.Tensor,
                       present: torch.Tensor | None = None) -> torch.Tensor:
        """``(n, W)`` log word distribution of language ``language`` (position in
        ``language_views``) for ``(n, K)`` topic proportions; ``present`` ``(n,)`` bool marks
        the rows that have this language (only they count in batch statistics), ``None``
        all of them."""
        theta = dropout(theta, self.dropout, self.training)
        beta = self.topic_word[language]
        if self.model_type == "prodLDA":
            return self._prodlda_log_probs(language, theta @ beta, present)
        # LDA normalises beta itself (rows = topics), identical on every rank: no global stats.
        running_mean, running_var = self._topic_word_stats(language)
        topic_word = F.softmax(batch_norm(beta, running_mean, running_var, self.training), dim=-1)
        return torch.log(theta @ topic_word + 1e-10)

    def _prodlda_log_probs(self, language: int, product: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
        """prodLDA's log word distribution from ``theta @ beta`` ``(n, W)``: each word's logit
        normalised over the batch's rows that have the language (``present`` ``(n,)``), then
        log softmax over the vocabulary."""
        running_mean, running_var = self._topic_word_stats(language)
        logits = batch_norm(product, running_mean, running_var, self.training,
                            mask=None if present is None else present.unsqueeze(1), distributed=self.distributed)
        return F.log_softmax(logits, dim=-1)

    def all_word_log_probs(self, theta: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        """``(n, W_1 + ... + W_L)``: every language's log word distribution side by side, each
        decoded from its own view's topic proportions in ``theta`` ``(V, n, K)`` (all views, as
        :meth:`posteriors` gives them); ``present`` ``(V, n)`` bool or ``None`` as there.

        Same values as :meth:`word_log_probs` per language, but for prodLDA the languages'
        topic-word products run as one batched matrix product over :attr:`topic_words` (the
        padding columns' products are cut off again): one call that keeps every core busy
        instead of one small product per language.  Where padding would make up over a quarter
        of that product, one product per language instead.
        """
        languages, widths = self.language_views, self.vocabulary_sizes
        widest = self.topic_words.shape[2]
        if self.model_type != "prodLDA" or len(languages) == 1 or sum(widths) < 0.75 * len(widths) * widest:
            parts = [self.word_log_probs(language, theta[a], None if present is None else present[a])
                     for language, a in enumerate(languages)]
            return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        contiguous = languages == list(range(languages[0], languages[-1] + 1))
        theta = theta[languages[0]:languages[-1] + 1] if contiguous else theta[languages]  # (L, n, K)
        theta = dropout(theta, self.dropout, self.training)
        # unbind, not indexing: its backward stacks the languages' gradients instead of adding
        # up one zero-filled (L, n, W_max) gradient per language.
        products = torch.bmm(theta, self.topic_words).unbind(0)  # L x (n, W_max)
        # Full-width products are passed as they are: a slice would add a zero-filling backward.
        parts = [self._prodlda_log_probs(language, product if width == widest else product[:, :width],
                                         None if present is None else present[a])
                 for language, (a, product, width) in enumerate(zip(languages, products, widths))]
        return torch.cat(parts, dim=1)

    def topic_word_matrix(self, language: int) -> torch.Tensor:
        """``(K, W)`` weights whose row order ranks each topic's words (CTM's ``beta``;
        for LDA the normalised topic-word distribution)."""
        beta = self.topic_word[language]
        if self.model_type == "prodLDA":
            return beta
        running_mean, running_var = self._topic_word_stats(language)
        return F.softmax(batch_norm(beta, running_mean, running_var, training=False), dim=-1)
