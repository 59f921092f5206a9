"""`dyadgen dataset-stats`: what a SocioEmoDialog-layout root holds, and what was skipped and why."""

from __future__ import annotations

import argparse
import json

HELP = "count dialogues, turns, hours, utterances per emotion and topic, and list skipped files"


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
    print(f"{s['videos']} videos, {s['dialogues']} dialogues, {s['turns']} turns, {s['hours']:.2f} h, "
          f"{s['utterances']} utterances")
    print("emotions: " + ", ".join(f"{k} {n}" for k, n in s["emotions"].items()))
    print("topics: " + ", ".join(f"{k} {n}" for k, n in s["topics"].items()))
    print(f"skipped {len(s['skipped'])}")
    for item in s["skipped"]:
        print(f"  {item['file']}: {item['reason']}")
    if args.json:
        Path(args.json).write_text(json.dumps(s, indent=2, ensure_ascii=False))
    return 0
