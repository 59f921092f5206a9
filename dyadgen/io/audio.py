"""Read, check, resample and write audio. Every problem is a one-line UserError naming the file."""

from __future__ import annotations

import os
from math import gcd
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from dyadgen.clock import SAMPLE_RATE
from dyadgen.errors import UserError


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling along the last axis (windowed-sinc low-pass; no torchaudio needed)."""
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)

    g = gcd(int(sr_in), int(sr_out))
    return resample_poly(x, sr_out // g, sr_in // g, axis=-1).astype(np.float32)


def _read_any(path: Path) -> tuple[np.ndarray, int]:
    """(samples [C,N] float32, sample rate) through soundfile, then PyAV for mp3/m4a/anything else."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [N,C]
        return data.T.copy(), int(sr)  # [C,N]
    except (sf.LibsndfileError, RuntimeError, TypeError):
        pass

    try:
        with av.open(str(path)) as box:
            if not box.streams.audio:
                raise UserError(f"{path}: not an audio file (no audio stream)")
            stream = box.streams.audio[0]
            sr = stream.codec_context.sample_rate
            chunks = [frame.to_ndarray().astype(np.float32) for frame in box.decode(stream)]
            channels = stream.codec_context.channels
    except UserError:
        raise
    except Exception as err:  # PyAV raises many error types for garbage input
        raise UserError(f"{path}: not a readable audio file ({type(err).__name__})") from None
    if not chunks:
        return np.zeros((channels or 1, 0), np.float32), int(sr or SAMPLE_RATE)
    # packed formats come as [1, N*C] interleaved, planar ones as [C, N]
    fixed = [c.reshape(-1, channels).T if c.shape[0] == 1 and channels > 1 else c for c in chunks]
    data = np.concatenate(fixed, axis=1)
    if np.issubdtype(chunks[0].dtype, np.integer) or np.abs(data).max(initial=0) > 1.5:
        data = data / 32768.0
    return data.astype(np.float32), int(sr)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """(samples float32 [C,N], sample rate) at the file's own rate; one-line UserErrors for files
    that are missing, empty, folders or not audio."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file")
    data, sr = _read_any(path)
    if data.shape[-1] == 0:
        raise UserError(f"{path}: contains no audio samples")
    return data, sr


def load_audio(path: str | os.PathLike, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A mono track as float32 [N] at ``sample_rate``. A stereo file is an error (use load_stereo)."""
    data, sr = read_audio(path)
    if data.shape[0] != 1:
        raise UserError(f"{path}: has {data.shape[0]} channels; expected a mono track "
                        "(for one stereo file with a person per channel use --dialogue)")
    return resample(data[0], sr, sample_rate)


def read_stereo(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A two-channel file as (float32 [2,N], its own sample rate); channel 0 = left person."""
    data, sr = read_audio(path)
    if data.shape[0] != 2:
        raise UserError(f"{path}: has {data.shape[0]} channel(s); expected a stereo file (left, right)")
    return data, sr


def load_stereo(path: str | os.PathLike, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A two-channel file as float32 [2,N] (channel 0 = left person) at ``sample_rate``."""
    data, sr = read_stereo(path)
    return resample(data, sr, sample_rate)


def write_wav(path: str | os.PathLike, x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float audio [N] or [C,N] as 16-bit PCM wav, atomically (tmp file then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    data = np.asarray(x, np.float32)
    sf.write(str(tmp), data.T if data.ndim == 2 else data, sample_rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)
