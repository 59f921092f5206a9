"""Frame quality against ground truth, per frame: PSNR and SSIM (torchmetrics), LPIPS when its AlexNet
weights are given (dyadgen.eval.networks.lpips)."""

from __future__ import annotations

import numpy as np
import torch

PSNR = "PSNR (dB) of each generated frame against the ground-truth frame, 8-bit RGB; mean over frames"
SSIM = "SSIM (Gaussian window 11, sigma 1.5) of each generated frame against the ground-truth frame"
LPIPS = "LPIPS v0.1 (AlexNet) distance of each generated frame to the ground-truth frame; lower is better"


def _float(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255  # [T,3,H,W]


def psnr_ssim(generated: np.ndarray, truth: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [T,H,W,3] each -> PSNR [T], SSIM [T] (float32)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    psnr, ssim = [], []
    for i in range(0, len(generated), batch):
        a, b = _float(generated[i: i + batch]), _float(truth[i: i + batch])  # [t,3,H,W]
        psnr.append(peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3)))
        ssim.append(structural_similarity_index_measure(a, b, data_range=1.0, reduction="none"))
    return torch.cat(psnr).clamp(max=100).numpy(), torch.cat(ssim).numpy()


def lpips(net, generated: np.ndarray, truth: np.ndarray, batch: int = 16) -> np.ndarray:
    """uint8 [T,H,W,3] each -> LPIPS [T] with a loaded LPIPS network."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(generated), batch):
            device = next(net.parameters()).device
            out.append(net(_float(generated[i: i + batch]).to(device), _float(truth[i: i + batch]).to(device)))
    return torch.cat(out).float().cpu().numpy()
