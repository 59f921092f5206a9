"""Corpus statistics: dialogues matched, turns per emotion, hours, and every skipped file with its reason."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from dyadgen.data.emotions import EMOTIONS, deviation_score
from dyadgen.data.socioemodialog import index_dataset
from dyadgen.errors import UserError
from dyadgen.io.video import probe_video


def _in_order(counts: Counter) -> dict[str, int]:
    """The 19 classes in their fixed order, then any label beyond them."""
    return {e: counts.get(e, 0) for e in EMOTIONS} | {k: n for k, n in counts.items() if k not in EMOTIONS}


def dataset_stats(root: str | Path, *, script_json: str = "", video_to_dialogue: str = "") -> dict:
    """Hours come from the raw videos; a folder with only turn clips is counted from its clips, each
    one opened (an unreadable clip is listed with its reason)."""
    index = index_dataset(root, script_json=script_json, video_to_dialogue=video_to_dialogue)
    problems = list(index.problems)
    raw_seconds = clip_seconds = 0.0
    clips = unreadable = 0
    for video in index.videos:
        if video.raw_video is not None:
            try:
                raw_seconds += probe_video(video.raw_video).duration
            except UserError as err:  # an unreadable video is reported, never fatal
                problems.append((str(video.raw_video), str(err)))
            continue
        for clip in video.clips:
            clips += 1
            try:
                info = probe_video(clip.path)
            except UserError as err:
                unreadable += 1
                problems.append((str(clip.path), str(err).removeprefix(f"{clip.path}: ")))
                continue
            clip_seconds += (clip.end - clip.start) if clip.start is not None else info.duration
    turns = [t for v in index.videos for t in v.turns]
    matched = [t for t in turns if t.utterance_id]
    by_text = [t for t in matched if t.matched_by == "text"]
    utterances = Counter(u.get("emotion_label", "") for s in index.scripts.values() for u in s["utterances"])
    return {
        "videos": len(index.videos),
        "videos_with_raw": sum(v.raw_video is not None for v in index.videos),
        "dialogues": len(index.scripts),
        "matched_dialogues": len({t.dialogue_id for t in matched}),
        "turns": len(turns),
        "matched_turns": len(matched),
        "text_matched_turns": len(by_text),
        "order_matched_turns": len(matched) - len(by_text),
        "unmatched_turns": len(turns) - len(matched),
        "mean_match_score": sum(t.score for t in by_text) / len(by_text) if by_text else 0.0,
        "turns_per_emotion": _in_order(Counter(t.emotion for t in matched)),
        "hours": (raw_seconds + clip_seconds) / 3600,
        "hours_from_raw_videos": raw_seconds / 3600,
        "hours_from_clips": clip_seconds / 3600,
        "clips_only": {"clips": clips, "unreadable": unreadable},
        "utterances": sum(utterances.values()),
        "utterances_per_emotion": _in_order(utterances),
        "topics": dict(Counter(s.get("topic_label", "") for s in index.scripts.values())),
        "deviation_score_script": deviation_score(utterances)[0],
        "deviation_score_turns": deviation_score(Counter(t.emotion for t in matched))[0],
        "skipped": [{"file": f, "reason": r} for f, r in problems],
    }
