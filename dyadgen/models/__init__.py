"""The DyadGen model: self/other Qwen2.5 backbone + flow-matching DiT decoder (see docs/DESIGN.md)."""

from dyadgen.models.dyadgen import DyadBatch, DyadGen

__all__ = ["DyadBatch", "DyadGen"]
