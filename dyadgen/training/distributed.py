"""How training runs across processes: the accelerate Accelerator for one process, DDP or FSDP2
(also on CPU processes over gloo), and the few collectives the loop needs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import (
    DistributedDataParallelKwargs,
    DistributedType,
    FullyShardedDataParallelPlugin,
    ProjectConfiguration,
)
from torch import nn

from dyadgen.compat import fsdp_on_cpu
from dyadgen.config import DyadGenConfig
from dyadgen.errors import UserError


def make_accelerator(cfg: DyadGenConfig) -> Any:
    tc = cfg.train
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        raise UserError("DeepSpeed is not supported by this trainer (its EMA, exact resume and non-finite step "
                        "skipping are tested under DDP and FSDP2 only): launch with "
                        "configs/accelerate/fsdp.yaml or configs/accelerate/ddp.yaml")
    precision: str | None = tc.mixed_precision
    if precision == "auto":
        # a launcher config (ACCELERATE_MIXED_PRECISION) decides; alone: bf16 on a GPU, fp32 on the CPU
        precision = None if "ACCELERATE_MIXED_PRECISION" in os.environ else (
            "bf16" if torch.cuda.is_available() else "no")
    log_with = None if tc.tracker == "none" else tc.tracker
    if tc.tracker == "wandb":
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise UserError("train.tracker=wandb: wandb is not installed (pip install wandb)") from None
    project = ProjectConfiguration(project_dir=tc.output_dir, logging_dir=str(Path(tc.output_dir) / "logs"))
    # Every trainable part takes part in every step (condition dropout swaps inputs, never skips a
    # module), so DDP need not search for unused parameters; a model change that breaks this is
    # caught by the test that every trainable parameter gets a gradient.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=tc.find_unused_parameters)
    # Several processes and no GPU: accelerate only picks gloo on the CPU when told to (otherwise each
    # process would train alone and all of them would write the same files).
    cpu = "LOCAL_RANK" in os.environ and not torch.cuda.is_available()
    fsdp = fsdp_plugin()
    accelerator = Accelerator(cpu=cpu, mixed_precision=precision, gradient_accumulation_steps=tc.grad_accum,
                              log_with=log_with, project_config=project, kwargs_handlers=[ddp], fsdp_plugin=fsdp)
    if fsdp is not None and cpu:
        _fsdp_on_cpu(accelerator, fsdp)
    return accelerator


def fsdp_plugin() -> Any:
    """The FSDP2 plugin an FSDP launcher config asks for (its FSDP_* settings), else None."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() != "true":
        return None

    plugin = FullyShardedDataParallelPlugin()
    if plugin.fsdp_version != 2:
        raise UserError(f"fsdp_version={plugin.fsdp_version}: this trainer runs FSDP2 only (fully_shard, sharded "
                        "EMA); set fsdp_version: 2 in the accelerate config")
    return plugin


def _fsdp_on_cpu(accelerator: Any, plugin: Any) -> None:
    """accelerate picks FSDP only on accelerators; on CPU processes (gloo) it would silently fall back
    to DDP. FSDP2 itself runs there, so switch the state over (dyadgen.compat.fsdp_on_cpu)."""
    if accelerator.distributed_type != DistributedType.MULTI_CPU:
        return
    fsdp_on_cpu(accelerator, plugin)
    if accelerator.mixed_precision != "no":
        plugin.set_mixed_precision(accelerator.mixed_precision)


def strategy(accelerator: Any) -> str:
    """How parameters are spread over processes, for the start-up line: FSDP2, DDP or single."""
    if is_fsdp(accelerator):
        return "FSDP2, sharded parameters"
    return "DDP" if accelerator.num_processes > 1 else "single process"


def is_fsdp(accelerator: Any) -> bool:
    return accelerator.distributed_type == DistributedType.FSDP


def global_counts(micro: list[Any], accelerator: Any, bad: int) -> tuple[int, int, int]:
    """Samples and audio tokens (both people, valid frames) in this step, and the distinct bad
    training samples found so far, over all processes (ranks read disjoint samples)."""
    local = torch.tensor([sum(int(b.tokens.shape[0]) for b in micro),  # [3]
                          sum(int(b.mask.sum()) * int(b.tokens.shape[1]) for b in micro), bad],
                         device=accelerator.device)
    total = accelerator.reduce(local, reduction="sum")
    return int(total[0]), int(total[1]), int(total[2])


def all_agree(accelerator: Any, ok: bool) -> bool:
    """True on every process when every process passes True (a collective)."""
    failed = accelerator.reduce(torch.tensor(float(not ok), device=accelerator.device), reduction="sum")
    return float(failed) == 0


@contextmanager
def unsharded(module: nn.Module) -> Iterator[nn.Module]:
    """Under FSDP2 the root's own parameters are gathered only by its forward; generation calls its
    parts directly, so gather them for the block (a no-op for a module that is not sharded)."""
    if not hasattr(module, "unshard"):
        yield module
        return
    module.unshard()
    try:
        yield module
    finally:
        module.reshard()

