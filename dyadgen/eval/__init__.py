"""Evaluation: talking and listening measured from generated pixels."""

from dyadgen.eval.motion import correlation, head_drop, mouth_opening

__all__ = ["mouth_opening", "head_drop", "correlation"]
