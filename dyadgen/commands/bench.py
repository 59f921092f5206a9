"""`dyadgen bench`: parameter counts of each part of a configuration and the decoder's FLOPs per second of
video (meta device, no weights)."""

from __future__ import annotations

import argparse
import json

from dyadgen.commands.config import add_config_arguments, resolve

HELP = ("count the parameters of each part of a configuration (default: the real preset) and the decoder's "
        "FLOPs per second of video, on the meta device")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", action="store_true", help="parameter counts of each part")
    parser.add_argument("--flops", action="store_true",
                        help="FLOPs of each part per second of generated video (infer.steps, infer.guidance) and the "
                             "real-time factor they project on --gpu-tflops at --utilisation")
    parser.add_argument("--gpu-tflops", type=float, default=989.0,
                        help="dense bf16 TFLOP/s of the GPU for the projection (default 989: one H100 SXM)")
    parser.add_argument("--utilisation", type=float, default=0.4, help="the share of it reached (default 0.4)")
    parser.add_argument("--json", metavar="FILE",
                        help="also write the results as JSON ({'params': {...}, 'decoder_flops': {...}, "
                             "'flops': {...}})")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from dyadgen.bench import flops_per_second, parameter_counts
    from dyadgen.errors import UserError

    if not (args.params or args.flops):
        raise UserError("dyadgen bench: choose what to measure: --params and/or --flops")
    if args.config is None and args.preset is None:
        args.preset = "real"
    cfg = resolve(args)
    result: dict = {"preset": cfg.preset}
    if args.params:
        result["params"] = counts = parameter_counts(cfg)
        print(f"parameters of the {cfg.preset} configuration (meta device, no weights):")
        for name, n in counts.items():
            print(f"  {name:18s} {'n/a' if n is None else f'{n:>15,d}'}")
    if args.flops:
        parts = flops_per_second(cfg, gpu_tflops=args.gpu_tflops, utilisation=args.utilisation)
        result["decoder_flops"] = flops = parts["decoder"]
        result["flops"] = {"per_second": parts["per_second"], "real_time": parts["real_time"]}
        print(f"decoder FLOPs of the {cfg.preset} configuration ({flops['euler_steps']} Euler steps, "
              f"{flops['branches']} guidance branch(es), both people, {flops['tokens_per_sequence']} tokens "
              "per sequence):")
        for name in ("per_euler_step", "per_chunk", "per_second"):
            print(f"  {name:18s} {flops[name] / 1e12:15.2f} TFLOP")
        print("FLOPs per second of video, both people:")
        for name, n in parts["per_second"].items():
            print(f"  {name:18s} {n / 1e12:15.2f} TFLOP")
        rt = parts["real_time"]
        taef1 = f", {rt['x_taef1']:.2f}x with TAEF1" if "x_taef1" in rt else ""
        print(f"projected on {rt['gpu_tflops']:.0f} TFLOP/s at {rt['utilisation']:.0%}: {rt['x']:.2f}x real time "
              f"with the full VAE decode{taef1}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0
