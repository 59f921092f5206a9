"""Reading the weights of a third-party metric network (SyncNet, Inception, I3D, ArcFace, LPIPS) from a
local file, safely: safetensors, or a PyTorch file read with ``weights_only=True`` (tensors and plain
containers only, never arbitrary pickled objects)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from dyadgen.errors import UserError


def load_state_dict(path: str | os.PathLike, *, under: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a weights file as {name: tensor} on the CPU. ``under`` picks a nested dict of a
    PyTorch file (for example "state_dict"); a "module." prefix (saved from DataParallel) is dropped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any reader error is the file's problem
        raise UserError(f"{path}: not a readable safetensors or weights-only PyTorch file ({err})") from err
    if under and isinstance(state, dict) and under in state:
        state = state[under]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: holds no flat dict of tensors (found {type(state).__name__})")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_into(module: torch.nn.Module, path: str | os.PathLike, *, under: str = "") -> torch.nn.Module:
    """Load a weights file into ``module`` strictly (every key matched, every shape equal), in eval mode."""
    state = load_state_dict(path, under=under)
    missing, unexpected = module.state_dict().keys() - state.keys(), state.keys() - module.state_dict().keys()
    if missing or unexpected:
        raise UserError(f"{path}: not the weights of {type(module).__name__} "
                        f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise UserError(f"{path}: shapes do not match {type(module).__name__} ({str(err).splitlines()[-1]})") from err
    return module.eval().requires_grad_(False)
