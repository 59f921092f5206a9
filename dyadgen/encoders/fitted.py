"""A small fitted audio tokenizer for tiny models and tests: log-mel frames at 25 Hz + k-means.

One 1280-sample window (80 ms) centred on each 40 ms frame gives a log-mel vector; the vectors are
normalised with the corpus mean and std and assigned to the nearest of ``num_codes`` k-means
centroids. Exactly ``N // 640`` tokens for N samples, the same floor rule as video frames.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from transformers.audio_utils import mel_filter_bank

from dyadgen.clock import SAMPLE_RATE, SAMPLES_PER_FRAME, frames_for_samples

WINDOW = 2 * SAMPLES_PER_FRAME  # 80 ms analysis window centred on each 40 ms frame
CONFIG_NAME = "tokenizer.json"
WEIGHTS_NAME = "tokenizer.safetensors"


def mel_filters(n_mels: int, n_fft: int = WINDOW) -> Tensor:
    fb = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=60.0,
                         max_frequency=SAMPLE_RATE / 2, sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney")
    return torch.from_numpy(fb).float()  # [F, n_mels]


def log_mel_frames(wav: Tensor, filters: Tensor) -> Tensor:
    """float [N] -> log-mel [T, n_mels] with T = N // 640."""
    num_frames = frames_for_samples(wav.shape[-1])
    if num_frames == 0:
        return wav.new_zeros(0, filters.shape[1])
    half = (WINDOW - SAMPLES_PER_FRAME) // 2
    padded = torch.nn.functional.pad(wav, (half, WINDOW))  # [N + ...]
    windows = padded.unfold(0, WINDOW, SAMPLES_PER_FRAME)[:num_frames]  # [T, WINDOW]
    spectrum = torch.fft.rfft(windows * torch.hann_window(WINDOW, periodic=True), dim=-1).abs() ** 2  # [T, F]
    return torch.log10(spectrum @ filters + 1e-6)  # [T, n_mels]


class FittedTokenizer:
    """log-mel + k-means tokens at 25 Hz; ``pad_id == num_codes``."""

    kind = "fitted"

    def __init__(self, codebook: Tensor, mean: Tensor, std: Tensor):
        self.codebook = codebook.float()  # [K, n_mels] in normalised units
        self.mean, self.std = mean.float(), std.float()  # [n_mels]
        self.filters = mel_filters(codebook.shape[1])

    @property
    def num_codes(self) -> int:
        return self.codebook.shape[0]

    @property
    def pad_id(self) -> int:
        return self.num_codes

    def features(self, wav: np.ndarray | Tensor) -> Tensor:
        wav = torch.as_tensor(np.asarray(wav, np.float32))
        return (log_mel_frames(wav, self.filters) - self.mean) / self.std  # [T, n_mels]

    @torch.no_grad()
    def encode(self, wav: np.ndarray | Tensor) -> Tensor:
        """float [N] at 16 kHz -> LongTensor [N // 640]."""
        feats = self.features(wav)  # [T, n_mels]
        if feats.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long)
        return torch.cdist(feats, self.codebook).argmin(-1)  # [T]

    def encode_batch(self, wavs: list[np.ndarray | Tensor]) -> list[Tensor]:
        return [self.encode(w) for w in wavs]

    @classmethod
    def fit(cls, wavs: list[np.ndarray], num_codes: int = 128, n_mels: int = 40, *, iterations: int = 25,
            max_frames: int = 200_000, seed: int = 0) -> FittedTokenizer:
        """k-means++ then Lloyd iterations over the log-mel frames of ``wavs`` (16 kHz)."""
        filters = mel_filters(n_mels)
        feats = torch.cat([log_mel_frames(torch.as_tensor(np.asarray(w, np.float32)), filters) for w in wavs])
        gen = torch.Generator().manual_seed(seed)
        if feats.shape[0] > max_frames:
            feats = feats[torch.randperm(feats.shape[0], generator=gen)[:max_frames]]
        if feats.shape[0] < num_codes:
            raise ValueError(f"need at least {num_codes} frames to fit {num_codes} codes, got {feats.shape[0]}")
        mean, std = feats.mean(0), feats.std(0).clamp_min(1e-3)
        x = (feats - mean) / std  # [F, n_mels]
        centres = x[torch.randint(x.shape[0], (1,), generator=gen)]
        for _ in range(1, num_codes):  # k-means++
            d2 = torch.cdist(x, centres).min(-1).values ** 2
            centres = torch.cat([centres, x[torch.multinomial(d2 / d2.sum(), 1, generator=gen)]])
        for _ in range(iterations):
            assign = torch.cdist(x, centres).argmin(-1)
            sums = torch.zeros_like(centres).index_add_(0, assign, x)
            counts = torch.bincount(assign, minlength=num_codes).unsqueeze(1)
            empty = counts.squeeze(1) == 0
            centres = torch.where(empty.unsqueeze(1), centres, sums / counts.clamp_min(1))
        return cls(centres, mean, std)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"codebook": self.codebook.contiguous(), "mean": self.mean, "std": self.std},
                  str(folder / WEIGHTS_NAME))
        meta = {"kind": self.kind, "num_codes": self.num_codes, "n_mels": int(self.codebook.shape[1]),
                "sample_rate": SAMPLE_RATE, "hop": SAMPLES_PER_FRAME, "window": WINDOW}
        (folder / CONFIG_NAME).write_text(json.dumps(meta, indent=2))

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> FittedTokenizer:
        tensors = load_file(str(Path(folder) / WEIGHTS_NAME))
        return cls(tensors["codebook"], tensors["mean"], tensors["std"])
