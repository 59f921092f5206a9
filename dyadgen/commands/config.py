"""`dyadgen config`: print the resolved config (preset <- YAML <- key=value) as YAML or JSON."""

from __future__ import annotations

import argparse
import json

import yaml

from dyadgen.config import load_config


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The --config/--preset/overrides trio every config-driven command shares."""
    parser.add_argument("--config", metavar="FILE", help="YAML config in configs/ (or a resolved config.json)")
    parser.add_argument("--preset", choices=["tiny", "real", "real-0.5b"], help="start from this preset")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.max_steps=10")


def resolve(args: argparse.Namespace):
    return load_config(args.config, args.overrides, preset_name=args.preset)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of YAML")


def run(args: argparse.Namespace) -> int:
    cfg = resolve(args).to_dict()
    print(json.dumps(cfg, indent=2) if args.json else yaml.safe_dump(cfg, sort_keys=False), end="")
    return 0
