"""Corpus reading: SocioEmoDialog's layout and turn timeline, the script match, splits and emotion labels,
and the synthetic corpus (voices, cartoon faces) that stands in for it in tests.

Public reader: :func:`index_dataset` (a root -> videos with their turn timeline, clips and script
matches). Decoding a video into the two people's frames and audio is ``dyadgen.media``.
"""

from dyadgen.data.socioemodialog import index_dataset

__all__ = ["index_dataset"]
