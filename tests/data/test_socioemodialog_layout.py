"""SocioEmoDialog exactly as its own tools write it (data_tools/ of KwaiVGI/SocioEmoDialog): the raw
video beside its folder, per-channel numbering, clip N = the N-th line of the left log, 48 kHz
channels, clips cut by stream copy (keyframe pre-roll), two dialogues in one video, a video whose
name contains "left" (their ASR script then writes the right side's texts over the left json), and
the Chinese script matched in order. Every window's speaking spans and emotions equal the truth."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dyadgen.cache.windows import iter_windows
from dyadgen.cli import main
from dyadgen.data import index_dataset
from dyadgen.data.layout import Segment, asr_flag, format_log, hhmmss, parse_log, parse_time
from dyadgen.data.script_match import match_video
from dyadgen.data.synthetic import write_video
from dyadgen.encoders.fitted import FittedTokenizer
from dyadgen.io.audio import load_audio, read_audio
from dyadgen.media import read_span
from dyadgen.media.clips import align_offset, grid_frames

TWO = "990102_3f2a9c_synth"  # two dialogues in sequence
LEFT = "990102_7b41d0_left"  # a name containing "left"
SCRIPT = "SocioEmoDialog_scrpits_cn.json"  # (sic) the name their matcher loads
SMALL = ["data.height=64", "data.width=48", "data.window_steps=4", "data.window_stride_steps=4", "vae.name_or_path="]


def their_asr_bug(folder: Path) -> str:
    """What their whisper_asr.py does for a video whose name contains "left": the right pass reads the
    LEFT log and transcribes wav_right_segments/K on its lines, writing over the left json; with fewer
    right segments than left lines it crashes first. Either way no right json. Returns the case."""
    name = folder.name
    left_json, right_json = (folder / f"{name}_{s}_speaker_diarization_asr.json" for s in ("left", "right"))
    left, right = json.loads(left_json.read_text()), json.loads(right_json.read_text())
    right_json.unlink()
    if len(right) < len(left):
        return "crashed"
    left_json.write_text(json.dumps([{**e, "asr": right[k]["asr"], "asr_flag": right[k]["asr_flag"]}
                                     for k, e in enumerate(left)], ensure_ascii=False))
    return "overwritten"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    scripts = {**write_video(root, TWO, ["990102_000", "990102_001"], seed=11, use_espeak=False),
               **write_video(root, LEFT, ["990102_002"], seed=12, use_espeak=False)}
    (root / SCRIPT).write_text(json.dumps(scripts, ensure_ascii=False))  # no video-to-dialogue map: by date
    case = their_asr_bug(root / LEFT)
    truth = {name: dict(np.load(root / name / "ground_truth.npz")) for name in (TWO, LEFT)}
    for name in (TWO, LEFT):
        (root / name / "ground_truth.npz").unlink()
        (root / name / "script_entry.json").unlink()
    tok = tmp_path_factory.mktemp("tok")
    rng = np.random.default_rng(0)
    FittedTokenizer.fit([rng.standard_normal(32000).astype(np.float32)], num_codes=16, n_mels=8).save_pretrained(tok)
    return root, truth, case, [*SMALL, f"audio_tokenizer.name_or_path={tok}", f"data.script_json={root / SCRIPT}"]


def test_the_files_are_where_and_how_their_tools_write_them(tree):
    root, _, _, _ = tree
    assert (root / f"{TWO}.mp4").is_file() and not (root / TWO / f"{TWO}.mp4").exists()  # beside, not inside
    folder = root / TWO
    left, right = (parse_log(folder / f"{TWO}_{side}_speaker_diarization.log") for side in ("left", "right"))
    text = (folder / f"{TWO}_left_speaker_diarization.log").read_text()
    assert text.startswith("Speaker Energies:\n") and "\nSegment Information:\n" in text
    assert all((s.saved_as is not None) == (s.speaker == 0) for s in left + right)  # "[Saved as]" on speaker 0 only
    speakers = "".join(str(s.speaker) for s in left)
    assert "010" in speakers  # a speaker-1 line between two speaker-0 lines
    assert len(list((folder / "video_segments").glob("*.mp4"))) == len(left)  # a clip per left-log line
    for side, log in (("left", left), ("right", right)):
        own = [s for s in log if s.speaker == 0]
        assert [s.saved_as for s in own] == list(range(len(own)))  # numbered per channel
        assert len(list((folder / f"wav_{side}_segments").glob("*.wav"))) == len(own)
        asr = json.loads((folder / f"{TWO}_{side}_speaker_diarization_asr.json").read_text())
        assert [(e["idx"], parse_time(e["start"]), parse_time(e["end"])) for e in asr] == [
            (s.saved_as, pytest.approx(s.start, abs=1e-6), pytest.approx(s.end, abs=1e-6)) for s in own]
    _, rate = read_audio(folder / f"{TWO}_left.wav")
    assert rate == 48000  # the source rate, not resampled


def test_timeline_clips_and_wav_segments_are_the_moments_the_logs_say(tree):
    root, truth, _, overrides = tree
    index = index_dataset(root, script_json=str(root / SCRIPT))
    for video in index.videos:
        speaking = truth[video.name]["speaking"]  # [P,T]
        for turn in video.turns:
            p = ("left", "right").index(turn.side)
            f0, f1 = round(turn.start * 25), round(turn.end * 25)
            assert speaking[p, f0:f1].all() and not speaking[p, max(f0 - 1, 0)] or f0 == 0
        left_log = parse_log(video.folder / f"{video.name}_left_speaker_diarization.log")
        for clip in video.clips:  # clip N is the N-th line of the LEFT log, either speaker
            line = left_log[clip.number]
            assert (clip.start, clip.end, clip.side) == (line.start, line.end, "left" if line.speaker == 0 else "right")
        for turn in video.turns:  # wav segment K of a side is that side's K-th own turn
            seg = load_audio(video.segment_wav(turn))
            whole = load_audio(video.folder / f"{video.name}_{turn.side}.wav")
            # within 1 ms (16 samples): segments are cut at the exact time, the log truncates it
            assert 0 <= align_offset(whole, seg, len(whole)) - round(turn.start * 16000) <= 16


def test_dialogues_and_emotions_match_the_script_in_order(tree):
    root, _, case, _ = tree
    index = index_dataset(root, script_json=str(root / SCRIPT))
    scripts = json.loads((root / SCRIPT).read_text())
    two = next(v for v in index.videos if v.name == TWO)
    assert two.dialogue_ids == ["990102_000", "990102_001"]
    # every turn lands on its own utterance: the script lists both people's utterances in time order
    expected = [u["utterance_id"] for d in two.dialogue_ids for u in scripts[d]["utterances"]]
    assert [t.utterance_id for t in two.turns] == expected
    assert all(t.score == 1.0 for t in two.turns)
    left = next(v for v in index.videos if v.name == LEFT)
    reasons = {(Path(f).name, r) for f, r in index.problems}
    assert any(f == f"{LEFT}_left_speaker_diarization_asr.json" and "contains 'left'" in r for f, r in reasons)
    lost = "left" if case == "overwritten" else "right"  # the side whose ASR their script never kept
    assert all(t.matched_by != "text" for t in left.turns if t.side == lost)  # no text to match
    # labels from order: a lost-side turn between two text-matched partner turns takes the script's line
    # there, when the timeline has exactly as many turns as the script has lines; the rest stay unknown
    expected = {t.start: u["utterance_id"] for t, u in zip(sorted(left.turns, key=lambda t: t.start),
                                                             scripts["990102_002"]["utterances"], strict=False)}
    partner = [t.start for t in left.turns if t.side != lost and t.matched_by == "text"]
    by_order = [t for t in left.turns if t.matched_by == "order"]
    assert by_order and all(t.side == lost and t.score == 0.0 for t in by_order)
    assert all(t.utterance_id == expected[t.start] for t in by_order)  # the right line, never a neighbour's
    bracketed = [t for t in left.turns if t.side == lost and partner and partner[0] < t.start < partner[-1]]
    assert {t.start for t in by_order} == {t.start for t in bracketed}
    assert all(not t.utterance_id for t in left.turns if t.side == lost and t not in bracketed)  # never guessed
    kept = [t for t in left.turns if t.side != lost and t.utterance_id]
    assert kept and all(t.dialogue_id == "990102_002" and t.score == 1.0 for t in kept)
    script_order = [u["utterance_id"] for u in scripts["990102_002"]["utterances"]]
    assert [t.utterance_id for t in kept] == [u for u in script_order if u in {t.utterance_id for t in kept}]


def windows_against_truth(shards: Path, truth: dict) -> int:
    from dyadgen.cache.shards import read_manifest

    n = 0
    for entries in read_manifest(shards)["splits"].values():
        for entry in entries:
            for key, tensors, meta in iter_windows(shards, entry):
                T = tensors["speaking"].shape[1]
                a = meta["frame"]
                gt = truth[meta["video"]]
                np.testing.assert_array_equal(tensors["speaking"].numpy().astype(bool), gt["speaking"][:, a: a + T],
                                              err_msg=key)
                np.testing.assert_array_equal(tensors["emotion"].numpy(), gt["emotion"][:, a: a + T], err_msg=key)
                n += 1
    return n


def expected_labels(truth: dict, index, case: str) -> dict:
    """The fixture's truth as the data can know it: for the "left"-name video the side whose ASR
    their script lost has no emotion (-1), and so has a turn of the other side beyond the lost one's
    count (no text was written for it)."""
    out = {name: {k: v.copy() for k, v in t.items()} for name, t in truth.items()}
    video = next(v for v in index.videos if v.name == LEFT)
    emotion = out[LEFT]["emotion"]
    for p, side in enumerate(("left", "right")):
        for turn in video.turns:
            if turn.side == side and not turn.utterance_id:
                emotion[p, round(turn.start * 25):] = -1
                later = [t for t in video.turns if t.side == side and t.start > turn.start and t.utterance_id]
                if later:
                    emotion[p, round(later[0].start * 25):] = truth[LEFT]["emotion"][p, round(later[0].start * 25):]
    return out


def test_every_window_has_the_truth_from_the_raw_videos_and_from_the_clips_alone(tree, tmp_path):
    from dyadgen.cache.preprocess import preprocess
    from dyadgen.config import load_config

    root, truth, case, overrides = tree
    cfg = load_config(preset_name="tiny", overrides=overrides)
    index = index_dataset(root, script_json=str(root / SCRIPT))
    want = expected_labels(truth, index, case)
    summary = preprocess(root, tmp_path / "raw_shards", cfg, progress=False)
    assert summary.videos == 2 and summary.samples > 40
    assert windows_against_truth(tmp_path / "raw_shards", want) == summary.samples

    clips_only = tmp_path / "clips_only"  # what is published: turn clips and wav segments, no whole-channel wavs
    shutil.copytree(root, clips_only, ignore=shutil.ignore_patterns("*_left.wav", "*_right.wav", "*_mute.wav"))
    for raw in clips_only.glob("*.mp4"):
        raw.unlink()
    summary = preprocess(clips_only, tmp_path / "clip_shards", cfg, progress=False)
    assert summary.videos == 2 and summary.skipped_clips < 10 and summary.samples > 20
    assert windows_against_truth(tmp_path / "clip_shards", want) == summary.samples


def test_clip_only_reading_equals_raw_video_reading(tree):
    root, _, _, _ = tree
    index = index_dataset(root, script_json=str(root / SCRIPT))
    for video in index.videos:
        whole = read_span(video.raw_video, 0.0, 1e9)  # the raw video once, on the same 25 fps grid
        for clip in video.clips[:6]:
            a = read_span(clip.path, clip.start, clip.end, origin=clip.start)
            first, stop = grid_frames(clip.start, clip.end)
            assert abs(a.first - first) <= 1 and abs(len(a.frames) - (stop - first)) <= 1  # within one frame
            n = min(len(a.frames), stop - first)
            frames, audio = whole.frames[a.first: a.first + n], whole.audio[:, a.first * 640: (a.first + n) * 640]
            assert np.abs(a.frames[:n].astype(int) - frames.astype(int)).mean() < 2
            assert np.corrcoef(a.audio[:, : n * 640].ravel(), audio.ravel())[0, 1] > 0.95


def test_dataset_stats_on_their_tree_and_on_clips_alone(tree, tmp_path, capsys):
    root, _, _, _ = tree
    assert main(["dataset-stats", str(root), "--script-json", str(root / SCRIPT), "--json",
                 str(tmp_path / "s.json")]) == 0
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["videos_with_raw"] == 2 and stats["matched_dialogues"] == 3 and stats["hours"] > 0.01
    assert stats["matched_turns"] + stats["unmatched_turns"] == stats["turns"] and stats["unmatched_turns"] > 0
    assert stats["text_matched_turns"] + stats["order_matched_turns"] == stats["matched_turns"]
    assert stats["order_matched_turns"] > 0  # the "left" video's lost side, between its partner's turns
    assert sum(stats["turns_per_emotion"].values()) == stats["matched_turns"]
    assert any("contains 'left'" in s["reason"] for s in stats["skipped"])
    clips_only = tmp_path / "clips_only"
    shutil.copytree(root, clips_only, ignore=shutil.ignore_patterns("*_left.wav", "*_right.wav", "*_mute.wav"))
    for raw in clips_only.glob("*.mp4"):
        raw.unlink()
    broken = clips_only / TWO / "video_segments" / "000003.mp4"
    broken.write_bytes(broken.read_bytes()[:300])  # an interrupted copy
    assert main(["dataset-stats", str(clips_only), "--script-json", str(root / SCRIPT), "--json",
                 str(tmp_path / "c.json")]) == 0
    clip_stats = json.loads((tmp_path / "c.json").read_text())
    assert clip_stats["turns"] == stats["turns"] and clip_stats["videos_with_raw"] == 0
    assert clip_stats["clips_only"]["unreadable"] == 1 and 0.5 * stats["hours"] < clip_stats["hours_from_clips"]
    assert any(s["file"].endswith("000003.mp4") for s in clip_stats["skipped"])
    assert "1 unreadable" in capsys.readouterr().out


def test_log_format_and_time_truncation_are_theirs():
    assert hhmmss(1.16) == "00:00:01.159"  # their sec_to_hhmmss truncates (and 1.16 is 1.1599999... in binary)
    assert hhmmss(3723.5) == "01:02:03.500"
    segs = [Segment(0.5, 2.75, 0, 0), Segment(3.25, 5.625, 1), Segment(6.0, 7.25, 0, 1), Segment(8.0, 9.5, 2)]
    text = format_log(segs, {0: 0.1, 1: 0.01, 2: 0.001})
    assert "00:00:00.500 - 00:00:02.750 speaker 0; [Saved as 000000.wav]" in text
    assert "00:00:03.250 - 00:00:05.625 speaker 1;\n" in text
    assert "Original: SPEAKER_02, Mapped: speaker 2, Energy: 0.0010" in text
    path = Path(__file__).parent / "__log__.tmp"
    try:
        path.write_text(text)
        assert parse_log(path) == segs
    finally:
        path.unlink()
    assert asr_flag("你好，今天天气不错。") and not asr_flag("好")
    assert not asr_flag("请点赞订阅") and not asr_flag("こんにちは")  # a known hallucination; another language


def test_script_match_keeps_order_speakers_and_leaves_the_unknown_unknown():
    scripts = {"250101_000": {"utterances": [
        {"utterance_id": "250101_000_000", "speaker_id": 0, "emotion_label": "Joy", "text": "今天天气真好。"},
        {"utterance_id": "250101_000_001", "speaker_id": 1, "emotion_label": "Hope", "text": "是啊，我们出去走走吧。"},
        {"utterance_id": "250101_000_002", "speaker_id": 0, "emotion_label": "Sadness", "text": "今天天气真好。"},
        {"utterance_id": "250101_000_003", "speaker_id": 1, "emotion_label": "Anger", "text": "你总是迟到！"}]}}
    # the right person is the script's speaker 0 here; the same line twice is matched in order; ASR punctuation,
    # full-width forms and a missing character do not matter; a turn with no text stays unknown
    texts = {"right": ["今天天气真好", "今天天气真好！"], "left": ["是啊我们出去走走吧", None, "ＸＹＺ完全不同的话"]}
    m = match_video(texts, scripts, ["250101_000"])
    assert [x.utterance_id for x in m["right"]] == ["250101_000_000", "250101_000_002"]
    assert m["left"][0].utterance_id == "250101_000_001" and m["left"][1] is None and m["left"][2] is None


def test_a_missing_log_or_an_english_script_is_reported_and_handled(tree, tmp_path):
    root, _, _, _ = tree
    copy = tmp_path / "videos"
    shutil.copytree(root, copy)
    full = {t.start: t for t in index_dataset(root, script_json=str(root / SCRIPT)).videos[0].turns}
    (copy / TWO / f"{TWO}_right_speaker_diarization.log").unlink()
    for source, remove in (("its ASR json", None), ("the left log's speaker-1 lines", "asr")):
        if remove:  # then the left microphone's view of the partner is all that is left
            (copy / TWO / f"{TWO}_right_speaker_diarization_asr.json").unlink()
        index = index_dataset(copy, script_json=str(copy / SCRIPT))
        video = next(v for v in index.videos if v.name == TWO)
        assert any(f"right turns taken from {source}" in r for _, r in index.problems)
        assert [(t.side, t.start, t.end) for t in video.turns] == [(t.side, t.start, t.end) for t in full.values()]
    english = json.loads((root / SCRIPT).read_text())
    for dialogue in english.values():
        for u in dialogue["utterances"]:
            u["text"] = "How have you been lately?"
    (copy / "scripts_en.json").write_text(json.dumps(english))
    index = index_dataset(copy, script_json=str(copy / "scripts_en.json"))
    assert any("the script is not" in r for _, r in index.problems)
    assert not any(t.utterance_id for v in index.videos for t in v.turns)  # unmatched, never guessed


def test_swapped_or_duplicated_asr_jsons_are_detected_and_read_from_the_logs(tree, tmp_path):
    root, _, _, _ = tree
    original = {(t.side, t.number): t.utterance_id
                for t in next(v for v in index_dataset(root, script_json=str(root / SCRIPT)).videos
                              if v.name == TWO).turns}
    copy = tmp_path / "videos"
    shutil.copytree(root, copy)
    left, right = (copy / TWO / f"{TWO}_{side}_speaker_diarization_asr.json" for side in ("left", "right"))
    left_text, right_text = left.read_text(), right.read_text()
    left.write_text(right_text)  # each json holds the other side's turns
    right.write_text(left_text)
    index = index_dataset(copy, script_json=str(copy / SCRIPT))
    video = next(v for v in index.videos if v.name == TWO)
    assert any("holds the right side's turns" in r for _, r in index.problems)
    assert {(t.side, t.number): t.utterance_id for t in video.turns} == original  # the times tell the sides apart

    left.write_text(right_text)  # the right side's json written twice
    right.write_text(right_text)
    index = index_dataset(copy, script_json=str(copy / SCRIPT))
    video = next(v for v in index.videos if v.name == TWO)
    assert any("identical" in r for _, r in index.problems)
    got = {(t.side, t.number): t.utterance_id for t in video.turns}
    assert all(got[k] == original[k] for k in got if k[0] == "right")
    # the left side's ASR is lost: its turns between two of the right's are labelled by order, and right
    left_turns = [t for t in video.turns if t.side == "left"]
    assert all(t.matched_by != "text" for t in left_turns)
    assert any(t.matched_by == "order" for t in left_turns)
    assert all(got[(t.side, t.number)] == original[(t.side, t.number)] for t in left_turns if t.utterance_id)
