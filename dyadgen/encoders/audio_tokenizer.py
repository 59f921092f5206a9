"""The audio tokenizer interface: 16 kHz audio -> one token per 25 Hz frame.

``encode(wav [N]) -> LongTensor [N // 640]``, ``encode_batch``, ``num_codes`` real codes and the
padding code ``pad_id == num_codes``. Implementations: :class:`~dyadgen.encoders.fitted.FittedTokenizer`
(log-mel + k-means, for tiny models and tests).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

import numpy as np
from torch import Tensor

from dyadgen.config import AudioTokenizerConfig
from dyadgen.errors import UserError


class AudioTokenizer(Protocol):
    kind: str

    @property
    def num_codes(self) -> int: ...

    @property
    def pad_id(self) -> int: ...

    def encode(self, wav: np.ndarray | Tensor) -> Tensor: ...

    def encode_batch(self, wavs: list[np.ndarray | Tensor]) -> list[Tensor]: ...

    def save_pretrained(self, folder: str | os.PathLike) -> None: ...


def load_audio_tokenizer(spec: str | os.PathLike | AudioTokenizerConfig) -> AudioTokenizer:
    """A tokenizer from a folder written by ``save_pretrained`` or from a config."""
    from dyadgen.encoders.fitted import CONFIG_NAME, FittedTokenizer

    cfg = spec if isinstance(spec, AudioTokenizerConfig) else AudioTokenizerConfig(name_or_path=str(spec))
    if cfg.kind == "whisper_vq":
        raise UserError(f"{cfg.name_or_path}: the WhisperVQ tokenizer is not part of this release yet; "
                        "use a fitted tokenizer (dyadgen fit-tokenizer)")
    folder = Path(cfg.name_or_path)
    if not (folder / CONFIG_NAME).is_file():
        raise UserError(f"{folder}: not an audio tokenizer folder (no {CONFIG_NAME}); "
                        "make one with `dyadgen fit-tokenizer`")
    kind = json.loads((folder / CONFIG_NAME).read_text()).get("kind")
    if kind != "fitted":
        raise UserError(f"{folder / CONFIG_NAME}: unknown tokenizer kind {kind!r}")
    return FittedTokenizer.from_pretrained(folder)
