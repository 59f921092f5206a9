"""The metric definitions on cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dyadgen.eval import dyadic, lipsync, turns
from dyadgen.eval.frechet import frechet_between, frechet_distance
from dyadgen.eval.stats import summarise


def test_frechet_distance_of_gaussians_with_known_moments():
    rng = np.random.default_rng(0)
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 1.0, 0.0])
    a = rng.normal(size=(3, 3))
    s1 = a @ a.T + np.eye(3)
    s2 = np.diag([1.0, 2.0, 0.5])
    # closed form for commuting covariances: |mu1-mu2|^2 + sum (sqrt(l1) - sqrt(l2))^2
    d = np.diag([2.0, 3.0, 1.0])
    closed_form = 1.25 + sum((np.sqrt([2, 3, 1]) - np.sqrt([1, 2, 0.5])) ** 2)
    assert frechet_distance(mu1, d, mu2, s2) == pytest.approx(closed_form)
    # samples drawn by scipy with those moments: the estimate converges to the exact distance
    x = stats.multivariate_normal(mu1, s1).rvs(200_000, random_state=1)
    y = stats.multivariate_normal(mu2, s2).rvs(200_000, random_state=2)
    exact = frechet_distance(mu1, s1, mu2, s2)
    assert frechet_between(x, y) == pytest.approx(exact, rel=0.02)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-6)


def test_lip_sync_offset_recovers_a_known_delay():
    rng = np.random.default_rng(0)
    envelope = np.convolve(rng.random(300), np.ones(5) / 5, mode="same")
    mouth = np.roll(envelope, 3)  # the mouth lags the voice by 3 frames
    speaks = np.ones(300, bool)
    corr, offset = lipsync.offset_correlation(mouth, envelope, speaks)
    assert offset == 3 and corr < 0.9
    assert lipsync.offset_correlation(np.full(300, 0.2), envelope, speaks) == (0.0, None)  # a still mouth


def test_false_talk_counts_open_mouths_while_the_partner_speaks():
    speaking = np.zeros((2, 100), bool)
    speaking[0, :50], speaking[1, 50:] = True, True  # person 0 speaks, then listens
    roles = turns.roles(speaking)
    truth = np.where(speaking[0], 0.4, 0.05)  # opens to 0.4 when speaking, closed at 0.05
    threshold = turns.open_threshold(truth, speaking[0])
    quiet = np.where(speaking[0], 0.4, 0.05)
    chatty = np.full(100, 0.4)
    assert turns.open_rate(quiet, roles["listening"][0], threshold) == 0.0
    assert turns.open_rate(chatty, roles["listening"][0], threshold) == 1.0


def test_dyadic_metrics_prefer_the_truth():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(200, 4))
    partner = truth + 0.5 * rng.normal(size=(200, 4))  # the partner moves with the person
    good = truth + 0.1 * rng.normal(size=(200, 4))
    still = np.zeros((200, 4)) + 1e-3 * rng.normal(size=(200, 4))
    g, s = dyadic.dyadic_scores(good, truth, partner), dyadic.dyadic_scores(still, truth, partner)
    assert g["fd"] < s["fd"] and g["p_fd"] < s["p_fd"] and g["rpcc"] < s["rpcc"]
    kmeans = dyadic.fit_clusters([truth])
    assert dyadic.shannon_index(good, kmeans) > dyadic.shannon_index(still, kmeans)
    assert dyadic.variance(still) < 1e-4 < dyadic.variance(good)


def test_an_interval_covers_the_mean_and_missing_values_are_not_zeros():
    figure = summarise([0.2, 0.4, None, float("nan"), 0.6], "d")
    assert figure.n == 3 and figure.value == pytest.approx(0.4) and figure.low <= 0.4 <= figure.high
    empty = summarise([None], "d")
    assert empty.value is None and empty.text() == "n/a"
