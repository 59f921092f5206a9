"""The ``dyadgen`` command: one subcommand per capability, each a thin shell over a Python API.

Each subcommand lives in ``dyadgen/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``, and imports its stage at the top. Only the module of the subcommand being run is
imported, so ``dyadgen --help`` loads no torch. A subcommand is listed here only once it works.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dyadgen import __version__
from dyadgen.errors import UserError

# name -> (module, one-line help); the order is the order `dyadgen --help` lists them
COMMANDS: dict[str, tuple[str, str]] = {
    "infer": ("dyadgen.commands.infer", "make a video of two people talking and listening from their two voices"),
    "config": ("dyadgen.commands.config",
               "print the resolved configuration (preset, YAML file and key=value overrides)"),
    "synth": ("dyadgen.commands.synth", "write a synthetic two-person corpus (faces, Mandarin voices, ground "
              "truth) in SocioEmoDialog's layout"),
    "fit-tokenizer": ("dyadgen.commands.fit_tokenizer",
                      "fit the small log-mel + k-means audio tokenizer (for tiny models) on a corpus's speech"),
    "prepare-raw": ("dyadgen.commands.prepare_raw", "cut raw side-by-side videos (stereo: left actor = left "
                    "channel) into the processed layout (resumable)"),
    "preprocess": ("dyadgen.commands.preprocess",
                   "encode a SocioEmoDialog-layout dataset into training shards (resumable)"),
    "dataset-stats": ("dyadgen.commands.dataset_stats", "count videos, matched dialogues, turns per emotion and "
                      "hours, and list skipped files with reasons"),
    "verify-shards": ("dyadgen.commands.verify_shards", "check every shard (and, in a damaged shard, every "
                      "sample) against the manifest's sizes and checksums"),
    "evaluate": ("dyadgen.commands.evaluate", "score a checkpoint on held-out windows of a corpus (lip sync, "
                 "turn-taking, quality, identity, motion)"),
    "video-stats": ("dyadgen.commands.video_stats", "per person of side-by-side videos (a SocioEmoDialog root, "
                    "or generated videos): framing occupancy, face-, body- and head-pose heatmaps, blink rate "
                    "and eye openness"),
    "probe-emotion": ("dyadgen.commands.probe_emotion", "how much emotion audio features keep: a linear probe "
                      "on frozen features, WAR and UAR on the test split"),
    "bench": ("dyadgen.commands.bench", "parameters, FLOPs, memory, preprocessing and shard-reading rates and "
              "generation speed of a configuration or a checkpoint"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every subcommand is listed; only ``command``'s module is imported and given its arguments."""
    parser = argparse.ArgumentParser(
        prog="dyadgen",
        description="Two voices of a conversation in, a video of both people talking and listening out.",
    )
    parser.add_argument("--version", action="version", version=f"dyadgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
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
