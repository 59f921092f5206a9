"""Guidance distillation: a student decoder that needs one pass per Euler step (no unconditional
branch) and 1, 2 or 4 steps, distilled from a checkpoint's guided 4-step decoder (dyadgen/training/distill.py
says how).

    python scripts/distill_guidance.py --config configs/distill/guidance.yaml [key=value ...]

It writes an inference folder (``out``) that `dyadgen infer --checkpoint` loads: the teacher's backbone,
tokenizer, VAE and fast decoder with the student as its decoder, ``infer.guidance_mode: distilled`` and
``infer.euler_steps: default_steps``; its held-out measures go to distillation.json beside it.
"""

from __future__ import annotations

import argparse
import sys

from dyadgen.errors import UserError
from dyadgen.training.distill import distill_guidance, load_distill_config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="a YAML file of GuidanceDistillConfig's fields")
    parser.add_argument("overrides", nargs="*", help="key=value changes of the config")
    args = parser.parse_args()
    try:
        out = distill_guidance(load_distill_config(args.config, args.overrides))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} (measures: {out / 'distillation.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
