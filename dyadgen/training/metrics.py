"""Where training numbers go: ``<output_dir>/metrics.jsonl`` (one JSON object per optimizer step,
always) and accelerate's trackers (TensorBoard by default, wandb when chosen, or none).

Only the main process writes. On resume the JSONL file is cut back to the resumed step, so the log of
a resumed run reads as if it had never stopped (lines a killed run wrote after its last checkpoint
are dropped: those steps are trained again).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from dyadgen.io.files import write_text_atomic

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    def __init__(self, output_dir: str | Path, *, enabled: bool) -> None:
        self.path = Path(output_dir) / METRICS_FILE
        self.enabled = enabled
        self._file = None

    def open(self, resume_step: int | None) -> None:
        """Start appending; with ``resume_step`` keep only the records of steps up to it."""
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        elif self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and _step_of(line) <= resume_step]
            write_text_atomic(self.path, "".join(line + "\n" for line in kept))
        self._file = self.path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps({k: _plain(v) for k, v in record.items()}) + "\n")
        self._file.flush()  # a killed run keeps every finished step's line

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_metrics(output_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(output_dir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def tracker_config(cfg_dict: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten the resolved config for a tracker's hparams (scalars only; lists become strings)."""
    flat: dict[str, Any] = {}
    for key, value in cfg_dict.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(tracker_config(value, prefix=f"{name}."))
        elif isinstance(value, (int, float, str, bool)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", -1))
    except (json.JSONDecodeError, TypeError, ValueError):
        return 1 << 62  # a torn last line: dropped


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; "nan" keeps the line parseable
    return value
