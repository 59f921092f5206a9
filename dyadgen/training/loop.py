"""One optimizer step (:func:`train_step`), the non-finite guard, validation, and the stop signal.

A step takes ``grad_accum`` micro-batches on every process; each micro-batch's randomness (flow
time, noise, condition dropout) is reseeded from ``(seed, step, global micro-batch index)`` so a step
draws the same noise for the same samples whether it runs on one process with accumulation or on
several without, and again after a resume.
"""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dyadgen.compat import reset_accumulation
from dyadgen.errors import UserError
from dyadgen.training.state import step_seed


class NonFiniteError(UserError):
    """Too many optimizer steps in a row had a non-finite loss or gradient."""


@dataclass
class StepResult:
    terms: dict[str, float]  # the model's scalars ("loss", per person/role), mean over the global batch
    grad_norm: float  # before clipping; nan when the backend does not report it
    finite: bool  # False: the update was skipped
    stop_requested: bool  # any process got Ctrl-C / SIGTERM


class NonFiniteGuard:
    """Counts skipped steps; raises :class:`NonFiniteError` after ``max_in_row`` in a row."""

    def __init__(self, max_in_row: int) -> None:
        self.max_in_row = max_in_row

    def update(self, state: Any, finite: bool, step: int) -> bool:
        """Record one step's outcome in ``state``; returns whether this step was skipped."""
        if finite:
            state.nonfinite_in_row = 0
            return False
        state.nonfinite_total += 1
        state.nonfinite_in_row += 1
        if state.nonfinite_in_row >= self.max_in_row:
            raise NonFiniteError(
                f"stopping at step {step}: {state.nonfinite_in_row} steps in a row had a non-finite loss or "
                f"gradient ({state.nonfinite_total} in this run). Lower train.lr or raise "
                "train.warmup_steps, check the shards with `dyadgen dataset-stats`, or resume from an "
                "earlier checkpoint (train.resume=<step folder>); train.max_nonfinite sets the limit"
            )
        return True


EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT): saved, stopped by a person
EXIT_PREEMPTED = 75  # SIGTERM (a scheduler's "stop now"): saved; EX_TEMPFAIL, "try again": requeue the job


class StopSignal:
    """Ctrl-C (SIGINT) or SIGTERM asks the loop to save a checkpoint and exit after the current step.

    A launcher may forward the terminal's Ctrl-C once more to its workers, so the first two signals
    only ask; the third aborts at once (KeyboardInterrupt) for a user who really wants out. A
    scheduler kills the job some time after its SIGTERM: if the step and the save are not done
    ``grace_s`` seconds after the first signal, the process exits at once with
    :data:`EXIT_PREEMPTED`, leaving the last complete checkpoint to resume from.
    """

    def __init__(self, grace_s: float = 120.0) -> None:
        self.count = 0
        self.signum: int | None = None
        self.grace_s = grace_s
        self._timer: Any = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count >= 3:
            raise KeyboardInterrupt
        if self.count == 1:
            self.signum = signum
            print(f"\n{signal.Signals(signum).name}: saving a checkpoint after this step, then stopping "
                  f"within {self.grace_s:.0f} s (press Ctrl-C twice more to abort without saving)", flush=True)
            self._timer = threading.Timer(self.grace_s, self._out_of_time)
            self._timer.daemon = True
            self._timer.start()

    def _out_of_time(self) -> None:
        print(f"not saved within {self.grace_s:.0f} s of the signal: exiting; resume from the last complete "
              "checkpoint", flush=True)
        os._exit(EXIT_PREEMPTED)

    @property
    def exit_code(self) -> int:
        return EXIT_PREEMPTED if self.signum == signal.SIGTERM else EXIT_INTERRUPTED

    @property
    def requested(self) -> bool:
        return self.count > 0

    def __enter__(self) -> StopSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train_step(accelerator: Any, model: nn.Module, optimizer: Any, micro_batches: Sequence[Any], *,
               seed: int, step: int, grad_clip: float, stop_requested: bool = False) -> StepResult:
    """Forward and backward over ``micro_batches`` (this process's share of one global batch), then one
    clipped optimizer update - skipped, with the gradients dropped, when anything is non-finite.

    The caller sets the learning rate before and updates the EMA after (when ``finite``).
    """
    reset_accumulation(accelerator)  # sync on exactly our last micro-batch
    sums: dict[str, torch.Tensor] = {}
    grad_norm: torch.Tensor | float | None = None
    k = len(micro_batches)
    for i, batch in enumerate(micro_batches):
        torch.manual_seed(step_seed(seed, step, accelerator.process_index * k + i))
        with accelerator.accumulate(model):
            out = model(batch)
            accelerator.backward(out["loss"])
            if accelerator.sync_gradients:
                params = [p for p in model.parameters() if p.requires_grad]
                grad_norm = accelerator.clip_grad_norm_(params, grad_clip if grad_clip > 0 else math.inf)
        for name, value in out.items():
            if torch.is_tensor(value) and value.numel() == 1:
                sums[name] = sums.get(name, 0.0) + value.detach().float().reshape(())
    if not accelerator.sync_gradients:
        raise RuntimeError("gradient accumulation out of step: the last micro-batch did not sync")

    # One all-reduce carries every term, the grad norm and the stop flag (mean over processes).
    names = sorted(sums)
    device = accelerator.device
    norm_value = float("nan") if grad_norm is None else float(grad_norm)
    extras = [torch.tensor(norm_value, device=device), torch.tensor(float(stop_requested), device=device)]
    packed = torch.stack([(sums[n] / k).to(device) for n in names] + extras)  # [len(names) + 2]
    packed = accelerator.reduce(packed, reduction="mean")
    terms = {n: float(v) for n, v in zip(names, packed[: len(names)].tolist(), strict=True)}
    norm = float(packed[-2])
    finite = all(math.isfinite(v) for v in terms.values()) and (grad_norm is None or math.isfinite(norm))
    if finite:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(terms=terms, grad_norm=norm, finite=finite, stop_requested=float(packed[-1]) > 0)


@torch.no_grad()
def validation_loss(model: nn.Module, batches: Iterable[Any], *, seed: int,
                    reduce: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, float]:
    """Mean of the model's loss terms over ``batches`` in eval mode, with fixed noise per batch so two
    evaluations of the same weights give the same number."""
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    count = 0
    try:
        for i, batch in enumerate(batches):
            torch.manual_seed(step_seed(seed, 1 << 30, i))
            out = model(batch)
            for name, value in out.items():
                if torch.is_tensor(value) and value.numel() == 1:
                    sums[name] = sums.get(name, 0.0) + value.detach().float().reshape(())
            count += 1
    finally:
        model.train(was_training)
    if not count:
        return {}
    names = sorted(sums)
    packed = reduce(torch.stack([sums[n] / count for n in names]))  # [len(names)]
    return {n: float(v) for n, v in zip(names, packed.tolist(), strict=True)}
