"""Identity: how much each generated frame still shows the person of the reference frame.

Offline, always: cosine similarity of dlib's 128-d face descriptors (face-recognition-models' ResNet).
With ArcFace weights (insightface iresnet, a local file): CSIM, the cosine similarity of ArcFace
embeddings of 5-point-aligned 112x112 faces, the figure papers report.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from dyadgen.eval.face import models_folder
from dyadgen.eval.networks import run_on
from dyadgen.eval.networks.arcface import align_112, landmarks5_from_68

DLIB_SIM = ("identity: cosine similarity of dlib face descriptors of the frame and of the person's "
            "reference frame (one frame a second); higher is better")
CSIM = "CSIM: cosine similarity of ArcFace embeddings of the frame and the reference; higher is better"
EVERY = 25  # frames between identity measurements: one a second (the embedders are the slow part)


@lru_cache(maxsize=1)
def _embedder():
    import dlib  # optional (the eval extra): imported on first use


    return dlib, dlib.face_recognition_model_v1(str(models_folder() / "dlib_face_recognition_resnet_model_v1.dat"))


def _descriptor(image: np.ndarray, lm: np.ndarray) -> np.ndarray:
    dlib, net = _embedder()
    x0, y0 = np.floor(lm.min(axis=0)).astype(int)
    x1, y1 = np.ceil(lm.max(axis=0)).astype(int)
    shape = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
                                       [dlib.point(int(round(x)), int(round(y))) for x, y in lm])
    return np.array(net.compute_face_descriptor(np.ascontiguousarray(image), shape), np.float32)  # [128]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-9))


def similarity_to_reference(frames: np.ndarray, landmarks: np.ndarray, reference: np.ndarray,
                            reference_landmarks: np.ndarray, every: int = EVERY) -> np.ndarray:
    """float32 [T]: dlib-descriptor cosine similarity of frames [T,H,W,3] to the reference [H,W,3] on
    every ``every``-th frame with landmarks [T,68,2] (NaN elsewhere)."""
    out = np.full(len(frames), np.nan, np.float32)
    if not np.isfinite(reference_landmarks).all():
        return out
    ref = _descriptor(reference, reference_landmarks)
    for t in range(0, len(frames), every):
        if np.isfinite(landmarks[t]).all():
            out[t] = _cosine(_descriptor(frames[t], landmarks[t]), ref)
    return out


def csim_to_reference(net, frames: np.ndarray, landmarks: np.ndarray, reference: np.ndarray,
                      reference_landmarks: np.ndarray, every: int = EVERY) -> np.ndarray:
    """float32 [T]: ArcFace cosine similarity to the reference on every ``every``-th frame (NaN elsewhere)."""
    out = np.full(len(frames), np.nan, np.float32)
    if not np.isfinite(reference_landmarks).all():
        return out
    picks = [t for t in range(0, len(frames), every) if np.isfinite(landmarks[t]).all()]
    faces = [align_112(reference, landmarks5_from_68(reference_landmarks))]
    faces += [align_112(frames[t], landmarks5_from_68(landmarks[t])) for t in picks]
    x = torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float() / 255  # [1+n,3,112,112]
    with torch.inference_mode():
        emb = torch.nn.functional.normalize(run_on(net, x), dim=1).numpy()  # [1+n,512]
    out[picks] = emb[1:] @ emb[0]
    return out
