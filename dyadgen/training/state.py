"""TrainState: everything the loop needs to continue exactly where it stopped, in one saveable object.

accelerate's ``save_state`` already writes the model, the optimizer, the gradient scaler and each
process's RNG states; TrainState adds the rest - the optimizer step, counters, every process's data
loader position and the EMA weights - through accelerate's save/load hooks, so one ``save_state`` /
``load_state`` call moves all of it. It is written as ``train_state.json`` + ``ema.safetensors``
(no pickles, so loading a checkpoint never runs code).

Randomness inside a step does not depend on the saved RNG at all: the loop reseeds from
``(seed, step, micro-batch index across processes)`` (:func:`step_seed`), so a resumed run and a run
on another number of processes draw the same noise for the same samples.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from accelerate.utils import gather_object
from safetensors.torch import load_file, save_file

from dyadgen.errors import UserError

STATE_FILE = "train_state.json"
EMA_FILE = "ema.safetensors"


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class TrainState:
    step: int = 0  # optimizer steps taken (skipped non-finite steps do not count)
    samples_seen: int = 0  # across all processes
    tokens_seen: int = 0  # audio tokens of both people in valid frames, across all processes
    nonfinite_total: int = 0
    nonfinite_in_row: int = 0
    world_size: int = 1
    data_states: list[dict[str, Any]] = field(default_factory=list)  # one loader position per process

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def register(self, accelerator: Any, *, loader: Stateful | None, ema: Any | None) -> None:
        """Hook this state, the loader's position and the EMA into ``accelerator.save_state/load_state``."""

        def save_hook(models: list, weights: list, output_dir: str) -> None:
            self.save(Path(output_dir), accelerator, loader=loader, ema=ema)

        def load_hook(models: list, input_dir: str) -> None:
            self.load(Path(input_dir), accelerator, loader=loader, ema=ema)

        accelerator.register_save_state_pre_hook(save_hook)
        accelerator.register_load_state_pre_hook(load_hook)

    def save(self, folder: Path, accelerator: Any, *, loader: Stateful | None, ema: Any | None) -> None:
        # Every process takes part (gathering the loader positions is collective); the main one writes.
        own = loader.state_dict() if loader is not None else {}
        self.data_states = list(gather_object([own]))
        self.world_size = accelerator.num_processes
        ema_tensors = ema.state_dict() if ema is not None else None  # collective under FSDP
        if not accelerator.is_main_process:
            return
        folder.mkdir(parents=True, exist_ok=True)
        record = self.to_json()
        record["ema_updates"] = ema.num_updates if ema is not None else 0
        (folder / STATE_FILE).write_text(json.dumps(record, indent=1) + "\n")
        if ema is not None:
            tensors = {k: v.detach().contiguous().cpu() for k, v in ema_tensors.items()}
            save_file(tensors, folder / EMA_FILE)

    def load(self, folder: Path, accelerator: Any, *, loader: Stateful | None, ema: Any | None) -> None:
        path = folder / STATE_FILE
        if not path.is_file():
            raise UserError(f"{path}: missing; {folder} is not a training checkpoint")
        record = json.loads(path.read_text())
        ema_updates = int(record.pop("ema_updates", 0))
        for key, value in record.items():
            if hasattr(self, key):
                setattr(self, key, value)
        if loader is not None and self.data_states:
            if self.world_size != accelerator.num_processes:
                raise UserError(
                    f"{folder}: saved by {self.world_size} processes, resumed with "
                    f"{accelerator.num_processes}; "
                    "the data loader position is per process, so resume with the same number of processes"
                )
            loader.load_state_dict(self.data_states[accelerator.process_index])
        if ema is not None:
            ema.load_state_dict(load_file(folder / EMA_FILE, device="cpu"), num_updates=ema_updates)


def step_seed(seed: int, step: int, micro_index: int) -> int:
    """A 63-bit seed for one micro-batch, a pure function of the run seed, the optimizer step and the
    micro-batch's index in the global batch (``process_index * grad_accum + accumulation index``)."""
    words = np.random.SeedSequence([seed, step, micro_index]).generate_state(2, dtype=np.uint64)  # [2]
    return int(words[0] >> np.uint64(1))
