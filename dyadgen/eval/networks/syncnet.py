"""LSE-D and LSE-C, the lip-sync scores of Wav2Lip and most talking-head papers, computed the way
syncnet_python (joonson/syncnet_python, ``SyncNetInstance.evaluate``) computes them, without its
ffmpeg round trips: the network is its ``S`` model, so the released ``syncnet_v2.model`` loads into
it, and the MFCCs are those of python_speech_features 0.6 (reimplemented here with numpy/scipy,
checked against the package by tests/eval/test_eval_syncnet.py).

What syncnet_python feeds the network, and so what this module feeds it:
- video: 25 fps face crops resized to 224x224 (cv2 bilinear), BGR channel order (cv2's; evaluate's
  BGR-to-RGB conversion was dropped in the commit that brought syncnet_v2.model, 5befaa3), pixel
  values 0..255 as floats, no mean or scale; windows of 5 frames, laid out [N, 3, 5, 224, 224]
  (channel, time, height, width).
- audio: 16 kHz mono as 16-bit integers (wavfile.read of ffmpeg's pcm_s16le), 13 MFCCs every
  10 ms, windows of 20 MFCC steps (0.2 s) laid out [N, 1, 13, 20]; window i starts at step 4 i,
  which is video frame i (4 steps of 10 ms per 40 ms frame).
"""

from __future__ import annotations

import functools
import math
import os
import typing

import cv2
import numpy as np
import scipy.fft
import torch
import torch.nn as nn
import torch.nn.functional as F

from dyadgen.eval.weights import load_into, load_state_dict

SAMPLE_RATE = 16_000
FRAME_SAMPLES = 640  # audio samples per 25 fps video frame
WINDOW_FRAMES = 5  # video frames per lip window (0.2 s)
MFCC_WINDOW = 20  # MFCC steps per audio window (0.2 s)
MFCC_PER_FRAME = 4  # MFCC steps (10 ms) per video frame (40 ms)
CROP = 224  # side of the face crop the network takes


# ---------------------------------------------------------------- network


class _NoStepCounter:
    """BatchNorm without the ``num_batches_tracked`` buffer: the released syncnet_v2.model holds no such
    keys (a public loader of that file, found through the code index, asserts exactly the 14 counters
    netcnnaud/netcnnlip.{1,5,9,12,15,19} and netfcaud/netfclip.1 are what it lacks), and
    weights.load_into wants the key sets equal. The counter only matters when training with
    momentum=None, never here."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("num_batches_tracked", None)  # a None buffer is left out of state_dict

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs) -> None:
        # Without a version in the metadata (a dict read back from a file has none), _NormBase adds a zero
        # counter to the incoming dict, which strict loading then calls unexpected; version 2 stops that.
        super()._load_from_state_dict(state_dict, prefix, {**local_metadata, "version": 2}, *args, **kwargs)


class _BatchNorm1d(_NoStepCounter, nn.BatchNorm1d):
    pass


class _BatchNorm2d(_NoStepCounter, nn.BatchNorm2d):
    pass


class _BatchNorm3d(_NoStepCounter, nn.BatchNorm3d):
    pass


class SyncNet(nn.Module):
    """syncnet_python's ``S`` (SyncNetModel.py, the 512-channel "model change" of 2019 that goes with
    syncnet_v2.model): same layers in the same nn.Sequential positions, so the parameter names are the
    released file's (netcnnaud.0.weight ... netfclip.3.bias). ``counters`` keeps BatchNorm's
    num_batches_tracked buffers, for a weights file that has them (load_syncnet decides)."""

    def __init__(self, embedding: int = 1024, counters: bool = False) -> None:
        super().__init__()
        bn1, bn2, bn3 = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d) if counters else (
            _BatchNorm1d, _BatchNorm2d, _BatchNorm3d)
        relu = functools.partial(nn.ReLU, inplace=True)
        self.netcnnaud = nn.Sequential(  # [N,1,13,20] -> [N,512,1,1]
            nn.Conv2d(1, 64, kernel_size=3, padding=1), bn2(64), relu(),
            nn.MaxPool2d(kernel_size=1, stride=1),  # a no-op, kept for the layer indices
            nn.Conv2d(64, 192, kernel_size=3, padding=1), bn2(192), relu(),
            nn.MaxPool2d(kernel_size=3, stride=(1, 2)),  # -> 11 x 9
            nn.Conv2d(192, 384, kernel_size=3, padding=1), bn2(384), relu(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), bn2(256), relu(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), bn2(256), relu(),
            nn.MaxPool2d(kernel_size=3, stride=2),  # -> 5 x 4
            nn.Conv2d(256, 512, kernel_size=(5, 4)), bn2(512), nn.ReLU(),
        )
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), bn1(512), nn.ReLU(), nn.Linear(512, embedding))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), bn1(512), nn.ReLU(), nn.Linear(512, embedding))
        self.netcnnlip = nn.Sequential(  # [N,3,5,224,224] -> [N,512,1,1,1]
            nn.Conv3d(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2)), bn3(96), relu(),  # -> 1 x 109 x 109
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),  # -> 54
            nn.Conv3d(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), bn3(256), relu(),  # 26
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),  # -> 13
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)), bn3(256), relu(),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)), bn3(256), relu(),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)), bn3(256), relu(),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),  # -> 6
            nn.Conv3d(256, 512, kernel_size=(1, 6, 6)), bn3(512), relu(),  # -> 1
        )

    def audio_embedding(self, mfcc: torch.Tensor) -> torch.Tensor:
        """MFCC windows float [N,1,13,20] -> [N,1024] (syncnet_python's forward_aud)."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))  # [N,512] -> [N,1024]

    def lip_embedding(self, frames: torch.Tensor) -> torch.Tensor:
        """5-frame windows float [N,3,5,224,224], BGR 0..255 -> [N,1024] (syncnet_python's forward_lip)."""
        return self.netfclip(self.netcnnlip(frames).flatten(1))  # [N,512] -> [N,1024]


def load_syncnet(path: str | os.PathLike) -> SyncNet:
    """SyncNet with the weights of ``path``, in eval mode, frozen: syncnet_v2.model itself or a safetensors
    copy of it. syncnet_python reads that file with a bare torch.load and copies ``loaded.items()`` into
    the model's state dict, so it is a plain {name: tensor} dict; a public loader reads it with
    weights_only=True (not checked here: the file was not at hand), which is how load_into reads it.
    Published sha256 of the file (from a public download script, also not checked here):
    961e8696f888fce4f3f3a6c3d5b3267cf5b343100b238e79b2659bff2c605442."""
    # The released file has no BatchNorm counters; a copy saved from a stock nn.BatchNorm model would.
    counters = any(k.endswith("num_batches_tracked") for k in load_state_dict(path))
    return typing.cast(SyncNet, load_into(SyncNet(counters=counters), path))


# ---------------------------------------------------------------- audio features


def pcm16(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] -> int16 samples as ffmpeg's pcm_s16le writes them (x * 32768, rounded,
    clipped); int16 passes through. The scale matters: it shifts the log-energy coefficient c0."""
    audio = np.asarray(audio)
    if audio.dtype == np.int16:
        return audio
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"pcm16: audio must be float in [-1, 1] or int16, got {audio.dtype}")
    return np.clip(np.rint(audio.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def _mel_filters(nfilt: int = 26, nfft: int = 512, rate: int = SAMPLE_RATE) -> np.ndarray:
    """python_speech_features' triangular mel filterbank [nfilt, nfft//2+1], band edges snapped to FFT bins."""
    top = 2595.0 * np.log10(1.0 + (rate / 2) / 700.0)
    hz = 700.0 * (10.0 ** (np.linspace(0.0, top, nfilt + 2) / 2595.0) - 1.0)
    edge = np.floor((nfft + 1) * hz / rate)  # bin of each band edge
    bins = np.arange(nfft // 2 + 1)[None, :]  # [1, nfft//2+1]
    lo, mid, hi = edge[:-2, None], edge[1:-1, None], edge[2:, None]  # [nfilt, 1] each
    rise = np.where((bins >= lo) & (bins < mid), (bins - lo) / np.maximum(mid - lo, 1), 0.0)
    fall = np.where((bins >= mid) & (bins < hi), (hi - bins) / np.maximum(hi - mid, 1), 0.0)
    return rise + fall


def mfcc(audio: np.ndarray) -> np.ndarray:
    """16 kHz mono (float in [-1, 1], or int16) -> MFCCs float64 [frames, 13], equal to
    ``python_speech_features.mfcc(pcm16(audio), 16000)`` with its defaults, as syncnet_python calls it:
    25 ms frames every 10 ms (1 + ceil((N - 400) / 160) frames, the last zero-padded; about 100 a
    second), no window, pre-emphasis 0.97, 512-point power spectrum, 26 mel filters, orthonormal DCT-II,
    13 cepstra liftered with L=22, and c0 replaced by the log of the frame's total energy."""
    x = pcm16(audio).astype(np.float64)
    if x.size == 0:
        raise ValueError("mfcc: empty audio")
    x = np.concatenate([x[:1], x[1:] - 0.97 * x[:-1]])  # pre-emphasis
    flen, step, nfft = 400, 160, 512
    n = 1 if x.size <= flen else 1 + math.ceil((x.size - flen) / step)
    x = np.pad(x, (0, (n - 1) * step + flen - x.size))
    frames = np.lib.stride_tricks.sliding_window_view(x, flen)[::step]  # [n, 400]
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft  # [n, 257]
    eps = np.finfo(float).eps
    energy = power.sum(1)  # [n]
    energy = np.where(energy == 0, eps, energy)
    bands = power @ _mel_filters().T  # [n, 26]
    bands = np.where(bands == 0, eps, bands)
    cep = scipy.fft.dct(np.log(bands), type=2, axis=1, norm="ortho")[:, :13]  # [n, 13]
    cep = cep * (1.0 + 11.0 * np.sin(np.pi * np.arange(13) / 22.0))  # lifter, L = 22
    cep[:, 0] = np.log(energy)
    return cep


# ---------------------------------------------------------------- the scores


def _offset_distances(lip: torch.Tensor, aud: torch.Tensor, vshift: int) -> torch.Tensor:
    """syncnet_python's calc_pdist: [W, 2 vshift + 1], entry (i, k) = distance between lip window i and audio
    window i + k - vshift, the audio padded with vshift zero embeddings at each end (so near the ends a
    window is compared with zeros, as there); pairwise_distance's eps=1e-6 included."""
    win = 2 * vshift + 1
    padded = F.pad(aud, (0, 0, vshift, vshift))  # [W + 2 vshift, D]
    idx = torch.arange(lip.shape[0])[:, None] + torch.arange(win)[None, :]  # [W, win]
    pairs = lip[:, None, :].expand(-1, win, -1)  # [W, win, D]
    return F.pairwise_distance(pairs.reshape(-1, lip.shape[1]), padded[idx].reshape(-1, lip.shape[1])).view(-1, win)


def lse(face_frames: np.ndarray, audio: np.ndarray, net: SyncNet, vshift: int = 15, batch: int = 20,
        rgb: bool = True) -> tuple[float, float, int]:
    """(LSE-D, LSE-C, offset) of a clip, as syncnet_python's evaluate computes (min dist, confidence, offset).

    face_frames uint8 [T,H,W,3] at 25 fps, already cropped around the face (syncnet_python's pipeline crop,
    the caller's step: a square of side 2.8 s, s half the face box's longer side, centred on the box
    across, from s above the box centre down, padded with gray 110), RGB unless ``rgb=False`` (then
    BGR); audio 16 kHz mono, float in [-1, 1] or int16. Each frame is resized to 224x224 (cv2 bilinear),
    as Wav2Lip's scoring copy of evaluate does; syncnet_python also passes frames through XVID and JPEG,
    not done here.

    W = min(T, floor(len(audio) / 640)) - 5 windows (syncnet_python's count, one fewer than would fit).
    The mean over windows of the lip-to-audio distance at each offset gives a curve over 2 vshift + 1
    offsets: LSE-D is its minimum, LSE-C its median minus that minimum. The offset is vshift minus the
    index of the minimum (syncnet_python's "AV offset"): at offset o, video frame i matches the audio
    of frame i - o, so o > 0 means the sound comes o frames (40 ms each) before the lips that make it,
    o < 0 that it comes after them; 0 is in sync.
    """
    frames = np.asarray(face_frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"lse: face_frames must be uint8 [T,H,W,3], got {frames.dtype} {frames.shape}")
    pcm = pcm16(audio)
    windows = min(len(frames), len(pcm) // FRAME_SAMPLES) - WINDOW_FRAMES
    if windows < 1:
        raise ValueError(f"lse: {len(frames)} frames and {len(pcm)} samples give no window (need 6 frames)")
    if rgb:
        frames = frames[..., ::-1]  # the network was trained on cv2's BGR
    crops = np.stack([cv2.resize(np.ascontiguousarray(f), (CROP, CROP)) for f in frames])  # [T,224,224,3]
    cep = torch.from_numpy(np.ascontiguousarray(mfcc(pcm).T, dtype=np.float32))  # [13, steps]
    device = next(net.parameters()).device
    net.eval()
    lip, aud = [], []
    with torch.inference_mode():
        for start in range(0, windows, batch):
            ids = range(start, min(windows, start + batch))
            clip = torch.from_numpy(np.stack([crops[i:i + WINDOW_FRAMES] for i in ids]))  # [B,5,224,224,3] uint8
            clip = clip.permute(0, 4, 1, 2, 3).float().contiguous()  # [B,3,5,224,224], 0..255
            lip.append(net.lip_embedding(clip.to(device)).cpu())
            steps = torch.stack([cep[:, MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + MFCC_WINDOW] for i in ids])  # [B,13,20]
            aud.append(net.audio_embedding(steps[:, None].contiguous().to(device)).cpu())  # [B,1,13,20] -> [B,1024]
        curve = _offset_distances(torch.cat(lip), torch.cat(aud), vshift).mean(0)  # [2 vshift + 1]
    lse_d, best = torch.min(curve, 0)
    lse_c = torch.median(curve) - lse_d
    return float(lse_d), float(lse_c), int(vshift - best)
