"""Corpus statistics: dialogues, turns, hours, utterances per emotion and topic, and every skipped file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from dyadgen.data.emotions import EMOTIONS
from dyadgen.data.socioemodialog import index_dataset
from dyadgen.io.video import probe_video


def dataset_stats(root: str | Path, *, script_json: str = "", video_to_dialogue: str = "") -> dict:
    index = index_dataset(root, script_json=script_json, video_to_dialogue=video_to_dialogue)
    problems = list(index.problems)
    seconds = 0.0
    for video in index.videos:
        if video.raw_video is not None:
            try:
                seconds += probe_video(video.raw_video).duration
            except Exception as err:  # an unreadable video is reported, never fatal
                problems.append((str(video.raw_video), str(err)))
        else:
            seconds += sum(t.end - t.start for t in video.turns)
    emotions = Counter(u.get("emotion_label", "") for s in index.scripts.values() for u in s["utterances"])
    topics = Counter(s.get("topic_label", "") for s in index.scripts.values())
    return {
        "videos": len(index.videos),
        "dialogues": len(index.scripts),
        "turns": sum(len(v.turns) for v in index.videos),
        "hours": seconds / 3600,
        "utterances": sum(emotions.values()),
        # the 19 classes in their fixed order, then any label a script uses beyond them
        "emotions": {e: emotions.get(e, 0) for e in EMOTIONS}
        | {k: n for k, n in emotions.items() if k not in EMOTIONS},
        "topics": dict(topics),
        "skipped": [{"file": f, "reason": r} for f, r in problems],
    }
