"""Each loss term against a hand computation on a tiny batch."""
import itertools
import math

import numpy as np
import pytest
import torch
from contextualized_topic_models.models.ctm import CTM

from ctm_m3l.losses import (
    contrastive_pair_masks,
    gaussian_kl,
    multiview_info_nce,
    pairwise_theta_kl,
    pairwise_view_kl,
    prior_kl,
    reconstruction_loss,
)

torch.manual_seed(0)


def test_reconstruction_loss_by_hand():
    bow = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0]])
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]])
    expected = [-(2 * math.log(0.5) + math.log(0.25)), -3 * math.log(0.8)]
    got = reconstruction_loss(bow, probs.log())
    assert got.tolist() == pytest.approx(expected, rel=1e-6)


def test_gaussian_kl_matches_torch_distributions():
    mu_q, mu_p = torch.randn(4, 3), torch.randn(4, 3)
    lv_q, lv_p = torch.randn(4, 3), torch.randn(4, 3)
    q = torch.distributions.Normal(mu_q, (0.5 * lv_q).exp())
    p = torch.distributions.Normal(mu_p, (0.5 * lv_p).exp())
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    assert torch.allclose(gaussian_kl(mu_q, lv_q, mu_p, lv_p), expected, atol=1e-5)
    # KL of a distribution to itself is zero.
    assert torch.allclose(gaussian_kl(mu_q, lv_q, mu_q, lv_q), torch.zeros(4), atol=1e-6)


def test_prior_kl_equals_ctm_formula():
    k = 5
    mu, logvar = torch.randn(3, k), torch.randn(3, k)
    prior_mean = torch.randn(k)
    prior_var = torch.rand(k) + 0.5

    class Holder:
        n_components = k

    kl_ctm, _ = CTM._loss(Holder(), torch.zeros(3, 2), torch.full((3, 2), 0.5), prior_mean, prior_var,
                          mu, logvar.exp(), logvar)
    assert torch.allclose(prior_kl(mu, logvar, prior_mean, prior_var), kl_ctm, atol=1e-5)


def _kl_by_hand(mu_a, lv_a, mu_b, lv_b):
    total = 0.0
    for k in range(len(mu_a)):
        va, vb = math.exp(lv_a[k]), math.exp(lv_b[k])
        total += 0.5 * (math.log(vb / va) + (va + (mu_a[k] - mu_b[k]) ** 2) / vb - 1)
    return total


def test_pairwise_view_kl_by_hand_with_missing_views():
    v, n, k = 3, 4, 2
    mu, lv = torch.randn(v, n, k), torch.randn(v, n, k)
    present = torch.tensor([[1, 1, 1, 0], [1, 0, 1, 1], [1, 1, 0, 1]], dtype=torch.bool)
    got = pairwise_view_kl(mu, lv, present)
    for i in range(n):
        expected = sum(
            _kl_by_hand(mu[a, i].tolist(), lv[a, i].tolist(), mu[b, i].tolist(), lv[b, i].tolist())
            for a, b in itertools.permutations(range(v), 2) if present[a, i] and present[b, i])
        assert got[i].item() == pytest.approx(expected, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("n_views", [2, 3, 5])
def test_pairwise_view_kl_equals_every_ordered_pair_with_gradients(n_views):
    """The O(V) expansion against the direct sum of KL(a || b) over ordered pairs."""
    torch.manual_seed(n_views)
    mu = (torch.randn(n_views, 6, 4, dtype=torch.float64) * 2).requires_grad_()
    lv = torch.randn(n_views, 6, 4, dtype=torch.float64).requires_grad_()
    present = torch.rand(n_views, 6) < 0.7
    for mask in (present, None):
        got = pairwise_view_kl(mu, lv, mask)
        full = torch.ones_like(present) if mask is None else mask
        direct = sum(torch.where(full[a] & full[b], gaussian_kl(mu[a], lv[a], mu[b], lv[b]), 0.0)
                     for a, b in itertools.permutations(range(n_views), 2))
        torch.testing.assert_close(got, direct)
        grads = torch.autograd.grad(got.sum(), (mu, lv))
        want = torch.autograd.grad(direct.sum(), (mu, lv))
        for g, w in zip(grads, want):
            torch.testing.assert_close(g, w)


@pytest.mark.parametrize("n_views", [2, 3, 5])
def test_pairwise_theta_kl_equals_every_ordered_pair_with_gradients(n_views):
    """The O(V) expansion against the direct sum over ordered pairs of KL(theta_a || theta_b),
    each computed as ``F.kl_div`` does (``kl_div(log q, p) = KL(p || q)``)."""
    torch.manual_seed(n_views)
    logits = (torch.randn(n_views, 6, 4, dtype=torch.float64) * 2).requires_grad_()
    present = torch.rand(n_views, 6) < 0.7
    for mask in (present, None):
        theta = torch.softmax(logits, dim=-1)
        got = pairwise_theta_kl(theta, mask)
        full = torch.ones_like(present) if mask is None else mask
        direct = sum(torch.where(full[a] & full[b],
                                 torch.nn.functional.kl_div(theta[b].log(), theta[a], reduction="none").sum(-1), 0.0)
                     for a, b in itertools.permutations(range(n_views), 2))
        torch.testing.assert_close(got, direct)
        torch.testing.assert_close(torch.autograd.grad(got.sum(), logits, retain_graph=True)[0],
                                   torch.autograd.grad(direct.sum(), logits)[0])


def test_pairwise_theta_kl_by_hand():
    theta = torch.tensor([[[0.5, 0.5]], [[0.9, 0.1]]])
    kl_ab = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    kl_ba = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert pairwise_theta_kl(theta).item() == pytest.approx(kl_ab + kl_ba, rel=1e-6)
    # A tuple with one view has no pair; identical views have divergence 0.
    assert pairwise_theta_kl(theta, torch.tensor([[True], [False]])).item() == 0.0
    assert pairwise_theta_kl(theta[:1].expand(3, 1, 2)).item() == pytest.approx(0.0, abs=1e-7)


def test_all_present_shortcut_equals_full_mask():
    theta = torch.softmax(torch.randn(3, 7, 5) * 2, dim=-1)
    mu, lv = torch.randn(3, 7, 5), torch.randn(3, 7, 5)
    ones = torch.ones(3, 7, dtype=torch.bool)
    torch.testing.assert_close(multiview_info_nce(theta, None), multiview_info_nce(theta, ones))
    torch.testing.assert_close(pairwise_view_kl(mu, lv, None), pairwise_view_kl(mu, lv, ones))
    torch.testing.assert_close(pairwise_theta_kl(theta, None), pairwise_theta_kl(theta, ones))


@pytest.mark.parametrize("n_views,n_pairs", [(2, 1), (3, 3), (4, 6)])
def test_contrastive_pair_counts(n_views, n_pairs):
    n = 5
    positive, negative = contrastive_pair_masks(torch.ones(n_views, n, dtype=torch.bool))
    # The paper: 2 views -> N and N^2 - N; 3 views -> 3N and 3(N^2 - N); 4 views -> 6N, 6(N^2 - N).
    assert int(positive.sum()) == n_pairs * n
    assert int(negative.sum()) == n_pairs * (n * n - n)
    assert not (positive & negative).any()


def test_contrastive_pair_counts_with_missing_views():
    present = torch.tensor([[1, 1, 1], [1, 0, 1]], dtype=torch.bool)  # tuple 1 lacks view 1
    positive, negative = contrastive_pair_masks(present)
    assert int(positive.sum()) == 2  # tuples 0 and 2
    # negatives (theta_i^0, theta_j^1), i != j, j has view 1: i in {0,1,2}, j in {0,2}, i != j -> 4
    assert int(negative.sum()) == 4


def _info_nce_by_hand(theta, present, tau, cosine=False, reduction="mean"):
    v, n, _ = theta.shape
    t = theta.double().numpy()
    if cosine:
        t = t / np.linalg.norm(t, axis=-1, keepdims=True)
    total = 0.0
    for a, b in itertools.combinations(range(v), 2):
        directions = []
        for x, y in ((a, b), (b, a)):
            terms = []
            for i in range(n):
                if not (present[x, i] and present[y, i]):
                    continue
                pos = math.exp(float(t[x, i] @ t[y, i]) / tau)
                denominator = sum(math.exp(float(t[x, i] @ t[y, j]) / tau) for j in range(n) if present[y, j])
                terms.append(-math.log(pos / denominator))
            directions.append((sum(terms) / len(terms) if reduction == "mean" else sum(terms)) if terms else 0.0)
        total += 0.5 * sum(directions)
    return total


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
@pytest.mark.parametrize("n_views", [2, 3, 4])
def test_info_nce_by_hand(similarity, n_views):
    n, k = 4, 3
    theta = torch.softmax(torch.randn(n_views, n, k) * 2, dim=-1)
    present = torch.ones(n_views, n, dtype=torch.bool)
    got = multiview_info_nce(theta, present, temperature=0.07, similarity=similarity)
    expected = _info_nce_by_hand(theta, present, 0.07, cosine=similarity == "cosine")
    assert got.item() == pytest.approx(expected, rel=1e-4)


def test_info_nce_by_hand_with_missing_views():
    theta = torch.softmax(torch.randn(3, 5, 4) * 2, dim=-1)
    present = torch.tensor([[1, 1, 1, 1, 0], [1, 0, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    got = multiview_info_nce(theta, present, temperature=0.5)
    assert got.item() == pytest.approx(_info_nce_by_hand(theta, present, 0.5), rel=1e-5)


def test_info_nce_gradients_finite_when_a_view_is_absent_from_the_batch():
    theta_logits = torch.randn(3, 6, 4, requires_grad=True)
    present = torch.ones(3, 6, dtype=torch.bool)
    present[2] = False
    loss = multiview_info_nce(torch.softmax(theta_logits, -1), present)
    loss.backward()
    assert torch.isfinite(theta_logits.grad).all()
    assert theta_logits.grad[:2].abs().sum() > 0
    assert theta_logits.grad[2].abs().sum() == 0


def test_info_nce_prefers_aligned_views():
    k = 6
    eye = torch.eye(k)
    aligned = torch.stack([eye, eye])  # every tuple's two views agree
    shuffled = torch.stack([eye, eye[torch.tensor([1, 2, 3, 4, 5, 0])]])
    present = torch.ones(2, k, dtype=torch.bool)
    assert multiview_info_nce(aligned, present) < multiview_info_nce(shuffled, present)


def test_info_nce_rejects_unknown_similarity():
    with pytest.raises(ValueError, match="similarity"):
        multiview_info_nce(torch.rand(2, 3, 4), torch.ones(2, 3, dtype=torch.bool), similarity="l2")


@pytest.mark.parametrize("missing", [False, True])
def test_info_nce_summed_over_tuples_by_hand(missing):
    theta = torch.softmax(torch.randn(3, 5, 4) * 2, dim=-1)
    present = torch.ones(3, 5, dtype=torch.bool)
    if missing:
        present[1, [0, 3]] = False
        present[2, 4] = False
    got = multiview_info_nce(theta, None if not missing else present, temperature=0.2, similarity="cosine",
                             reduction="sum")
    expected = _info_nce_by_hand(theta, present, 0.2, cosine=True, reduction="sum")
    assert got.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        multiview_info_nce(theta, present, reduction="max")
