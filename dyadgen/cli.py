"""The ``dyadgen`` command: one subcommand per capability, each a thin shell over a Python API.

Each subcommand lives in ``dyadgen/commands/<name>.py`` with ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``; command modules import torch and friends inside ``run`` so that
``dyadgen --help`` stays fast. A subcommand is listed here only once it works.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module; order is the order `dyadgen --help` lists them
COMMANDS: dict[str, str] = {
    "infer": "dyadgen.commands.infer",
    "config": "dyadgen.commands.config",
    "synth": "dyadgen.commands.synth",
    "fit-tokenizer": "dyadgen.commands.fit_tokenizer",
    "prepare-raw": "dyadgen.commands.prepare_raw",
    "preprocess": "dyadgen.commands.preprocess",
    "dataset-stats": "dyadgen.commands.dataset_stats",
    "verify-shards": "dyadgen.commands.verify_shards",
    "evaluate": "dyadgen.commands.evaluate",
    "video-stats": "dyadgen.commands.video_stats",
    "probe-emotion": "dyadgen.commands.probe_emotion",
    "bench": "dyadgen.commands.bench",
}


def build_parser() -> argparse.ArgumentParser:
    from dyadgen import __version__

    parser = argparse.ArgumentParser(
        prog="dyadgen",
        description="Two voices of a conversation in, a video of both people talking and listening out.",
    )
    parser.add_argument("--version", action="version", version=f"dyadgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from dyadgen.errors import UserError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as err:
        print(f"dyadgen {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dyadgen {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
