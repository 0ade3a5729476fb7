"""Baselines: MCSE alignment, ZeroshotTM through CTM's own class, raw-embedding retrieval."""
import numpy as np
import pytest
from contextualized_topic_models.models.ctm import ZeroShotTM

from ctm_m3l import M3LTM, ImageView, M3LDataPreparation, TextView
from ctm_m3l.baselines import Baseline, EmbeddingRetrieval, KDBaseline, MCSEAligner, ZeroShotBaseline
from ctm_m3l.data.synthetic import planted_tuples
from ctm_m3l.evaluation import mrr


def cosine_mrr(q, t):
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    s = q @ t.T
    return float(np.mean(1.0 / ((s > s.diagonal()[:, None]).sum(1) + 1)))


def latent_views(n, seed=0, dims=(24, 40, 32), latent=12, noise=0.05):
    """Unaligned views of one continuous latent per tuple: a different random map per view."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, latent))
    maps = np.random.default_rng(99)
    return [np.tanh(z @ maps.normal(size=(latent, d)) / np.sqrt(latent)) + noise * rng.normal(size=(n, d))
            for d in dims]


def as_dataset(embeddings, rows=None):
    n = len(embeddings[0])
    rows = rows or [{"en": "dog park", "de": "hund park", "image": "x.jpg"} for _ in range(n)]
    prep = M3LDataPreparation([TextView("en", stopwords=None), TextView("de", stopwords=None), ImageView("image")])
    return prep, prep.fit(rows, custom_embeddings=dict(zip(["en", "de", "image"], embeddings)))


def test_mcse_raises_cross_view_retrieval_from_chance_to_near_perfect():
    train_emb, test_emb = latent_views(3000, seed=0), latent_views(300, seed=1)
    _, train = as_dataset(train_emb)
    prep, test = as_dataset(test_emb)
    chance = np.mean(1.0 / np.arange(1, 301))
    before = cosine_mrr(test_emb[0][:, :24], test_emb[1][:, :24])  # same size, unrelated spaces
    assert before < 3 * chance
    aligner = MCSEAligner(["en", "de", "image"], dim=32, num_epochs=30, random_state=0).fit(train)
    z = {v: aligner.transform(test, v) for v in ["en", "de", "image"]}
    assert np.allclose(np.linalg.norm(z["en"], axis=1), 1)
    for a, b in [("en", "de"), ("en", "image"), ("de", "image")]:
        assert cosine_mrr(z[a], z[b]) > 0.9, (a, b)
    retrieval = EmbeddingRetrieval(["en", "de", "image"], aligner=aligner).fit(train)
    assert retrieval.distance == "cosine" and not retrieval.has_topics
    assert cosine_mrr(retrieval.represent(test, "en"), retrieval.represent(test, "image")) > 0.9


def test_mcse_missing_views_and_errors():
    emb = latent_views(200)
    _, data = as_dataset(emb)
    data.view_mask[:50, 2] = False
    aligner = MCSEAligner(["en", "image"], dim=8, num_epochs=2, random_state=0).fit(data)
    assert np.isnan(aligner.transform(data, "image")[:50]).all()
    with pytest.raises(ValueError, match="unknown view 'de'"):
        aligner.transform(data, "de")
    with pytest.raises(ValueError, match="views must be a list of at least 2 view names"):
        MCSEAligner(["en"])
    with pytest.raises(RuntimeError, match="not fitted"):
        MCSEAligner(["en", "de"]).transform(data, "en")


@pytest.fixture(scope="module")
def planted():
    rows, emb, _ = planted_tuples(700, n_topics=5, seed=0)
    # One shared map for every view: an "aligned encoder" (like CLIP for all views).
    shared = {v: emb["en"] for v in ("en", "de", "image")}
    prep = M3LDataPreparation([TextView("en", stopwords=None), TextView("de", stopwords=None), ImageView("image")])
    train = prep.fit(rows[:600], custom_embeddings={k: v[:600] for k, v in emb.items()})
    test = prep.transform(rows[600:], custom_embeddings={k: v[600:] for k, v in emb.items()})
    aligned_prep = M3LDataPreparation([TextView("en", stopwords=None), TextView("de", stopwords=None),
                                       ImageView("image")])
    aligned_train = aligned_prep.fit(rows[:600], custom_embeddings={k: v[:600] for k, v in shared.items()})
    aligned_test = aligned_prep.transform(rows[600:], custom_embeddings={k: v[600:] for k, v in shared.items()})
    return train, test, aligned_train, aligned_test


def test_zeroshot_runs_through_ctms_own_class(planted):
    _, _, train, test = planted
    model = ZeroShotBaseline("en", ["en", "de", "image"], n_components=5, num_epochs=15, random_state=0)
    model.fit(train)
    assert isinstance(model.ctm, ZeroShotTM) and isinstance(model, Baseline)
    theta = {v: model.get_thetas(test, view=v, seed=0) for v in ["en", "de", "image"]}
    assert theta["de"].shape == (100, 5) and np.allclose(theta["de"].sum(1), 1)
    assert mrr(theta["en"], theta["de"]) > 5 * np.mean(1.0 / np.arange(1, 101))
    assert all(w.startswith("en") for topic in model.get_topic_lists(3) for w in topic)
    # As the paper trains it: a German model of its own gives the German topics.
    assert model.language_views == ["en", "de"] and not model.aligned_topics
    assert all(w.startswith("de") for topic in model.get_topic_lists(3, language="de") for w in topic)
    np.testing.assert_array_equal(  # retrieval stays in the English model's space
        model.get_thetas(test, view="de", seed=0), theta["de"])
    with pytest.raises(ValueError, match=r"zeroshot has topics in \['en', 'de'\].*not in 'image'"):
        model.get_topic_lists(3, language="image")
    english_only = ZeroShotBaseline("en", ["en", "de"], n_components=5, num_epochs=15, random_state=0,
                                    each_language=False).fit(train)
    np.testing.assert_array_equal(english_only.get_thetas(test, view="de", seed=0), theta["de"])
    with pytest.raises(ValueError, match=r"zeroshot has topics in \['en'\]"):
        english_only.get_topic_lists(3, language="de")


def test_zeroshot_refuses_unaligned_encoders_and_uses_an_aligner(planted):
    train, test, _, _ = planted
    with pytest.raises(ValueError, match="unaligned encoders.*MCSEAligner"):
        ZeroShotBaseline("en", ["en", "de", "image"], n_components=5, num_epochs=1).fit(train)
    aligner = MCSEAligner(["en", "de", "image"], dim=16, num_epochs=20, random_state=0)
    model = ZeroShotBaseline("en", ["en", "de", "image"], aligner=aligner, n_components=5, num_epochs=15,
                             random_state=0).fit(train)
    assert model.name == "zeroshot+mcse"  # results say the views were aligned by MCSE heads
    theta_en, theta_img = model.get_thetas(test, view="en", seed=0), model.get_thetas(test, view="image", seed=0)
    assert mrr(theta_en, theta_img) > 3 * np.mean(1.0 / np.arange(1, 101))


def test_build_system_align_option(planted):
    from ctm_m3l.baselines.registry import build_system

    train, test, aligned_train, _ = planted
    views = [TextView("en"), TextView("de"), ImageView("image")]
    assert build_system("embeddings", views, aligned_train, 5, 1, 0, None).name == "embeddings"
    assert build_system("embeddings", views, aligned_train, 5, 1, 0, None, align="mcse").name == "embeddings+mcse"
    assert build_system("zeroshot", views, train, 5, 1, 0, None).name == "zeroshot+mcse"  # sizes differ
    unaligned = build_system("embeddings", views, train, 5, 1, 0, None, align="none")
    with pytest.raises(ValueError, match=r"different sizes \{'en': 16, 'de': 24, 'image': 32\}"):
        unaligned.fit(train)
    with pytest.raises(ValueError, match="model pltm has no such step"):
        build_system("pltm", views, train, 5, 1, 0, None, align="mcse")
    with pytest.raises(ValueError, match="align must be one of"):
        build_system("zeroshot", views, train, 5, 1, 0, None, align="yes")


def test_every_system_shares_the_interface(planted):
    train, test, _, _ = planted
    m3l = M3LTM(views=["en", "de", "image"], n_components=5, num_epochs=2, random_state=0).fit(train, progress_bar=False)
    for system in (m3l, ZeroShotBaseline("en", ["en", "de"], aligner=MCSEAligner(["en", "de"], num_epochs=1),
                                         n_components=5, num_epochs=1).fit(train)):
        assert system.distance == "jsd" and system.has_topics
        assert system.represent(test, "de").shape == (100, 5)


from ctm_m3l.evaluation import mean_jsd  # noqa: E402


@pytest.mark.parametrize("teacher", ["en", "joint"])
def test_kd_students_land_near_their_teacher(planted, teacher):
    from ctm_m3l.baselines import KDStudent

    train, test, _, _ = planted  # unaligned encoders: each student has its own network
    kd = KDBaseline(["en", "de", "image"], teacher=teacher, n_components=5, num_epochs=20, random_state=0).fit(train)
    assert all(isinstance(s, KDStudent) and isinstance(s, ZeroShotTM) for s in kd.students.values())
    assert set(kd.students) == ({"de", "image"} if teacher == "en" else {"en", "de", "image"})
    theta = {v: kd.get_thetas(test, view=v, n_samples=100, seed=0) for v in ["en", "de", "image"]}
    teacher_theta = theta["en"]
    if teacher == "joint":  # the joint teacher's own distributions, for full tuples
        x = np.concatenate([test.embeddings[v] for v in ["en", "de", "image"]], axis=1)
        mu, _ = kd._posterior(kd.teacher, x.astype(np.float32))
        teacher_theta = np.exp(mu) / np.exp(mu).sum(1, keepdims=True)
    shuffled = np.roll(np.arange(len(test)), 1)
    for view in ["de", "image"]:
        same = mean_jsd(theta[view], teacher_theta)
        other = mean_jsd(theta[view], teacher_theta[shuffled])
        assert same < 0.5 * other, (view, same, other)
    # A German student reconstructs German: its topics are in German words, aligned to the teacher's.
    assert all(w.startswith("de") for topic in kd.get_topic_lists(3, language="de") for w in topic)
    assert all(w.startswith("en") for topic in kd.get_topic_lists(3, language="en") for w in topic)


def test_kd_text_students_do_not_depend_on_an_image_view(planted):
    """``reproduce`` reads Table 1's ZeroshotTM-KD (en, de) from Table 2's run (en, de, image):
    with an English teacher, that run's English and German models must be the text-only run's."""
    train, test, _, _ = planted
    text = KDBaseline(["en", "de"], teacher="en", n_components=5, num_epochs=2, random_state=3).fit(train)
    full = KDBaseline(["en", "de", "image"], teacher="en", n_components=5, num_epochs=2, random_state=3).fit(train)
    assert set(full.students) == {"de", "image"}
    for view in ("en", "de"):
        np.testing.assert_array_equal(full.get_thetas(test, view=view, seed=0), text.get_thetas(test, view=view, seed=0))
        assert full.get_topic_lists(5, language=view) == text.get_topic_lists(5, language=view)


def test_kd_bad_input(planted):
    train = planted[0]
    with pytest.raises(ValueError, match="teacher must be 'joint' or one of the views"):
        KDBaseline(["en", "de"], teacher="fr")
    with pytest.raises(ValueError, match="needs a text view to reconstruct"):
        KDBaseline(["en", "image"], teacher="image", n_components=5, num_epochs=1).fit(train)
    with pytest.raises(ValueError, match=r"view\(s\) \['fr'\] are not in the dataset"):
        KDBaseline(["en", "fr"], teacher="en", n_components=5, num_epochs=1).fit(train)


def test_ctm_baselines_refuse_fewer_items_than_a_batch(planted):
    train = planted[2].subset(np.arange(40))
    with pytest.raises(ValueError, match="only 40 training items, fewer than batch_size=64"):
        ZeroShotBaseline("en", ["en", "de"], n_components=5, num_epochs=1).fit(train)
    with pytest.raises(ValueError, match="zeroshot-kd teacher 'en': only 40"):
        KDBaseline(["en", "de"], teacher="en", n_components=5, num_epochs=1).fit(train)


def test_batched_ctm_dataset_trains_ctm_to_the_same_weights():
    """The batched fetch hands CTM's loop the tensors CTMDataset gives row by row (sparse and
    dense bags of words), so a seeded ZeroShotTM ends with the same weights to the bit."""
    import scipy.sparse as sp
    import torch
    from contextualized_topic_models.datasets.dataset import CTMDataset

    from ctm_m3l.baselines._ctm import BatchedCTMDataset

    rng = np.random.default_rng(0)
    bow = sp.random(300, 40, density=0.1, format="csr", random_state=1) * 3
    contextual = rng.normal(size=(300, 16))
    vocabulary = {i: f"w{i}" for i in range(40)}
    for bag in (bow, bow.toarray()):
        reference = CTMDataset(contextual, bag, vocabulary)
        batched = BatchedCTMDataset(contextual, bag, vocabulary)
        rows = [5, 0, 299, 17]
        for got, want in zip(batched.__getitems__(rows), (reference[i] for i in rows)):
            for key in ("X_bow", "X_contextual"):
                assert got[key].dtype == want[key].dtype and torch.equal(got[key], want[key])
    weights = []
    for dataset in (CTMDataset(contextual, bow, vocabulary), BatchedCTMDataset(contextual, bow, vocabulary)):
        torch.manual_seed(0)
        model = ZeroShotTM(bow_size=40, contextual_size=16, n_components=5, num_epochs=2, batch_size=32,
                           num_data_loader_workers=0)
        model.fit(dataset, do_train_predictions=False)
        weights.append(model.model.state_dict())
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
