"""`dyadgen video-stats`: framing occupancy, face/body/head-pose heatmaps and blinks of side-by-side videos."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm.auto import tqdm

from dyadgen.errors import UserError
from dyadgen.eval.face import models_folder
from dyadgen.eval.video_stats import SCALARS, merge, plot_heatmaps, video_stats
from dyadgen.io.files import write_text_atomic
from dyadgen.media.clips import ClipError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a video, or a folder searched for videos (a SocioEmoDialog root: the raw videos, or a "
                             "video's turn clips where its raw video is missing)")
    parser.add_argument("--out", default="video-stats", metavar="DIR",
                        help="video_stats.json and video_stats.png (heatmaps) go here")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="read at most this much of each video (0 = all of it; default 60)")
    parser.add_argument("--max-videos", type=int, default=0, help="at most this many videos (0 = all)")


def find_videos(paths: list[str]) -> list:
    """The side-by-side videos a list of files and folders names: in a folder, every .mp4 except the turn
    clips (``video_segments/``) of a video whose raw recording is there too."""
    found = []
    for name in paths:
        path = Path(name)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            for video in sorted(path.rglob("*.mp4")):
                if video.parent.name == "video_segments":
                    folder = video.parent.parent
                    if (folder.parent / f"{folder.name}.mp4").is_file() or (folder / f"{folder.name}.mp4").is_file():
                        continue  # the raw video covers this clip
                found.append(video)
        else:
            raise UserError(f"{path}: no such file or folder")
    return found


def run(args: argparse.Namespace) -> int:
    models_folder()  # a clear error without the eval extra, before any decoding
    videos = find_videos(args.paths)
    if args.max_videos:
        videos = videos[: args.max_videos]
    if not videos:
        raise UserError(f"{' '.join(args.paths)}: no .mp4 video found")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_video, sides, skipped = {}, {"left": [], "right": []}, []
    for video in tqdm(videos, desc="video-stats", unit="video"):
        try:
            people = video_stats(video, args.seconds)
        except (ClipError, ValueError, OSError) as err:  # a bad video is skipped, counted and listed
            skipped.append((str(video), str(err).splitlines()[0]))
            continue
        per_video[str(video)] = {side: s.values for side, s in zip(sides, people, strict=True)}
        for side, s in zip(sides, people, strict=True):
            sides[side].append(s)
    merged = {side: merge(parts) for side, parts in sides.items() if parts}
    keys = list(SCALARS)
    print(f"{len(per_video)} videos, {len(skipped)} skipped; per person (duration-weighted means):")
    print("| person | seconds | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for side, s in merged.items():
        cells = ["n/a" if s.values[k] is None else f"{s.values[k]:.3f}" for k in keys]
        print(f"| {side} | {s.seconds:.0f} | " + " | ".join(cells) + " |")
    for item, reason in skipped:
        print(f"  skipped {item}: {reason}")
    body = {"definitions": SCALARS,
            "method": "occupancy: OpenCV GrabCut seeded by the dlib face track, one frame a second; eyes and face "
                      "boxes: dlib's 68 landmarks (SocioEmoDialog's eval_tools use a body-segmentation network and "
                      "OpenFace)",
            "seconds_per_video": args.seconds, "people": {side: s.values for side, s in merged.items()},
            "seconds": {side: s.seconds for side, s in merged.items()},
            "heatmaps": {side: {"face_position": s.face_heat.tolist(), "head_pose_yaw_pitch": s.pose_heat.tolist(),
                                "body_share": (s.body_heat / max(s.segmented, 1)).tolist()}
                         for side, s in merged.items()},
            "videos": per_video, "skipped": [{"video": v, "reason": r} for v, r in skipped]}
    write_text_atomic(out / "video_stats.json", json.dumps(body, indent=2))
    if merged:
        plot_heatmaps(out / "video_stats.png", merged)
    print(f"written: {out / 'video_stats.json'}" + (f", {out / 'video_stats.png'}" if merged else ""))
    return 0
