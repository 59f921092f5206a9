"""Sampler options that ``dyadgen infer``, ``dyadgen evaluate`` and the checks in scripts/ share."""

from __future__ import annotations

import argparse


def add_unconditional_arguments(parser: argparse.ArgumentParser) -> None:
    """``--unconditional-audio`` and ``--unconditional-tracks``: what guidance's unguided branch holds
    (InferConfig.unconditional_audio / unconditional_tracks; None: the checkpoint's)."""
    parser.add_argument("--unconditional-audio", choices=["null", "silence"], default=None,
                        help="what guidance steers away from: the null code on both tracks, or both tracks silent "
                             "(a silent listener's own track then adds nothing) (default: the checkpoint's)")
    parser.add_argument("--unconditional-tracks", choices=["both", "own"], default=None,
                        help="which tracks the unconditional branch replaces: both, or each person's own (the "
                             "partner's voice kept: guidance sharpens lip sync, not the listening reaction) "
                             "(default: the checkpoint's)")
