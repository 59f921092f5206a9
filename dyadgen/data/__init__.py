"""Data: SocioEmoDialog's layout, clip decoding and cropping, the synthetic corpus, shards and loaders.

Public reader: :func:`read_turn` (frames uint8 [P,T,3,H,W] and 16 kHz audio float32 [P,N]).
"""

from dyadgen.data.clips import Turn, read_turn

__all__ = ["Turn", "read_turn"]
