"""Step folders under ``<output_dir>/checkpoints/``: atomic saves, the last K kept, ``latest`` resolved.

Layout of one run::

    <output_dir>/checkpoints/step_0000500/   accelerate state (model, optimizer, RNG per process),
                                             train_state.json + ema.safetensors (the TrainState),
                                             inference/ (what `dyadgen infer --checkpoint` loads)
    <output_dir>/checkpoints/latest          text: the newest complete step folder's name

A save is written into ``.tmp-step_XXXXXXX`` and renamed into place only when every process has
finished writing, so a folder named ``step_*`` is always complete; a save killed half-way leaves a
``.tmp-*`` folder that the next start or save removes, and the previous checkpoints stay untouched.
``latest`` is the highest complete step folder (the pointer file is for people and scripts; a kill
between the rename and the pointer update costs nothing). Before writing, the free space is checked
against the last checkpoint's size; a write that fails (a full disk, a quota, a file-size limit)
removes its temporary folder and raises :class:`CheckpointError`, one line naming the folder and the
cause, with ``latest`` and every earlier checkpoint intact.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

from safetensors import SafetensorError

from dyadgen.errors import UserError
from dyadgen.io.files import write_text_atomic

STEP_RE = re.compile(r"^step_(\d+)$")
TMP_PREFIX = ".tmp-"
OLD_PREFIX = TMP_PREFIX + "old-"  # a complete step folder moved aside while the same step is saved again
LATEST = "latest"
SPACE_MARGIN = 1.1  # a save needs this many times the last checkpoint's size free
FAILPOINT_ENV = "DYADGEN_FAILPOINT"


class CheckpointError(UserError):
    """A checkpoint could not be written; nothing earlier was touched."""


def failpoint(name: str, step: int) -> None:
    """A test hook: SIGKILL this process at the named point of a save when ``$DYADGEN_FAILPOINT`` is
    ``name`` or ``name:step``, so the fault tests kill a real process at an exact moment. Does
    nothing otherwise."""
    if os.environ.get(FAILPOINT_ENV) in (name, f"{name}:{step}"):
        os.kill(os.getpid(), signal.SIGKILL)


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _cause(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text[:160]}" if text else type(err).__name__


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

    def clean_stale(self) -> None:
        """Remove the temporary folders of saves that were killed; a complete step folder that was
        moved aside for a save of the same step that never finished is put back."""
        if not self.root.is_dir():
            return
        for stale in sorted(self.root.glob(f"{TMP_PREFIX}*")):
            original = self.root / stale.name[len(OLD_PREFIX):]
            if stale.name.startswith(OLD_PREFIX) and STEP_RE.match(original.name) and not original.exists():
                stale.rename(original)
            else:
                shutil.rmtree(stale, ignore_errors=True)

    def space_problem(self) -> str:
        """Why a save would not fit ("" when it would): free space against the last checkpoint's size."""
        done = self.steps()
        if not done:
            return ""
        needed = folder_size(done[-1][1]) * SPACE_MARGIN
        free = shutil.disk_usage(self.root).free
        if free >= needed:
            return ""
        return (f"{self.root}: {free / 1e6:.0f} MB free, a checkpoint needs about {needed / 1e6:.0f} MB "
                f"(the last one took {needed / SPACE_MARGIN / 1e6:.0f} MB)")

    def save(self, step: int, write: Callable[[Path], None], *, is_main: bool, barrier: Callable[[], None],
             agree: Callable[[bool], bool] = lambda ok: ok) -> Path:
        """Run ``write(tmp_folder)`` on every process, then publish the folder as ``step_XXXXXXX``.

        ``agree(ok)`` is True only when every process passes True (a collective, like ``barrier``):
        no process writes before the main one has made room and checked the space, and nothing is
        renamed unless every process wrote its part. Raises :class:`CheckpointError` otherwise.
        """
        final = self.root / step_name(step)
        tmp = self.root / f"{TMP_PREFIX}{final.name}"
        problem = ""
        if is_main:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                self.clean_stale()
                problem = self.space_problem()
                if not problem:
                    tmp.mkdir()
            except OSError as err:
                problem = f"{final}: not written ({_cause(err)})"
        if not agree(not problem):
            raise CheckpointError(problem or f"{final}: not written (the main process could not start the save)")

        try:
            write(tmp)
            failpoint("save:written", step)
        except (OSError, RuntimeError, SafetensorError) as err:  # torch and safetensors wrap the OSError
            problem = f"{final}: not written ({_cause(err)})"
        if not agree(not problem):
            if is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            barrier()
            raise CheckpointError(problem or f"{final}: not written (another process failed to write its part)")
        if is_main:
            if final.exists():  # saving the same step again (e.g. Ctrl-C right after a periodic save)
                old = self.root / f"{OLD_PREFIX}{final.name}"
                final.rename(old)
                failpoint("save:moved-aside", step)
                tmp.rename(final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(final)
            failpoint("save:renamed", step)
            write_text_atomic(self.root / LATEST, final.name + "\n")
            self._prune(keep=final)
        barrier()
        return final

    def _prune(self, keep: Path) -> None:
        folders = [p for _, p in self.steps()]
        for path in folders[: max(0, len(folders) - self.keep_last)]:
            if path != keep:
                shutil.rmtree(path, ignore_errors=True)

    def latest(self) -> Path | None:
        """The highest-numbered complete step folder (every ``step_*`` folder is complete)."""
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

