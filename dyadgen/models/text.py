"""Text prompts for the backbone: a byte-level vocabulary for tiny presets, Qwen's tokenizer for real ones."""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import AutoTokenizer

BYTE_PAD = 256  # byte ids are 0..255; the tiny vocabulary holds at least 257 entries


def byte_ids(texts: list[str | None], length: int) -> Tensor:
    """UTF-8 bytes of each text, cut or padded with BYTE_PAD to ``length``: long [B, length]."""
    out = torch.full((len(texts), length), BYTE_PAD, dtype=torch.long)
    for i, text in enumerate(texts):
        data = list((text or "").encode("utf-8"))[:length]
        if data:
            out[i, : len(data)] = torch.tensor(data)
    return out


class QwenText:
    """Qwen2.5's own tokenizer (loaded from the backbone's folder or hub name), padded to ``length``."""

    def __init__(self, name_or_path: str):
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        except (OSError, ValueError) as err:
            raise ValueError(f"{name_or_path}: no text tokenizer there or in the local Hugging Face cache "
                             f"({str(err).splitlines()[0][:120]})") from None
        self.pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def save_pretrained(self, folder) -> None:
        self.tokenizer.save_pretrained(str(folder))

    def __call__(self, texts: list[str | None], length: int) -> Tensor:
        out = torch.full((len(texts), length), self.pad, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = self.tokenizer(text or "", add_special_tokens=False)["input_ids"][:length]
            if ids:
                out[i, : len(ids)] = torch.tensor(ids)
        return out
