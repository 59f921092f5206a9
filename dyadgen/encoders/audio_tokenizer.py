"""The audio tokenizer interface: 16 kHz audio -> one token per 25 Hz frame.

``encode(wav [N]) -> LongTensor [N // 640]``, ``encode_batch``, ``num_codes`` real codes and the
padding code ``pad_id == num_codes``. Implementations: :class:`~dyadgen.encoders.whisper_vq.WhisperVQTokenizer`
(WhisperSpeech's semantic tokens, the real one) and :class:`~dyadgen.encoders.fitted.FittedTokenizer`
(log-mel + k-means, for tiny models and tests).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

import numpy as np
from einops import repeat
from torch import Tensor

from dyadgen.clock import SAMPLES_PER_FRAME
from dyadgen.config import AudioTokenizerConfig
from dyadgen.encoders.fitted import CONFIG_NAME, FittedTokenizer
from dyadgen.encoders.whisper_vq import WhisperVQTokenizer
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
    """A tokenizer from a folder written by ``save_pretrained``, a WhisperSpeech ``*.model`` file or hub
    ``repo:filename``, or a config (``kind="whisper_vq"``: ``name_or_path`` defaults to WhisperSpeech's
    medium en+pl checkpoint)."""
    cfg = spec if isinstance(spec, AudioTokenizerConfig) else AudioTokenizerConfig(name_or_path=str(spec))
    folder = Path(cfg.name_or_path)
    kind = cfg.kind
    if cfg.name_or_path.endswith(".model"):
        kind = "whisper_vq"
    elif cfg.name_or_path and (folder / CONFIG_NAME).is_file():
        kind = json.loads((folder / CONFIG_NAME).read_text()).get("kind")
    if kind == "whisper_vq":
        return WhisperVQTokenizer.load(cfg.name_or_path, whisper_name_or_path=cfg.whisper_name_or_path,
                                       batch_size=cfg.batch_size)
    if not (folder / CONFIG_NAME).is_file():
        raise UserError(f"{folder}: not an audio tokenizer folder (no {CONFIG_NAME}); "
                        "make one with `dyadgen fit-tokenizer`, or pass a WhisperSpeech *.model file")
    if kind != "fitted":
        raise UserError(f"{folder / CONFIG_NAME}: unknown tokenizer kind {kind!r}")
    return FittedTokenizer.from_pretrained(folder)


def unconditional_codes(tokenizer: AudioTokenizer, tokens: Tensor, mode: str) -> Tensor | None:
    """Guidance's unconditional audio codes for codes ``tokens`` long [P,T] under ``infer.unconditional_audio``
    ``mode``: None for "null" (the model's null code), for "silence" the tokenizer's codes of digital silence on
    both tracks [P,T]; what ``DyadGen.generate(tokens, refs, unconditional=...)`` takes. Inference and the
    training run's sample video both guide through this, so a preview draws what ``dyadgen infer`` will."""
    if mode not in ("null", "silence"):
        raise UserError(f"unconditional audio {mode!r}: choose null or silence")
    if mode == "null":
        return None
    P, T = tokens.shape
    silent = tokenizer.encode(np.zeros(T * SAMPLES_PER_FRAME, dtype=np.float32))[:T]  # [T]
    return repeat(silent, "t -> p t", p=P).to(tokens.device)  # [P,T]
