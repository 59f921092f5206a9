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
    g, s = dyadic.clip_scores(good, truth, partner), dyadic.clip_scores(still, truth, partner)
    assert g["fd"] < s["fd"] and g["p_fd"] < s["p_fd"] and g["rpcc"] < s["rpcc"] and g["mse"] < s["mse"]
    kmeans = dyadic.fit_clusters([truth], 20)
    assert dyadic.shannon_index(dyadic.cluster_counts(good, kmeans)) > \
        dyadic.shannon_index(dyadic.cluster_counts(still, kmeans))
    assert dyadic.variance(still) < 1e-4 < dyadic.variance(good)


def _frechet_reference(a, b):
    """DualTalk's calculate_frechet_distance, written out: mean, np.cov (ddof 1), scipy's sqrtm."""
    from scipy import linalg

    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_group_metrics_follow_the_dualtalk_and_dim_formulas_on_fixed_arrays():
    rng = np.random.default_rng(3)
    gen, gt, partner = rng.normal(size=(120, 3)), rng.normal(size=(120, 3)) * 1.5, rng.normal(size=(120, 3))
    scores = dyadic.clip_scores(gen, gt, partner)
    assert scores["fd"] == pytest.approx(_frechet_reference(gen, gt), rel=1e-9)
    assert scores["p_fd"] == pytest.approx(_frechet_reference(np.concatenate([partner, gen], 1),
                                                              np.concatenate([partner, gt], 1)), rel=1e-9)
    assert scores["mse"] == pytest.approx(((gen - gt) ** 2).mean())
    pcc = [np.corrcoef(x.reshape(-1), partner.reshape(-1))[0, 1] for x in (gt, gen)]
    assert scores["rpcc"] == pytest.approx(abs(pcc[0] - pcc[1]))
    assert dyadic.variance(gen) == pytest.approx(np.mean(np.var(gen, axis=0)))
    # SID as DIM: k-means (random_state 0) on ALL ground truth pooled, one histogram of ALL generated frames
    from sklearn.cluster import KMeans

    clips_gt, clips_gen = [gt[:60], gt[60:]], [gen[:60], gen[60:]]
    kmeans = dyadic.fit_clusters(clips_gt, 20)
    labels = KMeans(20, random_state=0, n_init="auto").fit(np.concatenate(clips_gt)).predict(np.concatenate(clips_gen))
    p = np.bincount(labels, minlength=20) / len(labels)
    pooled = dyadic.shannon_index(sum(dyadic.cluster_counts(c, kmeans) for c in clips_gen))
    assert pooled == pytest.approx(float(-(p * np.log2(p + 1e-6)).sum()))
    assert dyadic.SID_CLUSTERS == {"exp": 40, "jaw": 10, "pose": 20}


def test_diversity_draws_afresh_in_every_clip():
    x = np.random.default_rng(4).normal(size=(250, 5))
    rng = np.random.default_rng(0)
    draws = [dyadic.diversity(x, rng) for _ in range(3)]  # the same clip three times: three different draws
    assert len(set(draws)) == 3
    rng = np.random.default_rng(0)
    a = rng.choice(250, 100, replace=False)
    b = rng.choice(250, 100, replace=False)
    assert dyadic.diversity(x, np.random.default_rng(0)) == pytest.approx(np.linalg.norm(x[a] - x[b], axis=1).mean())
    assert dyadic.diversity(x[:100], rng) is None  # DualTalk needs more frames than it draws


def test_expression_features_ignore_where_the_face_is_and_its_roll():
    rng = np.random.default_rng(5)
    lm = rng.normal(size=(1, 68, 2)) * 20 + 100
    angle = np.radians(12)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = (lm - 100) @ turn.T * 1.7 + np.array([40.0, -25.0]) + 100  # turned in-plane, scaled, shifted
    assert np.allclose(dyadic.normalised_shapes(lm), dyadic.normalised_shapes(moved), atol=1e-9)


def test_ssim_matches_scikit_image_and_leaves_the_border_out():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    from dyadgen.eval import quality

    rng = np.random.default_rng(6)
    a = rng.integers(0, 256, (2, 96, 128, 3)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    _, ours = quality.psnr_ssim(a, b)
    theirs = [skimage_metrics.structural_similarity(x / 255, y / 255, channel_axis=2, gaussian_weights=True,
                                                    sigma=1.5, use_sample_covariance=False, data_range=1.0)
              for x, y in zip(a, b, strict=True)]
    assert np.abs(ours - theirs).max() < 1e-6


def test_exact_frechet_from_samples_equals_the_sqrtm_formula():
    from dyadgen.eval.frechet import frechet_of_samples

    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(300, 20)), rng.normal(size=(250, 20)) * 1.3 + 0.2
    assert frechet_of_samples(x, y) == pytest.approx(_frechet_reference(x, y), rel=1e-9)


def test_intervals_resample_dialogues_not_windows():
    # two dialogues of 10 windows each; within a dialogue the windows are nearly equal
    values = [1.0 + 0.01 * i for i in range(10)] + [2.0 + 0.01 * i for i in range(10)]
    dialogues = ["a"] * 10 + ["b"] * 10
    by_dialogue = summarise(values, "d", dialogues)
    by_window = summarise(values, "d")
    assert by_dialogue.dialogues == 2 and by_window.dialogues == 20
    assert (by_dialogue.high - by_dialogue.low) > 2 * (by_window.high - by_window.low)  # honest about 2 units
    assert by_dialogue.low <= by_dialogue.value <= by_dialogue.high


def test_lse_scores_the_whole_clip_as_syncnet_python():
    torch = pytest.importorskip("torch")
    from dyadgen.eval.networks.syncnet import SyncNet, lse

    torch.manual_seed(0)
    net = SyncNet().eval()
    rng = np.random.default_rng(8)
    frames = rng.integers(0, 256, (30, 64, 64, 3)).astype(np.uint8)
    landmarks = np.tile(np.array([[16.0, 16.0], [48.0, 48.0]])[None, [0] * 34 + [1] * 34], (30, 1, 1))
    audio = rng.normal(0, 0.1, 30 * 640).astype(np.float32)
    speaks = np.zeros(30, bool)
    speaks[3:29] = True  # one run of 26 frames (runs need 25)
    whole = lipsync.lse_clip(net, frames, landmarks, audio)
    assert whole == pytest.approx(lse(lipsync.face_crops(frames, landmarks), audio, net)[:2])  # one curve, one clip
    runs = lipsync.lse_runs(net, frames, landmarks, audio, speaks)
    assert runs == pytest.approx(lse(lipsync.face_crops(frames[3:29], landmarks[3:29]), audio[3 * 640:29 * 640],
                                     net)[:2])


def test_an_interval_covers_the_mean_and_missing_values_are_not_zeros():
    figure = summarise([0.2, 0.4, None, float("nan"), 0.6], "d")
    assert figure.n == 3 and figure.value == pytest.approx(0.4) and figure.low <= 0.4 <= figure.high
    empty = summarise([None], "d")
    assert empty.value is None and empty.text() == "n/a"


def test_a_pooled_entropy_interval_covers_its_value():
    # SID-like: the entropy of one histogram over every item pooled; resamples that repeat dialogues and
    # leave others out have fewer distinct items, so their entropies sit below the pooled value
    from dyadgen.eval.stats import pooled

    rng = np.random.default_rng(3)
    items = list(rng.integers(0, 40, 120))  # cluster ids of 120 frames
    dialogues = [str(i // 20) for i in range(120)]  # 6 dialogues

    def entropy(xs):
        p = np.bincount(np.asarray(xs), minlength=40) / len(xs)
        return float(-(p[p > 0] * np.log2(p[p > 0])).sum())

    figure = pooled(items, dialogues, entropy, "d")
    assert figure.dialogues == 6 and figure.low < figure.value < figure.high
    more = pooled(list(rng.integers(0, 40, 480)), [str(i // 20) for i in range(480)], entropy, "d")
    assert more.dialogues == 24 and (more.high - more.low) < (figure.high - figure.low)  # more dialogues: surer


def test_a_collapsed_eye_is_missing_not_wide_open():
    from dyadgen.eval.face import LEFT_EYE, RIGHT_EYE, eye_openness

    lm = np.zeros((2, 68, 2))
    for eye, x0 in ((LEFT_EYE, 30.0), (RIGHT_EYE, 60.0)):  # corners 10 px apart, lids 3 px apart
        lm[:, eye] = [(x0, 50), (x0 + 3, 48.5), (x0 + 7, 48.5), (x0 + 10, 50), (x0 + 7, 51.5), (x0 + 3, 51.5)]
    lm[1, RIGHT_EYE] = lm[1, RIGHT_EYE][:, None].mean(0)  # a fit that put the whole eye on one point
    lm[1, RIGHT_EYE[1]] += (0, -0.5)
    open_eye, collapsed = eye_openness(lm)
    assert open_eye == pytest.approx(0.3) and np.isnan(collapsed)


def test_a_frame_without_a_face_is_a_missing_frame_not_a_huge_expression():
    """A frame the tracker reports without a face (NaN landmarks; a collapsed fit is one, see
    test_eval_face) must not dominate a window's FD."""
    rng = np.random.default_rng(3)
    lm = rng.normal(size=(1, 68, 2)) * 15 + 60
    truth = lm + rng.normal(size=(40, 68, 2)) * 0.5  # [T,68,2]
    generated = lm + rng.normal(size=(40, 68, 2)) * 0.5
    basis = dyadic.fit_basis([truth], components=4)
    pose = np.zeros((40, 3))
    real = dyadic.groups(truth, pose, basis)["exp"]
    clean = dyadic.clip_scores(dyadic.groups(generated, pose, basis)["exp"], real, real)["fd"]
    generated[7] = np.nan
    feats = dyadic.groups(generated, pose, basis)
    assert np.isnan(feats["exp"][7]).all() and np.isnan(feats["jaw"][7]).all() and np.isnan(feats["pose"][7]).all()
    assert dyadic.clip_scores(feats["exp"], real, real)["fd"] == pytest.approx(clean, rel=0.3)
