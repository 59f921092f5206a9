"""`dyadgen evaluate`: generate held-out windows of a corpus and score them beside the baselines."""

from __future__ import annotations

import argparse
from pathlib import Path

from dyadgen.commands.sampling import add_unconditional_arguments
from dyadgen.eval.harness import evaluate
from dyadgen.eval.report import table, write_report
from dyadgen.eval.scoring import score
from dyadgen.eval.settings import load_eval_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="ROOT",
                        help="a corpus in SocioEmoDialog's layout (real, or written by `dyadgen synth`)")
    parser.add_argument("--checkpoint", default=None, help="inference folder (default: the bundled checkpoint)")
    parser.add_argument("--out", default="evaluation", metavar="DIR",
                        help="metrics.json, report.md, plots, videos and the cache of measured windows")
    parser.add_argument("--eval-config", default=None, metavar="YAML",
                        help="evaluation settings, including the local weight files of SyncNet, Inception, I3D, "
                             "ArcFace and AlexNet (see README, Evaluation)")
    parser.add_argument("--split", default=None, choices=["train", "val", "test", "all"])
    parser.add_argument("--max-clips", type=int, default=None, help="score at most this many windows (0 = all)")
    parser.add_argument("--seconds", type=float, default=None, help="length of each window (default 10)")
    parser.add_argument("--steps", type=int, default=None, help="Euler steps (default: the checkpoint's)")
    parser.add_argument("--guidance", "--cfg", type=float, default=None,
                        help="guidance scale (default: the checkpoint's)")
    parser.add_argument("--guidance-mode", choices=["batched", "separate", "distilled"], default=None,
                        help="classifier-free guidance (batched or separate) or the checkpoint's guidance-distilled "
                             "student (default: the checkpoint's)")
    add_unconditional_arguments(parser)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--device", default=None, help="auto (default: the GPU when there is one), cpu or cuda")
    parser.add_argument("--dtype", default=None, choices=["auto", "fp32", "bf16", "fp16"],
                        help="precision of generation (auto: bf16 on a GPU, fp32 on the CPU)")
    parser.add_argument("--videos", type=int, default=None, help="side-by-side videos to write (default 3)")
    parser.add_argument("--compare", default=None, metavar="DIR",
                        help="a second inference folder scored on the same windows beside the checkpoint (system "
                             "'compared': its own sampler settings, the same references and seed)")


def run(args: argparse.Namespace) -> int:
    cfg = load_eval_config(args.eval_config, {"split": args.split, "max_clips": args.max_clips, "seconds": args.seconds,
                                         "euler_steps": args.steps, "guidance": args.guidance,
                                         "guidance_mode": args.guidance_mode,
                                         "unconditional_audio": args.unconditional_audio,
                                         "unconditional_tracks": args.unconditional_tracks, "seed": args.seed,
                                         "device": args.device, "dtype": args.dtype, "videos": args.videos,
                                         "compare": args.compare})
    result = evaluate(args.checkpoint, args.data, args.out, cfg)
    scores = score(Path(args.out), result.systems, result.missing_networks, result.network_sources)
    write_report(Path(args.out), scores, result)
    print(f"{scores['windows']} windows scored, {len(result.failed)} skipped; report: {Path(args.out) / 'report.md'}")
    if scores["figures"]:
        print(table(scores["figures"], ["mouth_env_corr/speaking", "false_talk/listening", "psnr/all",
                                        "identity/all", "fd_exp/all", "fd_jaw/all", "fd_pose/all", "fid/all"]))
        for key, figure in scores["figures"].get("model", {}).items():
            if "WARNING" in figure.differs:
                print(f"  {key}: {figure.differs.split('WARNING: ')[1]}")
    for item, reason in result.failed:
        print(f"  skipped {item}: {reason}")
    return 0
