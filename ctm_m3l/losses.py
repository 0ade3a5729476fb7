"""The terms of the M3L-Contrast objective (Zosa & Pivovarova 2022, Eq. 1) as pure functions.

Shapes: ``V`` views, ``N`` tuples in the batch, ``K`` topics, ``W`` words of a vocabulary.
``present`` is a boolean ``(V, N)`` mask: ``present[a, i]`` says tuple ``i`` has view ``a``.
Every multi-view term uses only the views a tuple has, so tuples with missing views (and
batches where a view is absent altogether) need no special casing by the caller.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "reconstruction_loss",
    "sparse_reconstruction_loss",
    "gaussian_kl",
    "prior_kl",
    "pairwise_view_kl",
    "pairwise_theta_kl",
    "contrastive_pair_masks",
    "multiview_info_nce",
]


def reconstruction_loss(bow: torch.Tensor, word_log_probs: torch.Tensor) -> torch.Tensor:
    r"""Negative log-likelihood of a bag of words under the decoded word distribution.

    .. math:: \mathrm{RL}_i = -\sum_w x_{iw} \log p_{iw}

    Args:
        bow: ``(N, W)`` word counts.
        word_log_probs: ``(N, W)`` log word probabilities (rows of ``log softmax``).

    Returns:
        ``(N,)`` one loss per document.
    """
    return -(bow * word_log_probs).sum(dim=-1)


def sparse_reconstruction_loss(word_log_probs: torch.Tensor, rows: torch.Tensor, words: torch.Tensor,
                               counts: torch.Tensor) -> torch.Tensor:
    r""":func:`reconstruction_loss` of a bag of words given by its nonzero entries.

    .. math:: \mathrm{RL}_i = -\sum_{(i, w, x) \in \text{entries}} x \log p_{iw}

    Reads only the entries' log probabilities, so no dense ``(N, W)`` bag of words is built.

    Args:
        word_log_probs: ``(N, W)`` log word probabilities.
        rows, words: ``(E,)`` long, row and word of each nonzero count.
        counts: ``(E,)`` the counts.

    Returns:
        ``(N,)`` one loss per document.
    """
    picked = word_log_probs[rows, words] * counts
    return -torch.zeros(word_log_probs.shape[0], dtype=picked.dtype, device=picked.device).index_add(0, rows, picked)


def gaussian_kl(mu_q: torch.Tensor, logvar_q: torch.Tensor,
                mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    r"""KL divergence between diagonal Gaussians, summed over the last dimension.

    .. math::
        \mathrm{KL}(q \| p) = \tfrac12 \sum_k \Big[\log\sigma^2_{p,k} - \log\sigma^2_{q,k}
        + \frac{\sigma^2_{q,k} + (\mu_{q,k}-\mu_{p,k})^2}{\sigma^2_{p,k}} - 1\Big]

    Args:
        mu_q, logvar_q, mu_p, logvar_p: broadcastable tensors ``(..., K)``.

    Returns:
        ``(...)``.
    """
    return 0.5 * (
        logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1.0
    ).sum(dim=-1)


def prior_kl(mu: torch.Tensor, logvar: torch.Tensor,
             prior_mean: torch.Tensor, prior_variance: torch.Tensor) -> torch.Tensor:
    r"""CTM's KL between a view's posterior and the topic prior (Laplace approximation of a
    Dirichlet; ``prior_variance`` is a variance, as in CTM, not a log variance).

    Args:
        mu, logvar: ``(N, K)`` posterior parameters.
        prior_mean, prior_variance: ``(K,)``.

    Returns:
        ``(N,)``.
    """
    return gaussian_kl(mu, logvar, prior_mean, prior_variance.log())


def pairwise_view_kl(mu: torch.Tensor, logvar: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    r"""Sum of KL divergences between the posteriors of every ordered pair of a tuple's views.

    .. math:: \mathrm{PKL}_i = \sum_{a \ne b,\ a,b \in \text{views}(i)}
              \mathrm{KL}\big(q(\theta^a_i \mid x^a_i) \,\|\, q(\theta^b_i \mid x^b_i)\big)

    Both directions are counted, as in Eq. 1 (the sum runs over ``a, b`` with ``a != b``).

    Args:
        mu, logvar: ``(V, N, K)`` posterior parameters of every view (rows of absent views
            may hold anything finite).
        present: ``(V, N)`` bool; ``None`` when every tuple has every view.

    Returns:
        ``(N,)``.
    """
    # Expanded so that the cost is O(V) per tuple rather than O(V^2): with m_a = 1 for present
    # views, M = sum_a m_a, and per topic k, over ordered pairs a != b,
    #   sum (logvar_b - logvar_a) = 0,
    #   sum var_a / var_b = (sum_a m_a var_a)(sum_b m_b / var_b) - M,
    #   sum (mu_a - mu_b)^2 / var_b = sum_b m_b / var_b (sum_a m_a mu_a^2 - 2 mu_b sum_a m_a mu_a + M mu_b^2),
    #   sum 1 = M^2 - M.
    weight = None if present is None else present.to(mu.dtype).unsqueeze(-1)  # (V, N, 1)
    var, inverse = logvar.exp(), torch.exp(-logvar)
    mu_sq = mu * mu
    if weight is not None:
        var, inverse, mu_w, mu_sq_w = var * weight, inverse * weight, mu * weight, mu_sq * weight
        count = weight.sum(0)  # (N, 1)
    else:
        mu_w, mu_sq_w = mu, mu_sq
        count = torch.full((1, 1), float(mu.shape[0]), dtype=mu.dtype, device=mu.device)
    first, second = mu_w.sum(0), mu_sq_w.sum(0)  # (N, K)
    spread = (inverse * (second - 2.0 * mu * first + count * mu_sq)).sum(0)
    per_topic = var.sum(0) * inverse.sum(0) + spread - count * count
    return 0.5 * per_topic.sum(dim=-1)


def pairwise_theta_kl(theta: torch.Tensor, present: torch.Tensor | None = None, eps: float = 1e-10) -> torch.Tensor:
    r"""Sum of KL divergences between the sampled topic proportions of every ordered pair of
    a tuple's views.

    .. math:: \mathrm{TKL}_i = \sum_{a \ne b,\ a,b \in \text{views}(i)}
              \sum_k \theta^a_{ik} \big(\log\theta^a_{ik} - \log\theta^b_{ik}\big)

    The divergence the authors' released multimodal code (``models/M3L_contrast.py``) puts
    between views: on the simplex, between the reparameterised samples that the decoder and
    InfoNCE see, rather than between the Gaussian posteriors (:func:`pairwise_view_kl`).
    It pulls a tuple's views towards the same topic mixture without tying the posteriors'
    means and variances in every one of the ``K`` logit dimensions.

    Args:
        theta: ``(V, N, K)`` sampled topic proportions (rows on the simplex).
        present: ``(V, N)`` bool; ``None`` when every tuple has every view.
        eps: floor under ``theta`` before the logarithm.

    Returns:
        ``(N,)``.
    """
    # With m_a = 1 for present views and M = sum_a m_a, over ordered pairs a != b (the a == b
    # terms are 0):  sum_a sum_b m_a m_b theta_a . (log theta_a - log theta_b)
    #              = M sum_a m_a theta_a . log theta_a - (sum_a m_a theta_a) . (sum_b m_b log theta_b).
    log_theta = theta.clamp_min(eps).log()
    if present is None:
        weight = torch.ones((), dtype=theta.dtype, device=theta.device)
        count = torch.full((1,), float(theta.shape[0]), dtype=theta.dtype, device=theta.device)
    else:
        weight = present.to(theta.dtype).unsqueeze(-1)  # (V, N, 1)
        count = weight.sum(0).squeeze(-1)  # (N,)
    weighted, weighted_log = theta * weight, log_theta * weight
    self_term = (weighted * log_theta).sum(dim=(0, 2))
    cross = (weighted.sum(0) * weighted_log.sum(0)).sum(-1)
    return count * self_term - cross


def _view_pairs(n_views: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first, second)`` view indices of the ``P = C(V, 2)`` unordered pairs ``first < second``."""
    pairs = torch.triu_indices(n_views, n_views, 1, device=device)
    return pairs[0], pairs[1]


def contrastive_pair_masks(present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative pairs of the contrastive term, each unordered pair once.

    A pair is ``(theta_i^a, theta_j^b)`` with ``a < b``: positive when ``i == j`` (two views
    of one tuple), negative when ``i != j`` (views of different tuples).  With every view
    present, ``V`` views and ``N`` tuples give ``C(V, 2) * N`` positives and
    ``C(V, 2) * (N^2 - N)`` negatives (3 views: ``3N`` and ``3(N^2 - N)``, as in the paper).

    Args:
        present: ``(V, N)`` bool.

    Returns:
        ``(positive, negative)``, each ``(V, V, N, N)`` bool, indexed ``[a, b, i, j]``.
    """
    n_views, n = present.shape
    upper = torch.ones(n_views, n_views, dtype=torch.bool, device=present.device).triu(1)
    same_tuple = torch.eye(n, dtype=torch.bool, device=present.device)
    both = present[:, None, :, None] & present[None, :, None, :] & upper[:, :, None, None]
    return both & same_tuple, both & ~same_tuple


def multiview_info_nce(theta: torch.Tensor, present: torch.Tensor | None = None, temperature: float = 0.07,
                       similarity: str = "dot", reduction: str = "mean") -> torch.Tensor:
    r"""InfoNCE over every pair of views, positives within a tuple, negatives across tuples.

    For an ordered view pair ``(a, b)`` and an anchor tuple ``i`` that has both views:

    .. math::
        \ell^{ab}_i = -\log \frac{\exp(s(\theta^a_i, \theta^b_i)/\tau)}
                                 {\sum_{j:\, b \in \text{views}(j)} \exp(s(\theta^a_i, \theta^b_j)/\tau)}

    with ``s`` the dot product (Eq. 1) or the cosine (NT-Xent, the authors' released code).
    Each view pair is a symmetric, CLIP-style loss; the result is

    .. math:: \sum_{a<b} \tfrac12\big(\overline{\ell^{ab}} + \overline{\ell^{ba}}\big)

    where the bars average over the anchors that have both views: a mean over positive
    pairs per view pair, as the released code's NT-Xent reduces, so that the paper's
    weight ``s = 50`` keeps the meaning it was tuned with (``reduction="mean"``).  With
    ``reduction="sum"`` the bars are sums over those anchors, as Eq. 1 sums every term over
    the tuples of a batch (the reconstruction and the KLs are sums too): the weight of
    InfoNCE against them then does not shrink as the batch grows.  View pairs with no tuple
    that has both views contribute 0.

    Args:
        theta: ``(V, N, K)`` sampled topic vectors.
        present: ``(V, N)`` bool; ``None`` when every tuple has every view.
        temperature: ``tau`` (0.07 in the paper).
        similarity: ``"dot"`` or ``"cosine"``.
        reduction: ``"mean"`` or ``"sum"`` over a view pair's anchors.

    Returns:
        A scalar.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if similarity == "cosine":
        theta = F.normalize(theta, dim=-1)
    elif similarity != "dot":
        raise ValueError(f"similarity must be 'dot' or 'cosine', got {similarity!r}")
    first, second = _view_pairs(theta.shape[0], theta.device)
    # One (N, N) block per unordered pair: s(theta_i^a, theta_j^b); its rows serve the anchors
    # of view a, its columns those of view b.
    logits = torch.bmm(theta[first], theta[second].transpose(1, 2)) / temperature  # (P, N, N)
    positive = torch.diagonal(logits, dim1=1, dim2=2)  # (P, N)
    if present is None:
        per_anchor = logits.logsumexp(dim=-1) + logits.logsumexp(dim=-2) - 2.0 * positive  # (P, N)
        return 0.5 * (per_anchor.mean(dim=-1) if reduction == "mean" else per_anchor.sum(dim=-1)).sum()
    # A large finite value rather than -inf: a row with no candidate (a view absent from the
    # whole batch) must not produce NaN gradients through logsumexp.
    floor = torch.finfo(logits.dtype).min / 4
    rows = logits.masked_fill(~present[second][:, None, :], floor).logsumexp(dim=-1)  # anchors in a
    columns = logits.masked_fill(~present[first][:, :, None], floor).logsumexp(dim=-2)  # anchors in b
    valid = present[first] & present[second]  # (P, N)
    zero = torch.zeros((), dtype=theta.dtype, device=theta.device)
    per_pair = (torch.where(valid, rows - positive, zero).sum(dim=-1)
                + torch.where(valid, columns - positive, zero).sum(dim=-1))
    if reduction == "mean":
        per_pair = per_pair / valid.sum(dim=-1).clamp(min=1)
    return 0.5 * per_pair.sum()
