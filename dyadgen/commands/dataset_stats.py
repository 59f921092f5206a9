"""`dyadgen dataset-stats`: what a SocioEmoDialog-layout root holds, and what was skipped and why."""

from __future__ import annotations

import argparse
import json

HELP = "count videos, matched dialogues, turns per emotion and hours, and list skipped files with reasons"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="dataset root in SocioEmoDialog's layout")
    parser.add_argument("--json", metavar="FILE", help="also write the statistics as JSON")
    parser.add_argument("--script-json", default="", help="the dialogue script json (default: *.json in ROOT)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dyadgen.data.stats import dataset_stats
    from dyadgen.errors import UserError

    if not Path(args.root).is_dir():
        raise UserError(f"{args.root}: not a folder")
    s = dataset_stats(args.root, script_json=args.script_json)
    print(f"{s['videos']} videos ({s['videos_with_raw']} with the raw video), {s['hours']:.2f} h "
          f"({s['hours_from_raw_videos']:.2f} h from raw videos, {s['hours_from_clips']:.2f} h from turn clips)")
    print(f"dialogues: {s['matched_dialogues']} matched of {s['dialogues']} in the script; turns: {s['turns']} "
          f"({s['matched_turns']} matched to a script line, mean score {s['mean_match_score']:.2f}; "
          f"{s['unmatched_turns']} unmatched, emotion unknown)")
    if s["clips_only"]["clips"]:
        print(f"turn clips of folders without a raw video: {s['clips_only']['clips']} opened, "
              f"{s['clips_only']['unreadable']} unreadable")
    print("turns per emotion: " + ", ".join(f"{k} {n}" for k, n in s["turns_per_emotion"].items()))
    print(f"script utterances: {s['utterances']}; per emotion: "
          + ", ".join(f"{k} {n}" for k, n in s["utterances_per_emotion"].items()))
    print("topics: " + ", ".join(f"{k} {n}" for k, n in s["topics"].items()))
    print(f"skipped {len(s['skipped'])}")
    for item in s["skipped"]:
        print(f"  {item['file']}: {item['reason']}")
    if args.json:
        Path(args.json).write_text(json.dumps(s, indent=2, ensure_ascii=False))
    return 0
