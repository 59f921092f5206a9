"""Media decoding: a time range of a side-by-side dialogue video -> the two people's cropped frames and
audio on the 25 fps grid (:func:`read_span`, :func:`crop_people`), and the one crop rule.

Frames are uint8 [T,H,W,3], audio 16 kHz stereo float32 [2,N]; files are read through ``dyadgen.io``.
"""

from dyadgen.media.clips import Span, crop_people, read_span

__all__ = ["Span", "crop_people", "read_span"]
