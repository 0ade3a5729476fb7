"""M3LTM: gradients, learning on planted data, missing views, persistence, bad input."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from contextualized_topic_models.models.ctm import ZeroShotTM
from helpers import VIEWS, K, prepare, resign, start_fit

from ctm_m3l import M3LTM, M3LDataPreparation
from ctm_m3l.data.synthetic import main_planted_topic
from ctm_m3l.evaluation import mrr


@pytest.fixture(scope="module")
def trained():
    prep, train, test = prepare()
    model = M3LTM(views=VIEWS, n_components=K, num_epochs=50, random_state=0)
    model.fit(train, progress_bar=False)
    return prep, train, test, model


def test_is_a_ctm_zeroshot_model(trained):
    model = trained[3]
    assert isinstance(model, ZeroShotTM)
    assert model.language_views == ["en", "de"] and model.image_views == ["image"]
    assert len(model.history) == 50
    assert model.history[-1]["loss"] < model.history[0]["loss"]


def test_gradients_reach_every_view_network():
    _, train, _ = prepare(n_train=64, n_test=8)
    model = M3LTM(views=VIEWS, n_components=K, random_state=0)
    loop, data = start_fit(model, train)
    terms = loop.batch_terms(data, np.arange(32))
    terms["loss"].backward()
    net = model.model
    for a, view in enumerate(VIEWS):
        grads = [net.input_weight[a].grad, net.input_bias.grad[a], net.posterior_weight.grad[a]]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), view
    assert all(net.topic_words.grad[language].abs().sum() > 0 for language in range(len(net.language_views)))
    for key in ("reconstruction", "prior_kl", "pair_kl", "contrastive"):
        assert terms[key].item() > 0, key


def test_planted_retrieval_far_above_chance(trained):
    _, _, test, model = trained
    # 100 samples: posteriors here are wide, and 20 leave much of the sampling noise in (MRR
    # en->de 0.28 with 20, 0.38 with 100, 0.43 with 200, chance 0.03)
    theta = {v: model.get_thetas(test, view=v, n_samples=100, seed=0) for v in VIEWS}
    for v in VIEWS:
        assert theta[v].shape == (200, K)
        assert np.allclose(theta[v].sum(axis=1), 1.0)
    chance = np.mean(1.0 / np.arange(1, 201))  # ~0.03
    for a, b in [("en", "de"), ("de", "en"), ("en", "image"), ("de", "image")]:
        assert mrr(theta[a], theta[b]) > 10 * chance, (a, b)


def test_planted_topics_line_up_across_languages(trained):
    model = trained[3]
    en = model.get_topic_lists(k=5, language="en")
    de = model.get_topic_lists(k=5, language="de")
    agree = 0
    for en_words, de_words in zip(en, de):
        en_block, de_block = main_planted_topic(en_words), main_planted_topic(de_words)
        agree += en_block == de_block
    assert agree >= K - 1


def test_image_gets_words_in_every_language(trained):
    _, _, test, model = trained
    for language in ("en", "de"):
        topics = model.get_item_topics(test, view="image", language=language, n_topics=2, k=3, seed=0)
        assert len(topics) == len(test)
        topic, prob, words = topics[0][0]
        assert 0 <= topic < K and 0 < prob <= 1
        assert all(w.startswith(language) for w in words)
    with pytest.raises(ValueError, match="'image' is an image view and has no vocabulary"):
        model.get_topic_lists(language="image")


def test_single_view_inference_after_transform(trained):
    prep, _, test, model = trained
    german = [test.documents["de"][0]]
    one = prep.transform(german, view="de", custom_embeddings=test.embeddings["de"][:1])
    theta = model.get_thetas(one, seed=0)  # the only view with items
    assert theta.shape == (1, K)
    expected = model.get_thetas(test.subset([0]), view="de", seed=0)
    assert np.allclose(theta, expected)


def test_save_load_identical_thetas(trained, tmp_path):
    _, _, test, model = trained
    model.save(tmp_path / "m")
    loaded = M3LTM.load(tmp_path / "m", device="cpu")
    for v in VIEWS:
        assert np.array_equal(model.get_thetas(test, view=v, seed=3), loaded.get_thetas(test, view=v, seed=3))
    assert loaded.get_topic_lists(k=5, language="de") == model.get_topic_lists(k=5, language="de")
    assert loaded.history == model.history
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "manifest.json", "model.safetensors"]


def test_missing_views_train_in_one_model():
    _, train, test = prepare(n_train=600, n_test=200, image_share=0.3, seed=1)
    assert 0.2 < train.has_view("image").mean() < 0.4
    # 50 epochs: on this small planted set the default loss (KL between sampled thetas, cosine)
    # aligns the views more slowly than the Gaussian KL with the dot product (en->image MRR 0.28
    # vs 0.47 after 25 epochs), and as well after 50 (0.48 vs 0.49; chance 0.08).
    model = M3LTM(views=VIEWS, n_components=K, num_epochs=50, random_state=0)
    model.fit(train, progress_bar=False)
    with pytest.warns(UserWarning, match="have no 'image' view"):
        theta_img = model.get_thetas(test, view="image", seed=0)
    has = test.has_view("image")
    assert np.isnan(theta_img[~has]).all() and not np.isnan(theta_img[has]).any()
    theta_en = model.get_thetas(test, view="en", seed=0)
    chance = np.mean(1.0 / np.arange(1, has.sum() + 1))
    assert mrr(theta_en[has], theta_img[has]) > 5 * chance


def test_batches_without_a_view_still_train():
    _, train, _ = prepare(n_train=40, n_test=4, image_share=1.0)
    keep_image = np.zeros(len(train), dtype=bool)
    keep_image[:3] = True  # only 3 tuples have an image: most batches of 4 have none
    train.view_mask[:, train.view_index("image")] = keep_image
    model = M3LTM(views=VIEWS, n_components=K, num_epochs=3, batch_size=4, random_state=0)
    model.fit(train, progress_bar=False)
    assert all(np.isfinite(r["loss"]) for r in model.history)


def test_same_seed_same_weights():
    _, train, _ = prepare(n_train=100, n_test=4)
    states = []
    for _ in range(2):
        model = M3LTM(views=VIEWS, n_components=K, num_epochs=2, random_state=7)
        model.fit(train, progress_bar=False)
        states.append(model.model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_validation_and_save_dir(tmp_path):
    _, train, test = prepare(n_train=200, n_test=100)
    model = M3LTM(views=VIEWS, n_components=K, num_epochs=30, random_state=0)
    model.fit(train, validation_dataset=test, patience=2, save_dir=tmp_path / "best", progress_bar=False)
    assert "val_loss" in model.history[0] and "val_contrastive" in model.history[0]
    assert len(model.history) <= 30
    loaded = M3LTM.load(tmp_path / "best")
    assert np.array_equal(loaded.get_thetas(test, view="en", seed=0), model.get_thetas(test, view="en", seed=0))


@pytest.mark.parametrize("weights", [{"pair_kl": 0.0}, {"prior_kl": 0.0}, {"contrastive": 0.0}])
def test_loss_weight_variants_train(weights):
    _, train, _ = prepare(n_train=100, n_test=4)
    model = M3LTM(views=VIEWS, n_components=K, num_epochs=2, loss_weights=weights, random_state=0,
                  similarity="cosine")
    model.fit(train, progress_bar=False)
    assert model.weights[next(iter(weights))] == 0.0
    assert np.isfinite(model.history[-1]["loss"])


def test_a_term_weighted_zero_is_reported_but_not_differentiated():
    _, train, _ = prepare(n_train=64, n_test=4)
    # Every view's KL to the prior weighted 0 (by default only the languages').
    model = M3LTM(views=VIEWS, n_components=K, random_state=0, loss_weights={"prior_kl": 0})
    loop, data = start_fit(model, train)
    terms = loop.batch_terms(data, np.arange(32))
    assert terms["prior_kl"].item() > 0 and not terms["prior_kl"].requires_grad
    assert terms["pair_kl"].requires_grad and terms["contrastive"].requires_grad
    torch.testing.assert_close(terms["loss"], terms["reconstruction"] + terms["pair_kl"] + 100 * terms["contrastive"])
    terms["loss"].backward()
    assert model.model.prior_mean.grad is None  # nothing of the prior KL in the graph
    # Weighted, it is in the loss and its gradient reaches the prior.
    weighted = M3LTM(views=VIEWS, n_components=K, random_state=0, loss_weights={"prior_kl": 0.5})
    loop, data = start_fit(weighted, train)
    terms = loop.batch_terms(data, np.arange(32))
    torch.testing.assert_close(terms["loss"], terms["reconstruction"] + 0.5 * terms["prior_kl"] + terms["pair_kl"]
                               + 100 * terms["contrastive"])
    terms["loss"].backward()
    assert weighted.model.prior_mean.grad.abs().sum() > 0


def test_a_one_view_model_with_only_multi_view_terms_is_a_clear_error():
    _, train, _ = prepare(n_train=64, n_test=4)
    model = M3LTM(views=["en"], n_components=K, num_epochs=1, random_state=0,
                  loss_weights={"reconstruction": 0, "prior_kl": 0})
    with pytest.raises(ValueError, match="1-view model has no term with a weight above 0"), \
            pytest.warns(UserWarning, match="autoencoder"):
        model.fit(train, progress_bar=False)


@pytest.mark.parametrize("weights,language,image", [
    ({}, 0.0, 0.0), ({"prior_kl": 0.5}, 0.5, 0.5), ({"image_prior_kl": 2.0}, 0.0, 2.0),
    ({"prior_kl": 0.5, "image_prior_kl": 2.0}, 0.5, 2.0)])
def test_image_views_get_their_own_prior_kl_weight(weights, language, image):
    """loss_weights["image_prior_kl"] weighs the image views' KL to the prior, "prior_kl" the
    languages' (and every view's when given alone); the batch's loss is the weighted sum of
    the per-view KLs of the posteriors it used, with views missing in places."""
    from ctm_m3l.losses import prior_kl

    _, train, _ = prepare(n_train=64, n_test=8, image_share=0.5)
    model = M3LTM(views=VIEWS, n_components=K, random_state=0, loss_weights=weights)
    assert (model.weights["prior_kl"], model.weights["image_prior_kl"]) == (language, image)
    loop, data = start_fit(model, train)
    captured = {}
    original = model.model.theta_from_noise

    def spy(mu, logvar, noise):
        captured.update(mu=mu, logvar=logvar)
        return original(mu, logvar, noise)

    model.model.theta_from_noise = spy
    rows = np.arange(32)
    terms = loop.batch_terms(data, rows)
    present = torch.from_numpy(np.ascontiguousarray(data.mask[rows].T))
    assert not present.all()
    net = model.model
    kl = torch.where(present, prior_kl(captured["mu"], captured["logvar"], net.prior_mean, net.prior_variance), 0.0)
    torch.testing.assert_close(terms["prior_kl"], kl.sum())  # reported unweighted
    w = model.weights
    want = (terms["reconstruction"] + language * kl[:2].sum() + image * kl[2].sum() + w["pair_kl"] * terms["pair_kl"]
            + w["contrastive"] * terms["contrastive"])
    torch.testing.assert_close(terms["loss"], want)


@pytest.mark.parametrize("pair_kl_on", ["posterior", "theta"])
def test_pair_kl_term_compares_what_pair_kl_on_names(pair_kl_on):
    """The batch's pair term is the named divergence of that batch's posteriors or thetas
    (the same noise and dropout-free thetas the model used), with views missing in places."""
    from ctm_m3l.losses import pairwise_theta_kl, pairwise_view_kl

    _, train, _ = prepare(n_train=64, n_test=8, image_share=0.5)
    model = M3LTM(views=VIEWS, n_components=K, random_state=0, pair_kl_on=pair_kl_on)
    loop, data = start_fit(model, train)
    captured = {}
    original = model.model.theta_from_noise

    def spy(mu, logvar, noise):
        captured.update(mu=mu, logvar=logvar, theta=original(mu, logvar, noise))
        return captured["theta"]

    model.model.theta_from_noise = spy
    rows = np.arange(32)
    terms = loop.batch_terms(data, rows)
    present = torch.from_numpy(np.ascontiguousarray(data.mask[rows].T))
    assert not present.all()  # some tuples lack the image
    expected = (pairwise_theta_kl(captured["theta"], present) if pair_kl_on == "theta"
                else pairwise_view_kl(captured["mu"], captured["logvar"], present)).sum()
    torch.testing.assert_close(terms["pair_kl"], expected)
    assert terms["pair_kl"].item() > 0


def test_pair_kl_on_theta_trains_saves_and_loads(tmp_path):
    _, train, test = prepare(n_train=100, n_test=10)
    model = M3LTM(views=VIEWS, n_components=K, num_epochs=2, random_state=0, pair_kl_on="theta")
    model.fit(train, progress_bar=False)
    assert np.isfinite(model.history[-1]["loss"]) and model.history[-1]["pair_kl"] > 0
    model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["settings"]["pair_kl_on"] == "theta"
    assert M3LTM.load(tmp_path / "m").pair_kl_on == "theta"
    # A model saved before the option existed trained with the posterior KL.
    del config["settings"]["pair_kl_on"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    resign(tmp_path / "m")
    assert M3LTM.load(tmp_path / "m").pair_kl_on == "posterior"


def test_image_views_get_their_own_posterior_layout(tmp_path):
    """image_posterior_norm: the image views' networks have that layout, the languages'
    posterior_norm's; saved and loaded with it; a model saved before the setting existed had
    one layout for every view."""
    _, train, test = prepare(n_train=100, n_test=20)
    model = M3LTM(views=VIEWS, n_components=K, num_epochs=3, random_state=0, posterior_norm="mean",
                  image_posterior_norm="ctm", inference_input="contextual")
    model.fit(train, progress_bar=False)
    assert model.model.posterior_norms == ("mean", "mean", "ctm") and np.isfinite(model.history[-1]["loss"])
    # The image network's log sigma^2 is batch-normalised (mean ~0 over a batch), the texts' are not.
    with torch.no_grad():
        model.model.train()
        _, logvar = model.model.posteriors([torch.from_numpy(train.embeddings[v][:50]) for v in VIEWS])
        model.model.eval()
    assert abs(logvar[2].mean().item()) < 1e-4 and abs(logvar[0].mean().item()) > 1e-2
    theta = {v: model.get_thetas(test, view=v, seed=0) for v in VIEWS}
    model.save(tmp_path / "m")
    loaded = M3LTM.load(tmp_path / "m")
    assert loaded.image_posterior_norm == "ctm" and loaded.model.posterior_norms == ("mean", "mean", "ctm")
    for v in VIEWS:
        np.testing.assert_array_equal(loaded.get_thetas(test, view=v, seed=0), theta[v])
    old = M3LTM(views=VIEWS, n_components=K, num_epochs=1, random_state=0, posterior_norm="mean",
                image_posterior_norm=None, inference_input="contextual")
    old.fit(train, progress_bar=False)
    old.save(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config["settings"]["image_posterior_norm"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    resign(tmp_path / "old")
    reloaded = M3LTM.load(tmp_path / "old")
    assert reloaded.image_posterior_norm is None and reloaded.model.posterior_norms == ("mean",) * 3
    np.testing.assert_array_equal(reloaded.get_thetas(test, view="image", seed=0),
                                  old.get_thetas(test, view="image", seed=0))


def test_two_of_three_views():
    _, train, test = prepare(n_train=100, n_test=10)
    model = M3LTM(views=["de", "image"], n_components=K, num_epochs=2, random_state=0)
    model.fit(train, progress_bar=False)
    assert model.language_views == ["de"]
    assert model.get_topic_lists(k=3)  # one language: no language= needed
    with pytest.raises(ValueError, match="unknown view 'en'"):
        model.get_thetas(test, view="en")


# -- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    ({"views": ["en", "en"]}, "views has a repeated name"),
    ({"views": ["en"], "loss_weights": {"kl": 1}}, r"loss_weights has unknown key\(s\) \['kl'\]"),
    ({"views": ["en"], "loss_weights": {"contrastive": -1}}, r"loss_weights\['contrastive'\] must be a finite"),
    ({"views": ["en"], "loss_weights": {"reconstruction": 0, "prior_kl": 0, "pair_kl": 0, "contrastive": 0}},
     "all 0"),
    ({"views": ["en"], "device": "tpu"}, "device"),
    ({"views": ["en"], "posterior_norm": "batch"}, r"posterior_norm must be one of 'ctm', 'ctm-shifted', 'mean', 'none'"),
    ({"views": ["en"], "image_posterior_norm": "batch"}, r"image_posterior_norm must be"),
    ({"views": ["en"], "dropout": 1.0}, r"dropout must be a number in \[0, 1\), got 1.0"),
])
def test_constructor_errors_say_what_is_wrong(kwargs, match):
    with pytest.raises(ValueError, match=match):
        M3LTM(**kwargs)


def test_constructor_accepts_its_defaults_and_documented_forms():
    model = M3LTM(views=("en", "de"), hidden_sizes=50, loss_weights={"prior_kl": 1}, random_state=-3)
    assert model.hidden_sizes == (50,) and model.weights["prior_kl"] == 1.0 and model.views == ["en", "de"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA device"):
        M3LTM(views=["en"], device="cuda")


@pytest.mark.parametrize("pair_kl_on,inference_input", [("theta", "contextual"), ("posterior", "contextual"),
                                                        ("theta", "combined")])
@pytest.mark.parametrize("image_share", [1.0, 0.6])
def test_training_objective_keeps_every_tensor_on_the_model_device(pair_kl_on, inference_input, image_share):
    # CI has no GPU: PyTorch's meta device stands in for CUDA.  An op that mixes a meta tensor
    # with a CPU tensor of any dimension raises (as with CUDA), so a tensor the training step
    # creates on the CPU by mistake fails here; meta computes shapes only, no values.
    _, train, _ = prepare(n_train=64, n_test=8, image_share=image_share)
    model = M3LTM(views=VIEWS, n_components=K, random_state=0, device="meta", pair_kl_on=pair_kl_on,
                  inference_input=inference_input)
    loop, data = start_fit(model, train)
    assert all(p.device.type == "meta" for p in model.model.parameters())
    terms = loop.batch_terms(data, np.arange(32))
    assert all(t.device.type == "meta" and t.shape == () for t in terms.values())
    terms["loss"].backward()
    assert all(p.grad is None or p.grad.device.type == "meta" for p in model.model.parameters())
    assert model.model.input_weight[2].grad is not None  # the image view's network took part
    model.model.eval()
    with torch.no_grad():  # validation epochs: the running statistics
        assert loop.batch_terms(data, np.arange(32, 64))["loss"].device.type == "meta"


def test_views_missing_from_dataset():
    _, train, _ = prepare(n_train=50, n_test=4)
    with pytest.raises(ValueError, match=r"view\(s\) \['fr'\] are not in the dataset"):
        M3LTM(views=["en", "fr"], num_epochs=1).fit(train, progress_bar=False)
    with pytest.raises(ValueError, match="no text view"):
        M3LTM(views=["image"], num_epochs=1).fit(train, progress_bar=False)


def test_one_view_without_prior_kl_warns_that_it_is_an_autoencoder():
    _, train, _ = prepare(n_train=50, n_test=4)
    with pytest.warns(UserWarning, match="trains as an autoencoder"):
        M3LTM(views=["en"], num_epochs=1, random_state=0).fit(train, progress_bar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M3LTM(views=["en"], num_epochs=1, random_state=0, loss_weights={"prior_kl": 1}).fit(train, progress_bar=False)
        M3LTM(views=["en", "de"], num_epochs=1, random_state=0).fit(train, progress_bar=False)


def test_unfitted_model():
    with pytest.raises(RuntimeError, match="not fitted"):
        M3LTM(views=["en"]).get_topic_lists()


def test_load_rejects_non_models_and_tampering(trained, tmp_path):
    model = trained[3]
    with pytest.raises(ValueError, match="not a directory"):
        M3LTM.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="needs config.json and model.safetensors"):
        M3LTM.load(tmp_path / "empty")

    saved = model.save(tmp_path / "m")
    weights = saved / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-5] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="model.safetensors: does not match its checksum in manifest.json"):
        M3LTM.load(saved)

    saved = model.save(tmp_path / "m2")
    config = json.loads((saved / "config.json").read_text())
    config["settings"]["n_components"] = K + 1
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="config.json: does not match its checksum"):
        M3LTM.load(saved)
    resign(saved)  # checksums made to fit the edit: the sizes are still checked against the weights
    with pytest.raises(ValueError, match="tensors do not match the architecture"):
        M3LTM.load(saved)

    (saved / "config.json").write_text("{not json")
    resign(saved)
    with pytest.raises(ValueError, match="config.json: the model config is not valid JSON"):
        M3LTM.load(saved)
    (saved / "config.json").write_text(json.dumps({"format": "something-else"}))
    resign(saved)
    with pytest.raises(ValueError, match="not an M3LTM config"):
        M3LTM.load(saved)


def test_thetas_at_the_posterior_mean_without_sampling(trained):
    _, _, test, model = trained
    theta = model.get_thetas(test, view="de", n_samples=0)
    model.model.eval()
    with torch.no_grad():
        # The default combined input: the German embedding, then the German bag of words.
        x = np.hstack([test.embeddings["de"], test.bow["de"].toarray()]).astype(np.float32)
        mu, _ = model.model.posterior(1, torch.from_numpy(x))
    np.testing.assert_allclose(theta, torch.softmax(mu.double(), -1).numpy(), rtol=1e-6, atol=1e-7)
    assert np.array_equal(theta, model.get_thetas(test, view="de", n_samples=0, seed=5))  # no noise at all
    # Averaged samples are flatter than the posterior mean, for every view: here (50 epochs on
    # 800 tuples) every network's learned log sigma^2 is still near -2.
    for view in VIEWS:
        mean = model.get_thetas(test, view=view, n_samples=0)
        sampled = model.get_thetas(test, view=view, n_samples=20, seed=0)
        np.testing.assert_allclose(sampled.sum(1), 1.0, rtol=1e-6)
        assert mean.max(1).mean() > sampled.max(1).mean() + 0.005, view
    with pytest.raises(ValueError, match="n_samples must be an int >= 0"):
        model.get_thetas(test, view="de", n_samples=-1)


def test_combined_input_reads_each_language_s_words_too(tmp_path):
    """inference_input="combined": a language's network reads its bag of words after its
    embedding (CTM's CombinedTM); the image's reads its embedding only."""
    _, train, test = prepare(n_train=400, n_test=100)
    model = M3LTM(views=VIEWS, n_components=K, num_epochs=30, random_state=0, inference_input="combined")
    model.fit(train, progress_bar=False)
    net, sizes = model.model, {v: train.embeddings[v].shape[1] for v in VIEWS}
    assert net.input_weight[0].shape[1] == sizes["en"] + len(train.vocabularies["en"])
    assert net.input_weight[1].shape[1] == sizes["de"] + len(train.vocabularies["de"])
    assert net.input_weight[2].shape[1] == sizes["image"]
    theta = {v: model.get_thetas(test, view=v, seed=0) for v in VIEWS}
    chance = np.mean(1.0 / np.arange(1, len(test) + 1))
    assert mrr(theta["en"], theta["de"]) > 5 * chance and mrr(theta["en"], theta["image"]) > 5 * chance
    # The same embeddings with other tuples' German words: other German topics.
    swapped = test.subset(np.arange(len(test)))
    swapped.bow["de"] = test.bow["de"][np.roll(np.arange(len(test)), 1)]
    moved = np.abs(model.get_thetas(swapped, view="de", seed=0) - theta["de"]).sum(axis=1)
    assert np.median(moved) > 0.05
    np.testing.assert_array_equal(model.get_thetas(swapped, view="image", seed=0), theta["image"])
    # Saved and loaded with its layout.
    model.save(tmp_path / "m")
    loaded = M3LTM.load(tmp_path / "m")
    assert loaded.inference_input == "combined"
    np.testing.assert_array_equal(loaded.get_thetas(test, view="de", seed=0), theta["de"])


def test_a_model_saved_with_the_previous_image_layout_loads_and_gives_the_same_thetas():
    """tests/data/image-ctm-model: saved by the code before ``image_posterior_norm="ctm-shifted"``
    became the default (``tests/data/make_image_ctm_model.py``); its config records ``"ctm"``,
    so it loads with CTM's layout for the image and gives, per view, the thetas it gave then."""
    folder = Path(__file__).parents[1] / "data" / "image-ctm-model"
    model = M3LTM.load(folder / "model")
    assert model.image_posterior_norm == "ctm" and model.model.posterior_norms == ("mean", "mean", "ctm")
    prep = M3LDataPreparation.load(folder / "model")
    rows = [json.loads(line) for line in (folder / "held_out.jsonl").read_text().splitlines()]
    views = ["en", "de", "image"]
    held_out = prep.transform(rows, custom_embeddings={v: np.load(folder / f"held_out_{v}.npy") for v in views})
    for v in views:
        np.testing.assert_array_equal(model.get_thetas(held_out, view=v, seed=0), np.load(folder / f"thetas_{v}.npy"))
