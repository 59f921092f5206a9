"""openai-whisper's log-mel front end, bit for bit: librosa's slaney mel filters and the STFT
log-mel with Whisper's floor and scaling (what WhisperVQ's encoder reads)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dyadgen.clock import SAMPLE_RATE

N_FFT, HOP = 400, 160  # openai-whisper's STFT at 16 kHz: 25 ms window, 10 ms hop


def _hz_to_mel(freqs: np.ndarray) -> np.ndarray:
    """librosa's slaney mel scale (linear below 1 kHz, logarithmic above), float64."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    mels = freqs / f_sp
    log_t = freqs >= min_log_hz
    mels[log_t] = min_log_hz / f_sp + np.log(freqs[log_t] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    freqs = f_sp * mels
    log_t = mels >= min_log_hz / f_sp
    freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_hz / f_sp))
    return freqs


def mel_filters(n_mels: int, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> Tensor:
    """``librosa.filters.mel(sr, n_fft, n_mels)`` (slaney scale and norm, float32) -> [n_mels, n_fft//2+1].

    Computed in the same order and precision as librosa, so it equals openai-whisper's ``mel_filters.npz``
    bit for bit (transformers' ``mel_filter_bank`` differs in the last bit of some entries).
    """
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    edges = _hz_to_mel(np.array([0.0, sample_rate / 2.0]))
    mel_f = _mel_to_hz(np.linspace(edges[0], edges[1], n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2: n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]  # float32 *= float64, as librosa
    return torch.from_numpy(weights)


def log_mel_spectrogram(audio: Tensor, filters: Tensor) -> Tensor:
    """openai-whisper's ``log_mel_spectrogram`` (padding 0): float [..., N] -> [..., n_mels, N // 160].

    The floor ``max - 8`` uses the maximum over the whole input, as openai-whisper does.
    """
    window = torch.hann_window(N_FFT, device=audio.device)
    stft = torch.stft(audio, N_FFT, HOP, window=window, return_complex=True)
    magnitudes = stft[..., :-1].abs() ** 2
    mel_spec = filters.to(audio.device) @ magnitudes
    log_spec = torch.clamp(mel_spec, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0
