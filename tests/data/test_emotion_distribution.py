"""The emotion distribution against Trampe et al. (2015) and the deviation score dataset-stats prints."""

from __future__ import annotations

import json

import pytest

from dyadgen.data.emotions import TRAMPE_2015, deviation_score, reference_shares

# per-emotion counts of SocioEmoDialog's sample script (data/scripts/scripts_sample.json of KwaiVGI/SocioEmoDialog:
# 127 utterances, 29 of them "Other")
SAMPLE = {"Joy": 18, "Hope": 15, "Alertness": 24, "Contempt": 9, "Love": 8, "Gratitude": 7, "Other": 29, "Pride": 3,
          "Satisfaction": 7, "Embarrassment": 3, "Anger": 4}


def test_the_reference_is_trampe_et_al_and_the_sample_script_scores_4_75():
    assert len(TRAMPE_2015) == 18 and sum(w + m for w, m in TRAMPE_2015.values()) == pytest.approx(549.09)
    assert sum(reference_shares().values()) == pytest.approx(100)
    score, shares, reference = deviation_score(SAMPLE)
    assert score == pytest.approx(4.75, abs=0.005)  # DATASETS.md: 4.75 by the mean absolute difference
    assert shares["Alertness"] == pytest.approx(100 * 24 / 98)  # "Other" is left out of the shares
    assert "Other" not in shares


def test_a_distribution_equal_to_the_reference_scores_zero_and_no_labels_score_nothing():
    reference = reference_shares()
    assert deviation_score({e: round(100 * s) for e, s in reference.items()})[0] == pytest.approx(0, abs=0.01)
    assert deviation_score({"Other": 5})[0] is None


def test_dataset_stats_prints_the_score_and_plots_the_distribution(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from dyadgen.cli import main

    utterances = [{"utterance_id": f"990101_000_{i:03d}", "speaker_id": i % 2, "emotion_label": e, "text": "x"}
                  for i, e in enumerate(e for e, n in SAMPLE.items() for _ in range(n))]
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"990101_000": {"topic_label": "Sports", "num_utterances": len(utterances),
                                                 "utterances": utterances}}))
    plot = tmp_path / "emotions.png"
    assert main(["dataset-stats", str(tmp_path), "--script-json", str(script), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "deviation score of the script utterances: 4.75" in out
    assert "deviation score of the matched turns: n/a" in out  # no video, no turn
    assert plot.stat().st_size > 0
