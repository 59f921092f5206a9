"""The emotion probe: WAR and UAR as the protocol defines them, a layer-weighted probe on a local transformers
encoder, and the whole command on a corpus whose classes the features can tell apart."""

from __future__ import annotations

import numpy as np
import pytest

from dyadgen.eval.probe import LinearProbe, confusion, hf_features, war_uar


def test_war_and_uar_by_hand_and_as_scikit_learn_computes_them():
    truth = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 0, 2, 2, 0, 1])
    war, uar, recall = war_uar(truth, predicted, 3)
    assert war == pytest.approx(6 / 10)  # six right of ten
    assert recall.tolist() == pytest.approx([3 / 4, 1 / 2, 2 / 4])
    assert uar == pytest.approx((3 / 4 + 1 / 2 + 2 / 4) / 3)  # the mean of the recalls: 0.5833
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    w, u, _ = war_uar(t, p, 5)
    assert w == pytest.approx(metrics.accuracy_score(t, p))
    assert u == pytest.approx(metrics.balanced_accuracy_score(t, p))
    assert confusion(truth, predicted, 3).tolist() == [[3, 1, 0], [1, 1, 0], [1, 1, 2]]
    _, uar_missing, recall_missing = war_uar(np.array([0, 0]), np.array([0, 1]), 3)
    assert np.isnan(recall_missing[2]) and uar_missing == pytest.approx(0.5)  # an absent class is not a zero


def test_a_local_wav2vec2_gives_every_layer_and_the_probe_weighs_them(tmp_path):
    transformers = pytest.importorskip("transformers")
    import torch

    config = transformers.Wav2Vec2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 4),
                                         conv_kernel=(10, 8), num_conv_pos_embeddings=4,
                                         num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    transformers.Wav2Vec2Model(config).save_pretrained(tmp_path / "w2v")
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(tmp_path / "w2v")
    extract = hf_features(str(tmp_path / "w2v"))
    wav = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    features = extract(wav)
    assert features.shape == (3, 16)  # the CNN's projection and two transformer layers, each mean-pooled
    assert not np.allclose(features[0], features[2])
    probe = LinearProbe(3, 16, 4)
    with torch.no_grad():
        probe.layer_logits.copy_(torch.tensor([0.0, 0.0, 20.0]))  # all weight on the last layer
        logits = probe(torch.from_numpy(features[None]))
        assert torch.allclose(logits, probe.linear(torch.from_numpy(features[None, 2])), atol=1e-5)
    with pytest.raises(Exception, match="not a transformers model folder"):
        hf_features(str(tmp_path))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("make_emotion_corpus",
                                                  Path(__file__).parents[2] / "scripts" / "make_emotion_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_corpus(tmp_path_factory.mktemp("iemocap"), sessions=3, per_class=6)


def test_the_command_probes_leave_one_session_out_and_reuses_its_features(corpus, tmp_path, capsys):
    import json

    from dyadgen.cli import main

    out = tmp_path / "probe"
    args = ["probe-emotion", "--dataset", "iemocap", "--root", str(corpus), "--features", "mel", "--out", str(out)]
    assert main(args) == 0
    body = json.loads((out / "probe.json").read_text())
    assert body["protocol"] == "leave-one-session-out" and [f["name"] for f in body["folds"]] == [
        "Session1", "Session2", "Session3"]
    assert body["utterances"] == 3 * 27 and body["classes"] == ["neutral", "angry", "sad", "happy"]
    assert body["war"] > 0.8 and body["uar"] > 0.8  # prosody tells these classes apart
    assert body["war"] == pytest.approx(np.mean([f["war"] for f in body["folds"]]))
    assert (out / "confusion.png").stat().st_size > 0
    assert "WAR" in capsys.readouterr().out
    cached = sorted((out / "features").glob("*.npz"))
    stamp = cached[0].stat().st_mtime_ns
    assert main(args) == 0  # a rerun reads its features back
    assert cached[0].stat().st_mtime_ns == stamp and json.loads((out / "probe.json").read_text())["war"] == body["war"]


def test_the_checkpoints_tokenizer_and_backbone_give_features(corpus, tmp_path):
    from dyadgen.data.emotion_corpora import load_corpus
    from dyadgen.eval.probe import cached_features

    small = load_corpus("iemocap", corpus)
    small.utterances = small.utterances[:4]
    import importlib.util

    specs = ["whispervq", "backbone"] + (["egemaps"] if importlib.util.find_spec("opensmile") else [])
    for spec in specs:
        kept, features = cached_features(small, spec, tmp_path / spec, progress=False)
        assert len(kept) == 4 and features.shape[:2] == (4, 1) and np.isfinite(features).all()
        if spec == "egemaps":
            assert features.shape[2] == 88  # eGeMAPSv02's functionals
        assert not np.allclose(features[0], features[1])  # another utterance, other features
