"""`dyadgen dataset-stats`: what a SocioEmoDialog-layout root holds, and what was skipped and why."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

from dyadgen.data.emotions import DEVIATION, deviation_score, plot_distribution
from dyadgen.data.stats import dataset_stats
from dyadgen.errors import UserError
from dyadgen.io.files import write_text_atomic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="dataset root in SocioEmoDialog's layout")
    parser.add_argument("--json", metavar="FILE", help="also write the statistics as JSON")
    parser.add_argument("--script-json", default="", help="the dialogue script json (default: *.json in ROOT)")
    parser.add_argument("--plot", metavar="FILE", help="a bar chart (PNG) of the emotion distribution against "
                                                       "Trampe et al. 2015 (needs matplotlib: the eval extra)")


def run(args: argparse.Namespace) -> int:
    if not Path(args.root).is_dir():
        raise UserError(f"{args.root}: not a folder")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise UserError(f"--plot {args.plot}: needs matplotlib (pip install -e '.[eval]')")
    s = dataset_stats(args.root, script_json=args.script_json)
    print(f"{s['videos']} videos ({s['videos_with_raw']} with the raw video), {s['hours']:.2f} h "
          f"({s['hours_from_raw_videos']:.2f} h from raw videos, {s['hours_from_clips']:.2f} h from turn clips)")
    print(f"dialogues: {s['matched_dialogues']} matched of {s['dialogues']} in the script; turns: {s['turns']} "
          f"({s['text_matched_turns']} matched by their text, mean score {s['mean_match_score']:.2f}; "
          f"{s['order_matched_turns']} matched by order between the partner's; "
          f"{s['unmatched_turns']} unknown, emotion unknown)")
    if s["clips_only"]["clips"]:
        print(f"turn clips of folders without a raw video: {s['clips_only']['clips']} opened, "
              f"{s['clips_only']['unreadable']} unreadable")
    print("turns per emotion: " + ", ".join(f"{k} {n}" for k, n in s["turns_per_emotion"].items()))
    print(f"script utterances: {s['utterances']}; per emotion: "
          + ", ".join(f"{k} {n}" for k, n in s["utterances_per_emotion"].items()))
    print("topics: " + ", ".join(f"{k} {n}" for k, n in s["topics"].items()))
    print("emotion distribution against Trampe et al. 2015 (share of labelled utterances, %; 'Other' left out):")
    script_counts, turn_counts = s["utterances_per_emotion"], s["turns_per_emotion"]
    _, script_shares, reference = deviation_score(script_counts)
    _, turn_shares, _ = deviation_score(turn_counts)
    print(f"  {'emotion':<14} {'script':>7} {'turns':>7} {'Trampe':>7}")
    for e in reference:
        print(f"  {e:<14} {script_shares[e]:7.2f} {turn_shares[e]:7.2f} {reference[e]:7.2f}")
    for label, score in (("script utterances", s["deviation_score_script"]),
                         ("matched turns", s["deviation_score_turns"])):
        print(f"deviation score of the {label}: " + ("n/a (no labelled one)" if score is None else f"{score:.2f}"))
    print(f"  ({DEVIATION})")
    if args.plot:
        plot_distribution(args.plot, {"script": script_counts, "matched turns": turn_counts})
        print(f"plot: {args.plot}")
    print(f"skipped {len(s['skipped'])}")
    for item in s["skipped"]:
        print(f"  {item['file']}: {item['reason']}")
    if args.json:
        write_text_atomic(args.json, json.dumps(s, indent=2, ensure_ascii=False))
    return 0
