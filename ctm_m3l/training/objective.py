"""Eq. 1 of the paper as one module: the loss terms of a batch from its views' inputs.

``Objective`` is what training calls, eagerly, compiled (``torch.compile`` wraps it) or
data-parallel (``DistributedDataParallel`` wraps it): its ``forward`` takes one batch's
embeddings, noise, bags of words and view mask, and returns every term (``losses.py`` has
each term's equation).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from ..defaults import resolve_loss_weights
from ..losses import (
    multiview_info_nce,
    pairwise_theta_kl,
    pairwise_view_kl,
    prior_kl,
    reconstruction_loss,
    sparse_reconstruction_loss,
)

__all__ = ["Objective", "TERMS"]

#: The terms ``Objective`` returns besides ``"loss"``, in the order epochs report them.
TERMS = ("reconstruction", "prior_kl", "pair_kl", "contrastive")


class Objective(torch.nn.Module):
    """The loss of a batch of tuples (see ``ctm_m3l.model``'s docstring for the formula).

    Args:
        net: the :class:`~ctm_m3l.networks.MultiViewDecoderNetwork` (a submodule: DDP
            synchronises its gradients).
        weights: the weight of each term (``TERMS``).
        pair_kl_on, temperature, similarity, contrastive_reduction: as ``M3LTM``'s.
        image_views: which views (in the network's order) are images: their KL to the prior is
            weighted ``weights["image_prior_kl"]``, the languages' ``weights["prior_kl"]``.
        world: ranks of a data-parallel run (1: one process).  Every term but InfoNCE is a sum
            over this rank's tuples; DDP averages gradients over ranks, so those sums are
            scaled by ``world`` to make the average the gradient of the global batch's sum.
    """

    def __init__(self, net: torch.nn.Module, weights: Mapping[str, float], pair_kl_on: str, temperature: float,
                 similarity: str, contrastive_reduction: str, world: int = 1,
                 image_views: Sequence[bool] = ()) -> None:
        super().__init__()
        self.net = net
        self.weights = resolve_loss_weights(weights)  # the one rule for "image_prior_kl"
        self.image_rows = [v for v, image in enumerate(image_views) if image]
        self.language_rows = [v for v in range(net.n_views) if v not in self.image_rows]
        self.pair_kl_on, self.temperature, self.similarity = pair_kl_on, temperature, similarity
        self.contrastive_reduction, self.world = contrastive_reduction, world

    def forward(self, embeddings: list[torch.Tensor], noise: torch.Tensor,
                bow: torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor], present: torch.Tensor | None,
                gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
                global_present: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The terms of one batch from its views' embeddings, noise ``(V, b, K)``, bags of
        words (dense ``(b, W)``, or ``(row, word, count)`` entries) and ``(V, b)`` view mask
        (None: every tuple has every view).  With ``gather`` (distributed), InfoNCE runs on
        the gathered global batch's thetas, whose mask is ``global_present``."""
        net = self.net
        mu, logvar = net.posteriors(embeddings, present)
        theta = net.theta_from_noise(mu, logvar, noise)  # (V, b, K)
        # A term weighted 0 is computed for the record only, outside the graph, except under DDP
        # (the runs that pass ``gather``), which expects every parameter (the prior's too) to
        # get a gradient at every step.
        w, keep = self.weights, gather is not None
        with _differentiable(w["reconstruction"], keep):
            log_probs = net.all_word_log_probs(theta, present)  # (b, W): every language side by side
            rec = (reconstruction_loss(bow, log_probs) if isinstance(bow, torch.Tensor)
                   else sparse_reconstruction_loss(log_probs, *bow)).sum()
        zero = torch.zeros((), device=mu.device)
        with _differentiable(w["prior_kl"] or w["image_prior_kl"], keep):  # reported whatever its weights
            kl = prior_kl(mu, logvar, net.prior_mean, net.prior_variance)  # (V, b)
            if present is not None:
                kl = torch.where(present, kl, zero)
            pkl = kl.sum()
            # The languages' and the images' parts, each with its weight.
            language_kl = kl[self.language_rows].sum() if self.image_rows else pkl
            image_kl = kl[self.image_rows].sum() if self.image_rows else zero
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
        local = _weighted_sum([(w["reconstruction"], rec), (w["prior_kl"], language_kl),
                               (w["image_prior_kl"], image_kl), (w["pair_kl"], pair)], zero, keep)
        # InfoNCE's gradient already arrives summed over ranks through the all-gather.
        loss = _weighted_sum([(self.world, local), (w["contrastive"], contrastive)], zero, keep)
        return {"loss": loss, "reconstruction": rec, "prior_kl": pkl, "pair_kl": pair, "contrastive": contrastive}


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
