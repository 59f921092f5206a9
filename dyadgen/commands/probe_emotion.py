"""`dyadgen probe-emotion`: WAR and UAR of a linear probe on frozen audio features of an emotion corpus."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from dyadgen.data.emotion_corpora import load_corpus
from dyadgen.eval.probe import cached_features, plot_confusion, probe
from dyadgen.io.files import write_text_atomic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=["emotiontalk", "iemocap", "msp-improv", "socioemodialog"])
    parser.add_argument("--root", required=True, metavar="DIR", help="the dataset as it is published")
    parser.add_argument("--features", required=True, metavar="F",
                        help="mel, egemaps, whispervq, backbone, or hf:DIR (a local transformers audio encoder)")
    parser.add_argument("--checkpoint", default=None,
                        help="inference folder for whispervq and backbone features (default: the bundled one)")
    parser.add_argument("--script-json", default="", help="SocioEmoDialog's script json (default: *.json in ROOT)")
    parser.add_argument("--out", default="probe", metavar="DIR",
                        help="probe.json (war, uar, per class, per fold), confusion.png and the feature cache")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    kwargs = {"script_json": args.script_json} if args.dataset == "socioemodialog" else {}
    corpus = load_corpus(args.dataset, args.root, **kwargs)
    out = Path(args.out)
    utterances, features = cached_features(corpus, args.features, out / "features", args.checkpoint)
    result = probe(corpus, utterances, features, args.features, args.seed)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "probe.json", json.dumps(asdict(result), indent=2))
    plot_confusion(out / "confusion.png", result)
    print(f"{corpus.name}, {args.features}: {result.utterances} utterances, {len(result.classes)} classes, "
          f"{result.protocol}; {len(result.skipped)} skipped")
    print(f"WAR {100 * result.war:.2f}  UAR {100 * result.uar:.2f}")
    print("| fold | WAR | UAR | train | test | weight decay | epochs |")
    print("|---|---|---|---|---|---|---|")
    for f in result.folds:
        print(f"| {f.name} | {100 * f.war:.2f} | {100 * f.uar:.2f} | {f.n_train} | {f.n_test} | {f.weight_decay:g} | "
              f"{f.epochs} |")
    print("recall per class: " + ", ".join(f"{c} {'n/a' if r is None else f'{100 * r:.1f}'}"
                                           for c, r in zip(result.classes, result.recall, strict=True)))
    for item, reason in result.skipped[:20]:
        print(f"  skipped {item}: {reason}")
    print(f"written: {out / 'probe.json'}, {out / 'confusion.png'}")
    return 0
