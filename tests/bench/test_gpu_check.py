"""scripts/gpu_check.py, the check run on a CUDA machine, works end to end: here on the CPU with the tiny
preset (same code path: from_pretrained backbone, training step, estimate, generation, VAE decode)."""

from __future__ import annotations

import json
import runpy

from trainrun import REPO


def test_the_gpu_check_runs_its_training_step_estimate_and_generation(tmp_path):
    out = tmp_path / "check.json"
    script = runpy.run_path(str(REPO / "scripts" / "gpu_check.py"))
    assert script["main"](["--device", "cpu", "--preset", "tiny", "--seconds", "0.48", "--json", str(out),
                           "data.height=64", "data.width=48", "data.window_steps=4"]) == 0
    result = json.loads(out.read_text())
    step, gen = result["train_step"], result["generation"]
    assert step["loss"] > 0 and 0 < step["estimated_peak_gib"] < 4
    assert gen["seconds_of_video"] == 0.48 and gen["real_time_factor"] > 0
