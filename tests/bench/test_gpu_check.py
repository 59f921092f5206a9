"""scripts/gpu_check.py, the check run on a CUDA machine, works end to end: here on the CPU with the tiny
preset (same code path: from_pretrained backbone, training step, estimate, generation for every sampler
setting, full VAE and TAEF1 decode)."""

from __future__ import annotations

import json
import runpy

from trainrun import REPO


def test_the_gpu_check_runs_its_training_step_estimate_and_every_sampler_setting(tmp_path):
    out = tmp_path / "check.json"
    script = runpy.run_path(str(REPO / "scripts" / "gpu_check.py"))
    assert script["main"](["--device", "cpu", "--presets", "tiny", "--seconds", "0.48", "--json", str(out),
                           "data.height=64", "data.width=48", "data.window_steps=4"]) == 0
    result = json.loads(out.read_text())["presets"]["tiny"]
    step, gen = result["train_step"], result["generation"]
    assert step["loss"] > 0 and 0 < step["estimated_peak_gib"] < 4
    assert gen["seconds_of_video"] == 0.48
    assert set(gen["settings"]) == {f"steps{s}/{b}/{d}" for s in (4, 2, 1) for b in ("guided", "one_branch")
                                    for d in ("full", "taef1")}
    assert all(row["rtf"] > 0 for row in gen["settings"].values())
