"""M3LTM(torch_compile=True): the compiled objective computes the eager one, and trains."""
import pickle
import warnings
from unittest import mock

import numpy as np
import pytest
import torch
from helpers import VIEWS, K, needs_cpp, prepare, start_fit

from ctm_m3l import M3LTM
from ctm_m3l.evaluation import mrr


def _terms_and_gradients(model, loop, data, batch):
    model.model.zero_grad(set_to_none=True)
    terms = loop.batch_terms(data, batch)
    terms["loss"].backward()
    grads = {name: p.grad.clone() for name, p in model.model.named_parameters() if p.grad is not None}
    return {key: value.detach() for key, value in terms.items()}, grads


@needs_cpp
@pytest.mark.parametrize("inference_input", ["contextual", "combined"])
def test_compiled_objective_equals_the_eager_one(inference_input):
    _, train, _ = prepare(n_train=64, n_test=8, image_share=0.6, seed=3)
    model = M3LTM(views=VIEWS, n_components=K, random_state=0, inference_input=inference_input)
    loop, data = start_fit(model, train, compile=True)  # what fit(torch_compile=True) runs
    model.model.train()
    batch = np.arange(32)
    assert not data.mask[batch].all()  # some tuples lack the image: the masked terms are compiled too
    torch.manual_seed(1)
    fast_terms, fast_grads = _terms_and_gradients(model, loop, data, batch)
    loop.compiled = None  # eager from here
    torch.manual_seed(1)  # the same noise
    terms, grads = _terms_and_gradients(model, loop, data, batch)
    for key in terms:
        torch.testing.assert_close(fast_terms[key], terms[key], rtol=1e-4, atol=1e-4, msg=key)
    assert set(fast_grads) == set(grads)
    # float32 sums in another order: compared at the scale of the largest gradient (~1e3). Some
    # gradients are 0 up to rounding (posterior_bias, removed by the batch norm after it).
    scale = max(g.abs().max().item() for g in grads.values())
    for name in grads:
        assert (fast_grads[name] - grads[name]).abs().max().item() <= 1e-5 * scale, name
    assert (fast_grads["topic_words"] - grads["topic_words"]).norm() <= 1e-5 * grads["topic_words"].norm()


@needs_cpp
def test_compiled_fit_learns_the_planted_topics():
    _, train, test = prepare(n_train=600, n_test=200, image_share=0.7, seed=2)
    model = M3LTM(views=VIEWS, n_components=K, num_epochs=25, random_state=0, torch_compile=True)
    # 600 tuples in batches of 32: two shapes, the full batches and the last (24).  Dynamo caches
    # graphs per function for the whole process and, past its recompile_limit (8 shapes: a few
    # fits of an ablation), runs the function eagerly for good; at a limit of 1 the last batch
    # would already run eagerly.  The model's compiled objective keeps compiling.
    torch._dynamo.reset()
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    with warnings.catch_warnings(record=True) as caught, \
            mock.patch.object(torch._dynamo.config, "recompile_limit", 1):
        warnings.simplefilter("always")
        model.fit(train, progress_bar=False)
        assert torch._dynamo.config.recompile_limit == 1  # the process's setting is left as it was
    assert not [w for w in caught if "torch.compile failed" in str(w.message)]  # it did run compiled
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs == 2  # both shapes compiled
    pickle.loads(pickle.dumps(model))  # nothing compiled stays on the model after fit: it pickles as before
    assert model.history[-1]["loss"] < model.history[0]["loss"]
    has = test.has_view("image")
    theta_en = model.get_thetas(test, view="en", seed=0)
    theta_de = model.get_thetas(test, view="de", seed=0)
    chance = np.mean(1.0 / np.arange(1, len(test) + 1))
    assert mrr(theta_en, theta_de) > 5 * chance
    with pytest.warns(UserWarning, match="have no 'image' view"):  # the test tuples without a photo
        theta_img = model.get_thetas(test, view="image", seed=0)[has]
    assert mrr(theta_en[has], theta_img) > 5 * np.mean(1.0 / np.arange(1, has.sum() + 1))


@needs_cpp
def test_a_compiled_fit_follows_the_eager_fit_with_the_same_seed():
    _, train, _ = prepare(n_train=300, n_test=8, image_share=0.6, seed=3)
    eager, compiled = (M3LTM(views=VIEWS, n_components=K, num_epochs=5, random_state=0,
                             torch_compile=flag).fit(train, progress_bar=False) for flag in (False, True))
    np.testing.assert_allclose([h["loss"] for h in compiled.history], [h["loss"] for h in eager.history],
                               rtol=1e-5)
    for language in eager.language_views:
        np.testing.assert_allclose(compiled.get_topic_word_matrix(language), eager.get_topic_word_matrix(language),
                                   atol=1e-5)


def test_a_machine_without_a_cpp_compiler_trains_eagerly_with_a_warning():
    _, train, _ = prepare(n_train=100, n_test=8, seed=3)
    model = M3LTM(views=VIEWS, n_components=K, num_epochs=2, random_state=0, torch_compile=True)
    # Inductor's CPU backend needs a C++ compiler; point it at one that does not exist (and
    # skip its on-disk cache of graphs compiled by earlier tests).
    with mock.patch.object(torch._inductor.config, "fx_graph_cache", False), \
            mock.patch.object(torch._inductor.config.cpp, "cxx", ("/nonexistent/g++",)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(train, progress_bar=False)
    failures = [str(w.message) for w in caught if "torch.compile failed" in str(w.message)]
    assert len(failures) == 1 and "compiler" in failures[0]
    assert len(model.history) == 2 and all(np.isfinite(r["loss"]) for r in model.history)
