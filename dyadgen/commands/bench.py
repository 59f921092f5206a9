"""`dyadgen bench`: parameter counts of each part of a configuration (meta device, no weights)."""

from __future__ import annotations

import argparse
import json

from dyadgen.commands.config import add_config_arguments, resolve

HELP = "count the parameters of each part of a configuration (default: the real preset) on the meta device"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", action="store_true", required=True,
                        help="parameter counts (the only benchmark yet)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON ({'params': {...}})")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from dyadgen.bench import parameter_counts

    if args.config is None and args.preset is None:
        args.preset = "real"
    cfg = resolve(args)
    counts = parameter_counts(cfg)
    print(f"parameters of the {cfg.preset} configuration (meta device, no weights):")
    for name, n in counts.items():
        print(f"  {name:18s} {'n/a (WhisperVQ is not in this release)' if n is None else f'{n:>15,d}'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"preset": cfg.preset, "params": counts}, f, indent=2)
    return 0
