"""Data: SocioEmoDialog's layout, the synthetic corpus, clips, shards and the training loader.

Public reader: :func:`index_dataset` (a root -> videos with their turn timeline, clips and script
matches) and :func:`read_span` (frames uint8 [T,H,W,3] and 16 kHz stereo float32 [2,N] of a span of
a raw video or a turn clip, on the video's own 25 fps grid); :func:`crop_people` splits and crops.
"""

from dyadgen.data.clips import Span, crop_people, read_span
from dyadgen.data.socioemodialog import index_dataset

__all__ = ["Span", "crop_people", "index_dataset", "read_span"]
