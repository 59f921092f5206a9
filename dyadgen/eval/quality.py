"""Frame quality against ground truth, per frame: PSNR, SSIM as Wang et al. define it (scikit-image's
``structural_similarity``), LPIPS when its AlexNet weights are given (dyadgen.eval.networks.lpips)."""

from __future__ import annotations

import numpy as np
import torch

PSNR = "PSNR (dB) of each generated frame against the ground-truth frame, 8-bit RGB; mean over frames"
SSIM = ("SSIM (Gaussian window 11, sigma 1.5, population covariances, K1 0.01, K2 0.03) of each generated frame "
        "against the ground-truth frame, the map's mean without the 5-pixel border the window does not cover, "
        "per channel then averaged (Wang et al. 2004)")
SSIM_FOLLOWS = "scikit-image skimage/metrics/_structural_similarity.py (gaussian_weights=True, sigma=1.5, " \
               "use_sample_covariance=False, data_range=1)"
LPIPS = "LPIPS v0.1 (AlexNet) distance of each generated frame to the ground-truth frame; lower is better"
SSIM_BORDER = 5  # (11 - 1) // 2: where the window reaches past the image, left out as Wang et al. and skimage do


def _float(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255  # [T,3,H,W]


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[N,C,H,W] in [0, 1] each -> SSIM [N]: torchmetrics' Gaussian SSIM map, its border cropped (torchmetrics
    >= 1.5 averages the reflect-padded border in; scikit-image and the paper do not)."""
    # optional (the eval extra): imported on first use
    from torchmetrics.functional.image import structural_similarity_index_measure

    _, full = structural_similarity_index_measure(a, b, data_range=1.0, reduction="none",
                                                  return_full_image=True)  # full: [N,C,H,W]
    p = SSIM_BORDER
    return full[..., p:-p, p:-p].mean(dim=(1, 2, 3)).float()


def psnr_ssim(generated: np.ndarray, truth: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [T,H,W,3] each -> PSNR [T], SSIM [T] (float32)."""
    # optional (the eval extra): imported on first use
    from torchmetrics.functional.image import peak_signal_noise_ratio

    psnr, out = [], []
    for i in range(0, len(generated), batch):
        a, b = _float(generated[i: i + batch]), _float(truth[i: i + batch])  # [t,3,H,W]
        psnr.append(peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3)))
        out.append(ssim(a, b))
    return torch.cat(psnr).clamp(max=100).numpy(), torch.cat(out).numpy()


def lpips(net, generated: np.ndarray, truth: np.ndarray, batch: int = 16) -> np.ndarray:
    """uint8 [T,H,W,3] each -> LPIPS [T] with a loaded LPIPS network."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(generated), batch):
            device = next(net.parameters()).device
            out.append(net(_float(generated[i: i + batch]).to(device), _float(truth[i: i + batch]).to(device)))
    return torch.cat(out).float().cpu().numpy()
