"""Every metric against values computed by hand."""
import math

import numpy as np
import pytest

from ctm_m3l import evaluation as ev


def test_jsd_by_hand():
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    q = np.array([[0.0, 1.0], [0.5, 0.5]])
    d = ev.jsd_matrix(p, q)
    assert d[0, 0] == pytest.approx(math.log(2))  # disjoint supports: the maximum, ln 2
    assert d[1, 1] == pytest.approx(0.0, abs=1e-12)
    # [1, 0] vs [0.5, 0.5]: m = [0.75, 0.25]
    expected = 0.5 * math.log(1 / 0.75) + 0.5 * (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25))
    assert d[0, 1] == pytest.approx(expected)
    assert ev.mean_jsd(p, q) == pytest.approx((math.log(2) + 0.0) / 2)


def test_mrr_by_hand():
    # Query i's relevant target is target i; distances are arranged so ranks are 1, 2, 3.
    query = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    target = np.array([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8], [0.6, 0.4, 0.0]])
    # query 0 -> target 0 is the closest: rank 1
    # query 1 ([0,1,0]): JSD to t1 ([0,.2,.8]) vs t2 ([.6,.4,0]): t2 is closer -> rank 2
    # query 2 ([0,0,1]): t1 is closest... relevant t2 is farthest -> rank 3
    d = ev.jsd_matrix(query, target)
    assert d[1, 2] < d[1, 1] < d[1, 0] and d[2, 2] > max(d[2, 0], d[2, 1])
    assert ev.mrr(query, target) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert ev.mrr(query, target, cutoff=2) == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert ev.recall_at_k(query, target, k=1) == pytest.approx(1 / 3)
    assert ev.recall_at_k(query, target, k=2) == pytest.approx(2 / 3)


def test_uap_with_several_relevant_targets():
    # One query, five targets at increasing cosine distance; relevant ones at ranks 1, 3, 4.
    angles = np.array([0.0, 0.3, 0.6, 0.9, 1.2])
    target = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    query = np.array([[1.0, 0.0]])
    relevance = np.array([[True, False, True, True, False]])
    expected = np.mean([1 / 1, 2 / 3, 3 / 4])
    assert ev.uap(query, target, relevance, distance="cosine") == pytest.approx(expected)
    assert ev.mrr(query, target, relevance, distance="cosine") == 1.0


def test_relevance_by_id_and_nan_rows():
    rel = ev.relevance_by_id(["a", "b"], ["a", "a", "b", "c"])
    assert rel.tolist() == [[True, True, False, False], [False, False, True, False]]
    query = np.array([[1.0, 0.0], [np.nan, np.nan], [0.0, 1.0]])
    target = np.array([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]])
    assert ev.mrr(query, target) == 1.0  # the NaN query is left out


def test_ties_count_against_the_query():
    query = np.array([[0.5, 0.5], [0.5, 0.5]])
    target = np.array([[0.5, 0.5], [0.5, 0.5]])
    assert ev.mrr(query, target) == pytest.approx(0.5)


def test_topic_diversity_and_inverted_rbo():
    topics = [["a", "b", "c"], ["a", "d", "e"]]
    assert ev.topic_diversity(topics, topk=3) == pytest.approx(5 / 6)
    assert ev.inverted_rbo([["a", "b"], ["c", "d"]], topk=2) == pytest.approx(1.0)
    assert ev.inverted_rbo([["a", "b"], ["a", "b"]], topk=2) == pytest.approx(0.0, abs=1e-9)


def test_npmi_matches_hand_computation():
    texts = [["a", "b"], ["a", "b"], ["a", "c"], ["c", "d"]]
    # gensim's c_npmi uses boolean document co-occurrence with epsilon 1e-12:
    # P(a)=3/4, P(b)=2/4, P(a,b)=2/4 -> NPMI = log(P(ab)/(P(a)P(b))) / -log(P(ab))
    p_ab, p_a, p_b = 0.5, 0.75, 0.5
    expected = math.log((p_ab + 1e-12) / (p_a * p_b)) / -math.log(p_ab + 1e-12)
    assert ev.npmi([["a", "b"]], texts, topk=2) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="never occur in the reference texts"):
        ev.npmi([["a", "zzz"]], texts, topk=2)


def test_npmi_per_topic_by_hand_and_its_mean_is_npmi():
    texts = [["a", "b"], ["a", "b"], ["c", "d"], ["c", "d"]]
    # a and b always meet: P(a) = P(b) = P(a,b) = 1/2 -> NPMI 1; a and c never do:
    # log(eps / (1/2 * 1/2)) / -log(eps) with gensim's eps = 1e-12.
    never = math.log(1e-12 / 0.25) / -math.log(1e-12)
    per_topic = ev.npmi_per_topic([["a", "b"], ["a", "c"]], texts, topk=2)
    assert per_topic == pytest.approx([1.0, never], rel=1e-6)
    assert ev.npmi([["a", "b"], ["a", "c"]], texts, topk=2) == pytest.approx(per_topic.mean())
    with pytest.raises(ValueError, match="never occur in the reference texts"):
        ev.npmi_per_topic([["a", "zzz"]], texts, topk=2)


def test_cnpmi_by_hand():
    docs_en = [["dog"], ["dog"], ["cat"], ["cat"]]
    docs_de = [["hund"], ["hund"], ["katze"], ["hund"]]
    # P(dog, hund) = 2/4, P(dog) = 2/4, P(hund) = 3/4
    expected_dog_hund = math.log(0.5 / (0.5 * 0.75)) / -math.log(0.5)
    assert ev.cnpmi([["dog"]], [["hund"]], docs_en, docs_de, topk=1) == pytest.approx(expected_dog_hund)
    assert ev.cnpmi([["dog"]], [["katze"]], docs_en, docs_de, topk=1) == -1.0


def test_alignment_and_uniformity_by_hand():
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([[1.0, 0.0], [0.0, 2.0]])  # same directions: perfectly aligned
    assert ev.alignment(x, y) == pytest.approx(0.0)
    assert ev.alignment(x, x[::-1]) == pytest.approx(2.0)  # orthogonal unit vectors: ||.||^2 = 2
    # Two orthogonal unit vectors: one pair, squared distance 2 -> log exp(-2 * 2) = -4
    assert ev.uniformity(x) == pytest.approx(-4.0)


def test_bad_input():
    with pytest.raises(ValueError, match="distance"):
        ev.mrr(np.eye(2), np.eye(2), distance="l1")
    with pytest.raises(ValueError, match="relevance must have shape"):
        ev.mrr(np.eye(2), np.eye(3) * 1.0, relevance=np.ones((2, 2), bool))
