"""`dyadgen evaluate`: generate held-out synthetic dialogues and score talking and listening from pixels."""

from __future__ import annotations

import argparse

HELP = "generate held-out dialogues of a synthetic corpus and score mouth sync, closed mouths and nods"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="ROOT", help="a corpus written by `dyadgen synth`")
    parser.add_argument("--checkpoint", default=None, help="inference folder (default: the bundled checkpoint)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    parser.add_argument("--max-dialogues", type=int, default=0, help="score at most this many (0 = all)")
    parser.add_argument("--max-seconds", type=float, default=0.0, help="score the first X seconds of each")
    parser.add_argument("--steps", type=int, default=None, help="Euler steps (default: the checkpoint's)")
    parser.add_argument("--guidance", "--cfg", type=float, default=None,
                        help="guidance scale (default: the checkpoint's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="also write per-dialogue and mean scores as JSON")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import numpy as np
    from tqdm.auto import tqdm

    from dyadgen.data.socioemodialog import index_dataset
    from dyadgen.data.splits import split_of
    from dyadgen.errors import UserError
    from dyadgen.eval.talking import score_against_truth
    from dyadgen.pipeline import DyadGenPipeline, InferOptions

    pipe = DyadGenPipeline.from_pretrained(args.checkpoint)
    icfg = pipe.folder.config.infer
    options = InferOptions(steps=args.steps or icfg.steps,
                           guidance=icfg.guidance if args.guidance is None else args.guidance,
                           context_noise=icfg.context_noise,
                           seed=args.seed, max_seconds=args.max_seconds, progress=False)
    index = index_dataset(args.data)
    videos = [v for v in index.videos if args.split == "all" or split_of(v.dialogue_id or v.name) == args.split]
    videos = [v for v in videos if (v.folder / "ground_truth.npz").is_file()]
    if args.max_dialogues:
        videos = videos[: args.max_dialogues]
    if not videos:
        raise UserError(f"{args.data}: no {args.split} dialogues with ground_truth.npz (a `dyadgen synth` corpus)")
    rows, skipped = [], []
    for video in tqdm(videos, desc="evaluate"):
        try:
            frames = pipe.frames(video.channel_wavs["left"], video.channel_wavs["right"], options=options)
            truth = dict(np.load(video.folder / "ground_truth.npz"))
        except (UserError, KeyError, OSError, ValueError) as err:  # a bad sample is skipped and counted
            skipped.append((video.name, str(err)))
            continue
        for side, score in zip(("left", "right"), score_against_truth(frames, truth), strict=True):
            rows.append({"video": video.name, "side": side, **score})
    keys = ("mouth_corr", "open_speaking", "open_listening", "nod_corr")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys} if rows else {}
    print(f"{len(rows) // 2} dialogues scored, {len(skipped)} skipped")
    for k, v in mean.items():
        print(f"  {k}: {v:.3f}")
    for name, reason in skipped:
        print(f"  skipped {name}: {reason}")
    if args.json:
        out = Path(args.json)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps({"mean": mean, "people": rows, "skipped": skipped}, indent=2))
        tmp.replace(out)  # write then rename: never a half-written file
    return 0
