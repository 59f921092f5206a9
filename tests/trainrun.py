"""Running the real training script in tests: the tiny preset on small generated shards (the
``train_data`` fixture in conftest.py), a subprocess per run, and the losses it wrote."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "tiny_synthetic.yaml"
LATENT = (8, 8, 6)  # the tiny VAE (8 channels, factor 8) at 64 x 48 pixels per person
WINDOW_STEPS = 2  # 8 frames per sample: whole chunks, a few seconds per run on 2 cores
# The tiny preset's model with a random tiny VAE; only the data are made small. Trackers off: only
# metrics.jsonl is read.
FAST = ["vae.name_or_path=", "data.height=64", "data.width=48", f"data.window_steps={WINDOW_STEPS}",
        "model.decoder_steps_per_sample=1", "train.batch_size=2", "train.warmup_steps=2", "train.val_every=0",
        "train.sample_every=0", "train.tracker=none", "train.log_every=1"]


def train_args(out: Path, data: dict[str, Path], *extra: str) -> list[str]:
    return ["--config", str(CONFIG), f"train.output_dir={out}", f"data.shards={data['shards']}",
            f"audio_tokenizer.name_or_path={data['tokenizer']}", *FAST, *extra]


def run_train(args: list[str], *, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = (launcher or [sys.executable]) + [str(REPO / "scripts" / "train.py"), *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=train_env())


def train_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    return env


def losses(out: Path) -> dict[int, dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines) if "loss" in r}


def launcher(config: str, *extra: str) -> list[str]:
    """``accelerate launch`` of a shipped launcher config (written for GPUs in bf16) as 2 CPU processes
    over gloo in fp32, on a free port (parallel runs on this machine must not collide)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return ["env", "ACCELERATE_USE_CPU=true", sys.executable, "-m", "accelerate.commands.launch", "--config_file",
            str(REPO / "configs" / "accelerate" / config), "--main_process_port", str(port), "--num_processes", "2",
            "--mixed_precision", "no", *extra]


def ddp_launcher() -> list[str]:
    return launcher("ddp.yaml")


def fsdp_launcher() -> list[str]:
    return launcher("fsdp.yaml")
