"""The stacked multi-view network against per-view computations done by hand."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ctm_m3l import M3LTM
from ctm_m3l.losses import prior_kl, reconstruction_loss, sparse_reconstruction_loss
from ctm_m3l.networks import LOGVAR_MAX, MultiViewDecoderNetwork, batch_norm, dropout

SIZES = [7, 5, 11]
K = 4


def network(**kwargs):
    torch.manual_seed(0)
    return MultiViewDecoderNetwork(SIZES, {0: 9, 1: 6}, K, dropout=0.0, **kwargs)


def by_hand(net, view, x, running=False):
    """One view through its own layers, as CTM's ContextualInferenceNetwork computes it (with
    ``posterior_norm="ctm"``), the same with a bias added to the normalised log sigma^2
    (``"ctm-shifted"``), or with batch norm on mu only and a bias on log sigma^2 (``"mean"``),
    or biases on both (``"none"``): the view's own layout."""
    h = F.softplus(x @ net.input_weight[view].t() + net.input_bias[view])
    for weight, bias in zip(net.hidden_weight, net.hidden_bias):
        h = F.softplus(h @ weight[view].t() + bias[view])
    out = h @ net.posterior_weight[view].t()  # no bias: the batch norm would remove it
    norm = net.posterior_norms[view]
    if norm == "none":
        return out[:, :K] + net.mu_bias[view], (out[:, K:] + net.logvar_bias[view]).clamp(max=LOGVAR_MAX)
    widths = [{"ctm": 2 * K, "ctm-shifted": 2 * K, "mean": K, "none": 0}[n] for n in net.posterior_norms]
    width, start = widths[view], sum(widths[:view])  # the view's running statistics
    normalised = out[:, :width]
    if running:
        mean = net.posterior_running_mean[start:start + width]
        var = net.posterior_running_var[start:start + width]
    else:
        mean, var = normalised.mean(0), normalised.var(0, unbiased=False)
    normalised = (normalised - mean) / torch.sqrt(var + 1e-5)
    if norm == "ctm":
        return normalised[:, :K], normalised[:, K:]
    if norm == "ctm-shifted":
        return normalised[:, :K], (normalised[:, K:] + net.logvar_bias[view]).clamp(max=LOGVAR_MAX)
    return normalised, (out[:, K:] + net.logvar_bias[view]).clamp(max=LOGVAR_MAX)


@pytest.mark.parametrize("posterior_norm", ["ctm", "ctm-shifted", "mean", "none", ("mean", "mean", "ctm"),
                                            ("none", "ctm", "mean"), ("mean", "mean", "ctm-shifted"),
                                            ("ctm-shifted", "ctm", "none")])
def test_each_posterior_norm_by_hand_with_missing_views(posterior_norm):
    net = network(posterior_norm=posterior_norm)
    xs = [torch.randn(8, d) for d in SIZES]
    present = torch.ones(3, 8, dtype=torch.bool)
    present[2, [0, 3, 4]] = False
    mu, logvar = net.posteriors(xs, present)
    for v in range(3):
        rows = present[v].nonzero().squeeze(1)
        want_mu, want_logvar = by_hand(net, v, xs[v][rows])
        torch.testing.assert_close(mu[v, rows], want_mu, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(logvar[v, rows], want_logvar, rtol=1e-5, atol=1e-5)
    net.eval()
    for v in range(3):
        mu, logvar = net.posterior(v, xs[v])
        want_mu, want_logvar = by_hand(net, v, xs[v], running=True)
        torch.testing.assert_close(mu, want_mu, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(logvar, want_logvar, rtol=1e-5, atol=1e-5)
    names = dict(net.named_parameters())
    norms = [posterior_norm] * 3 if isinstance(posterior_norm, str) else posterior_norm
    assert ("mu_bias" in names) == ("none" in norms)
    assert ("logvar_bias" in names) == any(n != "ctm" for n in norms)
    assert net.posterior_norm == (posterior_norm if isinstance(posterior_norm, str) else None)
    with pytest.raises(ValueError, match="posterior_norm must be one of"):
        network(posterior_norm="batch")
    with pytest.raises(ValueError, match="posterior_norm must be one of"):
        network(posterior_norm=("mean", "mean", "batch"))
    with pytest.raises(ValueError, match="2 layouts for 3 views"):
        network(posterior_norm=("mean", "ctm"))


@pytest.mark.parametrize("hidden_sizes", [(10,), (10, 8)])
def test_all_views_at_once_equal_each_view_alone(hidden_sizes):
    net = network(hidden_sizes=hidden_sizes)
    xs = [torch.randn(6, d) for d in SIZES]
    mu, logvar = net.posteriors(xs)
    assert mu.shape == logvar.shape == (3, 6, K)
    for v, x in enumerate(xs):
        want_mu, want_logvar = by_hand(net, v, x)
        torch.testing.assert_close(mu[v], want_mu, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(logvar[v], want_logvar, rtol=1e-5, atol=1e-5)
        one_mu, _ = net.posterior(v, x)
        torch.testing.assert_close(one_mu, want_mu, rtol=1e-5, atol=1e-5)


def test_missing_views_take_batch_statistics_from_present_rows_only():
    net = network()
    xs = [torch.randn(8, d) for d in SIZES]
    present = torch.ones(3, 8, dtype=torch.bool)
    present[2, [0, 3, 4, 7]] = False  # half the tuples lack the image
    present[1, 5] = False
    mu, logvar = net.posteriors(xs, present)
    for v in range(3):
        rows = present[v].nonzero().squeeze(1)
        want_mu, want_logvar = by_hand(net, v, xs[v][rows])
        torch.testing.assert_close(mu[v, rows], want_mu, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(logvar[v, rows], want_logvar, rtol=1e-5, atol=1e-5)
        # Absent rows are zeros, so nothing downstream can overflow.
        assert (mu[v, ~present[v]] == 0).all() and (logvar[v, ~present[v]] == 0).all()


def test_running_statistics_follow_present_rows_and_skip_single_rows():
    net = network()
    xs = [torch.randn(8, d) for d in SIZES]
    present = torch.ones(3, 8, dtype=torch.bool)
    present[2, 1:] = False  # one image: no batch variance for that view
    before = net.posterior_running_mean.clone()
    net.posteriors(xs, present)
    width = 2 * K
    image = slice(2 * width, 3 * width)
    assert torch.equal(net.posterior_running_mean[image], before[image])  # left unchanged
    with torch.no_grad():
        h = F.softplus(xs[0] @ net.input_weight[0].t() + net.input_bias[0])
        out = h @ net.posterior_weight[0].t()
    torch.testing.assert_close(net.posterior_running_mean[:width], 0.1 * out.mean(0))
    # The single image row is normalised with the running statistics, as BatchNorm1d in eval.
    mu, _ = net.posteriors(xs, present)
    want, _ = by_hand(net, 2, xs[2][:1], running=True)
    torch.testing.assert_close(mu[2, :1], want, rtol=1e-5, atol=1e-5)


def test_eval_uses_running_statistics():
    net = network()
    for _ in range(3):
        net.posteriors([torch.randn(16, d) for d in SIZES])
    net.eval()
    x = torch.randn(5, SIZES[1])
    mu, logvar = net.posterior(1, x)
    want_mu, want_logvar = by_hand(net, 1, x, running=True)
    torch.testing.assert_close(mu, want_mu, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logvar, want_logvar, rtol=1e-5, atol=1e-5)


def test_masked_batch_norm_without_mask_equals_torch():
    x = torch.randn(10, 6, dtype=torch.float64)
    rm, rv = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    all_rows = torch.ones(10, 2, dtype=torch.bool)
    got = batch_norm(x, rm, rv, training=True, mask=all_rows)
    bn = torch.nn.BatchNorm1d(6, affine=False).double()
    torch.testing.assert_close(got, bn(x))
    torch.testing.assert_close(rm, bn.running_mean)
    torch.testing.assert_close(rv, bn.running_var)


# Padded to the widest, equal widths, other views in between, too narrow to pad (one product each).
@pytest.mark.parametrize("vocabularies", [{0: 9, 1: 6}, {0: 9, 2: 9}, {1: 6, 2: 9}, {0: 9, 1: 2}])
@pytest.mark.parametrize("masked", [False, True])
def test_all_languages_in_one_product_equal_each_language_by_hand(vocabularies, masked):
    """The batched decoder (vocabularies padded to the widest) against prodLDA by hand:
    log softmax of the batch-normalised theta @ beta over each language's present rows."""
    torch.manual_seed(0)
    net = MultiViewDecoderNetwork(SIZES, vocabularies, K, dropout=0.0)
    with torch.no_grad():
        for beta in net.topic_word:
            beta.normal_()
    n = 8
    theta = torch.softmax(torch.randn(3, n, K), dim=-1)
    present = None
    if masked:
        present = torch.ones(3, n, dtype=torch.bool)
        present[net.language_views[1], [1, 4, 6]] = False  # tuples lacking the second language
    got = net.all_word_log_probs(theta, present)
    assert got.shape == (n, sum(vocabularies.values()))
    start = 0
    for language, view in enumerate(net.language_views):
        width = vocabularies[view]
        rows = torch.ones(n, dtype=torch.bool) if present is None else present[view]
        logits = theta[view] @ net.topic_word[language]
        mean, var = logits[rows].mean(0), logits[rows].var(0, unbiased=False)
        want = torch.log_softmax((logits - mean) / torch.sqrt(var + 1e-5), dim=-1)
        torch.testing.assert_close(got[rows, start:start + width], want[rows], rtol=1e-5, atol=1e-5)
        unbiased = logits[rows].var(0, unbiased=True)
        running_mean, running_var = net._topic_word_stats(language)
        torch.testing.assert_close(running_mean, 0.1 * mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(running_var, 0.9 + 0.1 * unbiased, rtol=1e-5, atol=1e-6)
        start += width
    # Gradients reach every topic-word matrix and never the padding of a narrower vocabulary.
    got.sum().backward()
    for language, view in enumerate(net.language_views):
        grad = net.topic_words.grad[language]
        assert grad[:, :vocabularies[view]].abs().sum() > 0
        assert (grad[:, vocabularies[view]:] == 0).all()


def test_sparse_reconstruction_equals_dense():
    torch.manual_seed(0)
    log_probs = torch.log_softmax(torch.randn(5, 30), dim=-1)
    bow = (torch.rand(5, 30) < 0.3).float() * torch.randint(1, 4, (5, 30))
    bow[2] = 0  # an empty document
    rows, words = bow.nonzero(as_tuple=True)
    got = sparse_reconstruction_loss(log_probs, rows, words, bow[rows, words])
    torch.testing.assert_close(got, reconstruction_loss(bow, log_probs))
    assert got[2] == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_stays_finite_when_few_tuples_have_an_image(seed):
    """Regression: rows of absent views once reached the pairwise KL as huge values (NaN)."""
    from helpers import VIEWS, prepare

    _, train, _ = prepare(n_train=160, n_test=8, image_share=0.15, seed=seed)
    model = M3LTM(views=VIEWS, n_components=4, batch_size=16, num_epochs=4, random_state=seed)
    model.fit(train, progress_bar=False)
    assert all(np.isfinite(record["loss"]) for record in model.history)


def test_cpu_dropout_keeps_the_expected_value_and_rate():
    torch.manual_seed(0)
    x = torch.ones(200, 500, requires_grad=True)
    out = dropout(x, 0.2, True)
    assert set(out.unique().tolist()) == {0.0, 1.25}
    out.sum().backward()
    torch.testing.assert_close(x.grad, out.detach())  # the gradient is the scaled mask
    assert abs((out == 0).float().mean().item() - 0.2) < 0.005
    assert dropout(x, 0.2, False) is x and dropout(x, 0.0, True) is x
    with torch.no_grad():
        torch.manual_seed(1)
        first = dropout(x, 0.5, True)
        torch.manual_seed(1)
        torch.testing.assert_close(dropout(x, 0.5, True), first)  # the seed fixes the mask


def test_combined_input_by_hand():
    """``inference_input="combined"``: a language view's posterior is its network applied to its
    embedding followed by its bag-of-words counts (CTM's CombinedTM input); the image view's to
    its embedding alone."""
    from ctm_m3l.data.synthetic import planted_datasets

    _, train, test = planted_datasets(64, 12, n_topics=K)
    views = ["en", "de", "image"]
    model = M3LTM(views=views, n_components=K, num_epochs=2, batch_size=16, random_state=0,
                  posterior_norm="mean", inference_input="combined")
    model.fit(train, progress_bar=False)
    net = model.model.eval()
    for v, name in enumerate(views):
        x = torch.from_numpy(test.embeddings[name]).float()
        if name in test.vocabularies:
            x = torch.cat([x, torch.from_numpy(test.bow[name].toarray()).float()], dim=1)
        with torch.no_grad():
            mu, _ = by_hand(net, v, x, running=True)
        got = model.get_thetas(test, view=name, n_samples=0)
        np.testing.assert_allclose(got, torch.softmax(mu.double(), -1).numpy(), rtol=1e-5, atol=1e-6)
    assert net.input_weight[0].shape[1] == train.embeddings["en"].shape[1] + len(train.vocabularies["en"])


@pytest.mark.parametrize("posterior_norm", ["mean", "none"])
def test_log_variance_is_capped_where_no_batch_norm_bounds_it(posterior_norm):
    """An outlier input (here 1,000x the scale) would push log sigma^2 far past 88, where exp
    overflows float32; it is capped at LOGVAR_MAX, so every KL term stays finite."""
    net = network(posterior_norm=posterior_norm)
    with torch.no_grad():
        net.posterior_weight[:, K:] = net.posterior_weight[:, K:].abs()  # every log sigma^2 grows with h
    xs = [1000 * torch.randn(8, d).abs() for d in SIZES]
    mu, logvar = net.posteriors(xs)
    assert logvar.max() == LOGVAR_MAX
    assert torch.isfinite(prior_kl(mu[0], logvar[0], torch.zeros(K), torch.ones(K))).all()
    small = [x / 1e6 for x in xs]  # below the cap nothing changes: the hand computation has no cap there
    _, low = net.posteriors(small)
    assert low.max() < LOGVAR_MAX


def test_a_shifted_batch_norm_keeps_the_spread_and_learns_the_level_under_the_cap():
    """``"ctm-shifted"``: in training each view's log sigma^2 has CTM's batch statistics (mean
    0, variance 1 over the batch) moved by its learned shift; a shift that ran away is capped."""
    net = network(posterior_norm="ctm-shifted")
    xs = [torch.randn(64, d) for d in SIZES]
    with torch.no_grad():
        net.logvar_bias.copy_(torch.tensor([[-3.0] * K, [0.5] * K, [40.0] * K]))
    _, logvar = net.posteriors(xs)
    for v, level in enumerate((-3.0, 0.5)):
        torch.testing.assert_close(logvar[v].mean(0), torch.full((K,), level), rtol=0, atol=1e-5)
        torch.testing.assert_close(logvar[v].var(0, unbiased=False), torch.ones(K), rtol=0, atol=1e-3)
    assert (logvar[2] == LOGVAR_MAX).all()
    logvar.sum().backward()  # the shift learns (the two views under the cap give it a gradient)
    assert (net.logvar_bias.grad[:2] != 0).all() and (net.logvar_bias.grad[2] == 0).all()
