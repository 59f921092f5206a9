"""Where inference, evaluation and preprocessing run, and in what precision: ``--device`` and ``--dtype``.

``auto`` is the GPU when there is one. The dtype ``auto`` is bf16 on a GPU that runs it, fp16 on an older
GPU, and fp32 on the CPU. A request the machine cannot honour is a one-line error, not a silent
fallback.
"""

from __future__ import annotations

import torch

from dyadgen.errors import UserError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICE_CHOICES = ("auto", "cpu", "cuda")
DTYPE_CHOICES = ("auto", *DTYPES)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device (choose auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: no CUDA device is available on this machine (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise UserError(f"--device {name}: only cpu and cuda are supported")
    return device


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """The compute dtype for ``device``; fp16 on the CPU and bf16 on a GPU without it are refused."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name not in DTYPES:
        raise UserError(f"--dtype {name}: choose auto, {', '.join(DTYPES)}")
    dtype = DTYPES[name]
    if device.type == "cpu" and dtype == torch.float16:
        raise UserError("--dtype fp16: the CPU does not run fp16 convolutions and attention; use bf16 or fp32")
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise UserError(f"--dtype bf16: {torch.cuda.get_device_name(device)} does not support bf16; use fp16 or fp32")
    return dtype
