#!/usr/bin/env python
r"""Train DyadGen on preprocessed shards.

    python scripts/train.py --config configs/tiny_synthetic.yaml [key=value ...]
    accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 8 \
        scripts/train.py --config configs/real.yaml
    ACCELERATE_USE_CPU=true accelerate launch --config_file configs/accelerate/ddp.yaml --num_processes 2 \
        --mixed_precision no scripts/train.py --config configs/tiny_synthetic.yaml   # on CPU processes

Overrides use the config's dotted keys: train.output_dir, train.max_steps, train.save_every,
train.resume=latest (or a step folder), train.seed, data.shards, ... Ctrl-C saves a checkpoint first.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from dyadgen.commands.config import add_config_arguments, resolve
    from dyadgen.errors import UserError

    parser = argparse.ArgumentParser(prog="train.py", description=__doc__.split("\n\n")[0])
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = resolve(args)
        from dyadgen.training.run import train

        return train(cfg)
    except UserError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
