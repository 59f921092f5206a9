"""Step folders under ``<output_dir>/checkpoints/``: atomic saves, the last K kept, ``latest`` resolved.

Layout of one run::

    <output_dir>/checkpoints/step_0000500/   accelerate state (model, optimizer, RNG per process),
                                             train_state.json + ema.safetensors (the TrainState),
                                             inference/ (what `dyadgen infer --checkpoint` loads)
    <output_dir>/checkpoints/latest          text: the newest complete step folder's name

A save is written into ``.tmp-step_XXXXXXX`` and renamed into place only when every process has
finished writing, so a folder named ``step_*`` is always complete; a save killed half-way leaves a
``.tmp-*`` folder that the next save removes, and the previous checkpoints stay untouched.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from dyadgen.errors import UserError

STEP_RE = re.compile(r"^step_(\d+)$")
TMP_PREFIX = ".tmp-"
LATEST = "latest"


def step_name(step: int) -> str:
    return f"step_{step:07d}"


class CheckpointManager:
    """Owns ``<output_dir>/checkpoints``. Only the main process renames or deletes anything."""

    def __init__(self, output_dir: str | Path, keep_last: int) -> None:
        if keep_last < 1:
            raise UserError(f"train.keep_last must be at least 1, got {keep_last}")
        self.root = Path(output_dir) / "checkpoints"
        self.keep_last = keep_last

    def steps(self) -> list[tuple[int, Path]]:
        """Complete step folders, oldest first."""
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir()
                 if p.is_dir() and (m := STEP_RE.match(p.name))]
        return sorted(found)

    def save(self, step: int, write: Callable[[Path], None], *, is_main: bool,
             barrier: Callable[[], None]) -> Path:
        """Run ``write(tmp_folder)`` on every process, then publish the folder as ``step_XXXXXXX``.

        ``barrier`` waits for all processes (``accelerator.wait_for_everyone``); it is called so that
        no process writes into a folder that is being cleaned, and no rename happens before the last
        process has finished writing.
        """
        final = self.root / step_name(step)
        tmp = self.root / f"{TMP_PREFIX}{final.name}"
        if is_main:
            self.root.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob(f"{TMP_PREFIX}*"):  # left by a save that was killed
                shutil.rmtree(stale, ignore_errors=True)
            tmp.mkdir()
        barrier()
        write(tmp)
        barrier()
        if is_main:
            if final.exists():  # saving the same step again (e.g. Ctrl-C right after a periodic save)
                old = self.root / f"{TMP_PREFIX}old-{final.name}"
                final.rename(old)
                tmp.rename(final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(final)
            _write_text_atomic(self.root / LATEST, final.name + "\n")
            self._prune(keep=final)
        barrier()
        return final

    def _prune(self, keep: Path) -> None:
        folders = [p for _, p in self.steps()]
        for path in folders[: max(0, len(folders) - self.keep_last)]:
            if path != keep:
                shutil.rmtree(path, ignore_errors=True)

    def latest(self) -> Path | None:
        """The step folder ``latest`` names, else (no pointer yet, or it names a deleted folder) the
        highest-numbered complete one."""
        pointer = self.root / LATEST
        if pointer.is_file():
            named = self.root / pointer.read_text().strip()
            if STEP_RE.match(named.name) and named.is_dir():
                return named
        candidates = self.steps()
        return candidates[-1][1] if candidates else None

    def resolve(self, resume: str) -> Path | None:
        """``train.resume`` -> a step folder, or None to start fresh.

        ``""``: start fresh. ``"latest"``: this run's newest checkpoint, or fresh when there is none yet
        (so a preemptible job can always pass it). Anything else: a step folder, or a run's output
        folder (its newest checkpoint).
        """
        if not resume:
            return None
        if resume == LATEST:
            return self.latest()
        path = Path(resume)
        if path.is_dir() and STEP_RE.match(path.name):
            return path
        if path.is_dir():
            found = CheckpointManager(path, keep_last=1).latest()
            if found is not None:
                return found
        raise UserError(f"{resume}: train.resume is not a step folder (step_XXXXXXX) "
                        "or a run folder with checkpoints")


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
