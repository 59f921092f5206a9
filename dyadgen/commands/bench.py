"""`dyadgen bench`: the flags and the dispatch; what each flag measures is in ``dyadgen.bench.reports``. With
no flag it prints the speed table (``dyadgen.bench.speed``)."""

from __future__ import annotations

import argparse
import json

from dyadgen.bench.reports import (
    flops_report,
    infer_report,
    memory_report,
    params_report,
    preprocess_bench,
    shards_bench,
    speed_report,
)
from dyadgen.commands.config import add_config_arguments, resolve
from dyadgen.errors import UserError
from dyadgen.io.files import write_text_atomic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", action="store_true", help="parameter counts of each part")
    parser.add_argument("--flops", action="store_true",
                        help="FLOPs of each part per second of generated video (infer.euler_steps, infer.guidance) "
                             "and the real-time factor they project on --gpu-tflops at --utilisation")
    parser.add_argument("--gpu-tflops", type=float, default=989.0,
                        help="dense bf16 TFLOP/s of the GPU for the projection (default 989: one H100 SXM)")
    parser.add_argument("--utilisation", type=float, default=0.4, help="the share of it reached (default 0.4)")
    parser.add_argument("--memory", action="store_true",
                        help="peak memory per GPU of one training step (fake tensors: no GPU, no weights) for the "
                             "real presets (or --config) under DDP on 1 GPU and FSDP2 on 8, and the largest "
                             "micro-batch within --budget-gib")
    parser.add_argument("--budget-gib", type=float, default=80.0, help="GPU memory for --memory (default 80)")
    parser.add_argument("--measure-cpu", action="store_true",
                        help="with --memory: also run one real training step of real-0.5b at full size on this CPU "
                             "(minutes, ~14 GB RAM) and put its peak RSS beside the estimate")
    parser.add_argument("--infer", action="store_true",
                        help="measured here: real-time factor of the bundled (or --checkpoint) inference on "
                             "examples/, with the full VAE decoder and with --fast-decoder, in one run")
    parser.add_argument("--checkpoint", default=None,
                        help="inference folder for --infer and the speed table (default: the bundled checkpoint)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="audio generated per run (default: 10 for --infer, 4 for the speed table)")
    parser.add_argument("--positions", default="10,60,300",
                        help="speed table: seconds into a dialogue where a chunk step is timed (default 10,60,300)")
    parser.add_argument("--train-presets", default="tiny,small",
                        help="speed table: presets whose training throughput and MFU are measured (default tiny,small)")
    parser.add_argument("--train-steps", type=int, default=3, help="speed table: timed training steps per preset")
    parser.add_argument("--preprocess", action="store_true",
                        help="preprocessing throughput and peak RSS on synthetic 1- and 10-minute videos (measured)")
    parser.add_argument("--minutes", default="1,10", help="video lengths for --preprocess (default 1,10)")
    parser.add_argument("--size", default="1280x720",
                        help="side-by-side frame size for --preprocess (default 1280x720)")
    parser.add_argument("--shards", action="store_true",
                        help="shard reading at the config's latent size (measured) against a GPU trainer (projected)")
    parser.add_argument("--json", metavar="FILE",
                        help="also write the results as JSON ({'params': {...}, 'decoder_flops': {...}, "
                             "'flops': {...}})")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if not (args.params or args.flops or args.memory or args.infer or args.preprocess or args.shards):
        try:  # no flag: the speed table, measured in one process
            positions = tuple(float(s) for s in args.positions.split(","))
        except ValueError:
            raise UserError(f"--positions {args.positions!r}: expected seconds such as 10,60,300") from None
        result = speed_report(args.checkpoint, args.seconds or 4.0, positions,
                              tuple(p for p in args.train_presets.split(",") if p), args.train_steps, args.utilisation)
        if args.json:
            write_text_atomic(args.json, json.dumps(result, indent=2, default=float))
        return 0
    given = args.config is not None or args.preset is not None
    if not given:
        args.preset = "real"
    cfg = resolve(args)
    result: dict = {"preset": cfg.preset}
    if args.memory:
        result["memory"] = memory_report(cfg if given else None, args.budget_gib, args.measure_cpu)
    if args.params:
        result["params"] = params_report(cfg)
    if args.flops:
        result["decoder_flops"], result["flops"] = flops_report(cfg, args.gpu_tflops, args.utilisation)
    if args.infer:
        result["infer"] = infer_report(args.checkpoint, args.seconds or 10.0)
    if args.preprocess:
        result["preprocess"] = preprocess_bench(args.minutes, args.size)
    if args.shards:
        result["shards"] = shards_bench(cfg, args.gpu_tflops, args.utilisation)
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2))
    return 0
