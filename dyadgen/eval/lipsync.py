"""Lip sync of one person: their mouth against their OWN track, on the frames where they speak.

Always available: the correlation of the measured mouth opening with the speech envelope, and the
audio-video offset (frames) that maximises it. With SyncNet weights: LSE-D and LSE-C as syncnet_python
scores a clip - the whole window, one offset curve (dyadgen.eval.networks.syncnet) - and, under their own
names, the same on each run of at least a second of speaking frames, weighted by length.
"""

from __future__ import annotations

import cv2
import numpy as np

from dyadgen.clock import SAMPLES_PER_FRAME
from dyadgen.eval.networks.syncnet import lse as run_lse
from dyadgen.eval.stats import pearson

MOUTH_CORR = ("Pearson correlation of the mouth opening (face landmarks) with the person's own speech "
              "envelope (per-frame RMS), over the frames where they speak; higher is better")
OFFSET = ("audio-video offset in frames (within +-15) that maximises that correlation; positive = the "
          "mouth lags the voice; |offset| near 0 is better")
LSE_D = ("LSE-D: SyncNet distance of mouth and own audio at the offset (within +-15) where the clip's mean "
         "distance is least, the whole window as one clip; lower is better")
LSE_C = "LSE-C: SyncNet confidence of the whole window, median minus minimum of its mean distance over offsets"
LSE_FOLLOWS = "joonson/syncnet_python SyncNetInstance.py (evaluate)"
LSE_DIFFERS = ("crops from the tracked landmarks' median box (syncnet_python's pipeline tracks with S3FD); frames "
               "resized in memory without its XVID/JPEG round trip")
LSE_RUN_D = ("LSE-D per speaking run (DyadGen): syncnet_python's LSE-D on each run of at least 1 s of the "
             "person's speech, weighted by run length; lower is better")
LSE_RUN_C = "LSE-C per speaking run (DyadGen): as lse_run_d, syncnet_python's confidence; higher is better"
MAX_OFFSET = 15
MIN_RUN = 25  # frames: SyncNet is scored on runs of speech of at least a second


def offset_correlation(mouth: np.ndarray, envelope: np.ndarray, speaks: np.ndarray,
                       max_offset: int = MAX_OFFSET) -> tuple[float | None, int | None]:
    """(correlation at offset 0, the offset maximising it) of mouth [T] against envelope [T] on speaking
    frames: mouth[t + o] is paired with envelope[t]."""
    T = len(mouth)
    moving = mouth[speaks & np.isfinite(mouth)]
    if moving.size >= 3 and moving.std() < 1e-9:
        return 0.0, None  # a mouth that never moves (the static baseline) has no sync: 0, not undefined
    at_zero = pearson(mouth[speaks], envelope[speaks])
    best, best_o = None, None
    for o in range(-max_offset, max_offset + 1):
        t = np.flatnonzero(speaks)
        t = t[(t + o >= 0) & (t + o < T)]
        r = pearson(mouth[t + o], envelope[t])
        if r is not None and (best is None or r > best):
            best, best_o = r, o
    return at_zero, best_o


def speaking_runs(speaks: np.ndarray, min_run: int = MIN_RUN) -> list[tuple[int, int]]:
    """[start, stop) of each run of True at least ``min_run`` long."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], speaks.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= min_run]


def face_crops(frames: np.ndarray, landmarks: np.ndarray, size: int = 224) -> np.ndarray:
    """uint8 [T,H,W,3] -> uint8 [T,size,size,3]: syncnet_python's crop of a face track (with s half the
    face box's longer side: rows from s above the box centre to 1.8 s below, columns 1.4 s either side,
    grey 110 outside the image), on the landmarks' box, one box for the run so it does not jitter."""
    lm = landmarks[np.isfinite(landmarks).all(axis=(1, 2))]
    if len(lm) == 0:
        lm = np.array([[[0, 0], [frames.shape[2], frames.shape[1]]]], np.float32)
    lo, hi = np.median(lm.min(axis=1), axis=0), np.median(lm.max(axis=1), axis=0)  # [2] each
    (cx, cy), s = (lo + hi) / 2, float((hi - lo).max()) / 2
    pad = int(np.ceil(2.8 * s))
    y0, y1, x0, x1 = (int(v) + pad for v in (cy - s, cy + 1.8 * s, cx - 1.4 * s, cx + 1.4 * s))
    out = []
    for f in frames:
        g = cv2.copyMakeBorder(f, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(110, 110, 110))
        out.append(cv2.resize(g[y0:y1, x0:x1], (size, size)))
    return np.stack(out)  # [T,size,size,3]


def lse_clip(net, frames: np.ndarray, landmarks: np.ndarray, audio: np.ndarray) -> tuple[float | None, float | None]:
    """(LSE-D, LSE-C) of the whole clip, as syncnet_python scores one: frames uint8 [T,H,W,3], landmarks
    [T,68,2], the person's own track [T * 640]."""
    if len(frames) < 6:
        return None, None
    dist, conf, _ = run_lse(face_crops(frames, landmarks), audio, net)
    return float(dist), float(conf)


def lse_runs(net, frames: np.ndarray, landmarks: np.ndarray, audio: np.ndarray, speaks: np.ndarray
             ) -> tuple[float | None, float | None]:
    """(LSE-D, LSE-C) over the speaking runs, weighted by their length; (None, None) without a run."""
    d, c, w = [], [], []
    for a, b in speaking_runs(speaks):
        dist, conf, _ = run_lse(face_crops(frames[a:b], landmarks[a:b]),
                                audio[a * SAMPLES_PER_FRAME: b * SAMPLES_PER_FRAME], net)
        d.append(dist), c.append(conf), w.append(b - a)
    if not w:
        return None, None
    return float(np.average(d, weights=w)), float(np.average(c, weights=w))
