"""The real training script on tiny generated shards: it trains and writes what it promises
(metrics.jsonl, step folders, an inference folder), Ctrl-C saves and a resumed run continues with the
very same losses, and two DDP processes match one process with the same global batch.

Shards are written once per session by the real shard writer (the real `dyadgen preprocess` takes
minutes per synthetic dialogue on 2 cores); the model is the tiny preset.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "tiny_synthetic.yaml"
LATENT = (8, 8, 6)  # the tiny VAE (8 channels, factor 8) at 64 x 48 pixels per person
WINDOW_STEPS = 2  # 8 frames per sample: whole chunks, a few seconds per run on 2 cores
# The tiny preset's model with a random tiny VAE; only the data are made small. Trackers off: only
# metrics.jsonl is read.
FAST = ["vae.name_or_path=", "data.height=64", "data.width=48", f"data.window_steps={WINDOW_STEPS}",
        "model.decoder_steps_per_sample=1", "train.batch_size=2", "train.warmup_steps=2", "train.val_every=0",
        "train.sample_every=0", "train.tracker=none", "train.log_every=1"]


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> dict[str, Path]:
    """Shards written by the real writer (dyadgen.data.shards) and a real fitted audio tokenizer."""
    import numpy as np
    import torch

    from dyadgen.data.shards import write_manifest, write_shard
    from dyadgen.encoders.fitted import FittedTokenizer

    root = tmp_path_factory.mktemp("train_data")
    rng = np.random.default_rng(0)
    FittedTokenizer.fit([rng.standard_normal(32000).astype(np.float32)], num_codes=16, n_mels=8).save_pretrained(
        root / "tokenizer")
    g = torch.Generator().manual_seed(0)
    T = WINDOW_STEPS * 4
    for split, videos in (("train", 3), ("val", 1)):
        (root / "shards" / split).mkdir(parents=True)
        for v in range(videos):
            samples = []
            for i in range(4):
                speaking = torch.rand(2, T, generator=g) > 0.5  # [P,T]
                tensors = {"tokens": torch.randint(0, 16, (2, T), generator=g),  # [P,T]
                           "latents": torch.randn(2, T, *LATENT, generator=g).bfloat16(),  # [P,T,c,h,w]
                           "refs": torch.randn(2, 3, *LATENT, generator=g).bfloat16(),  # [P,K,c,h,w]
                           "speaking": speaking.to(torch.uint8), "emotion": torch.randint(-1, 19, (2, T), generator=g),
                           "mask": torch.ones(T, dtype=torch.bool)}
                samples.append((f"{split}{v}_{i:07d}", tensors, {"text": "你好", "split": split}))
            write_shard(root / "shards" / split / f"{split}{v}.tar", samples)
    write_manifest(root / "shards", {"latent_shape": list(LATENT), "num_audio_codes": 16, "window_frames": T})
    return {"shards": root / "shards", "tokenizer": root / "tokenizer"}


def _args(out: Path, data: dict[str, Path], *extra: str) -> list[str]:
    return ["--config", str(CONFIG), f"train.output_dir={out}", f"data.shards={data['shards']}",
            f"audio_tokenizer.name_or_path={data['tokenizer']}", *FAST, *extra]


def _run(args: list[str], *, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = (launcher or [sys.executable]) + [str(REPO / "scripts" / "train.py"), *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=_env())


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    return env


def _losses(out: Path) -> dict[int, dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines) if "loss" in r}


def test_trains_and_writes_metrics_checkpoints_and_an_inference_folder(data, tmp_path):
    out = tmp_path / "run"
    done = _run(_args(out, data, "train.max_steps=3", "train.save_every=2", "train.keep_last=1",
                      "train.val_every=3", "train.sample_every=3", "train.tracker=tensorboard"))
    assert done.returncode == 0, done.stderr[-3000:]
    records = _losses(out)
    assert sorted(records) == [1, 2, 3]
    for key in ("loss", "loss/left", "loss/right", "loss/speaking", "loss/listening", "grad_norm",
                "samples_per_s", "tokens_per_s", "lr/new", "lr/backbone"):
        assert key in records[1], key
    assert all(math.isfinite(r["loss"]) for r in records.values())
    val = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "val/loss" in r]
    assert [r["step"] for r in val] == [3] and "val_ema/loss" in val[0]
    assert (out / "samples" / "step_0000003.mp4").stat().st_size > 0  # ground truth | generated
    assert list((out / "logs").rglob("events.out.tfevents.*"))  # TensorBoard
    steps = sorted(p.name for p in (out / "checkpoints").iterdir() if p.is_dir())
    assert steps == ["step_0000003"]  # keep_last=1 removed step 2
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_0000003"
    folder = out / "checkpoints" / "step_0000003"
    assert (folder / "train_state.json").is_file() and (folder / "ema.safetensors").is_file()

    import torch
    from safetensors.torch import load_file

    from dyadgen.checkpoint import load_inference_folder

    loaded = load_inference_folder(folder / "inference")  # what `dyadgen infer --checkpoint` reads
    ema, raw = load_file(folder / "ema.safetensors"), load_file(folder / "model.safetensors")
    shipped = loaded.model.state_dict()
    assert all(torch.equal(shipped[k], v) for k, v in ema.items())  # the EMA weights are what ships
    assert any(not torch.equal(raw[k], v) for k, v in ema.items())
    assert loaded.identities["latents"].shape == (2, *LATENT)
    assert loaded.identities["images"].shape == (2, 64, 48, 3)


def test_ctrl_c_saves_and_resume_continues_with_the_same_losses(data, tmp_path):
    steps = ["train.max_steps=6", "train.save_every=100"]
    whole = tmp_path / "whole"
    done = _run(_args(whole, data, *steps))
    assert done.returncode == 0, done.stderr[-3000:]

    cut = tmp_path / "cut"
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), *_args(cut, data, *steps)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env())
    metrics = cut / "metrics.jsonl"
    while proc.poll() is None and not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 130, log[-3000:]
    stopped = max(_losses(cut))
    assert 2 <= stopped < 6
    assert (cut / "checkpoints" / f"step_{stopped:07d}").is_dir()  # saved before exiting

    done = _run(_args(cut, data, *steps, "train.resume=latest"))
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = _losses(whole), _losses(cut)
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    # Bit-for-bit on the CPU: same weights, optimizer state, data position and noise seeds.
    assert [a[s]["loss"] for s in range(1, 7)] == [b[s]["loss"] for s in range(1, 7)]
    assert [a[s]["grad_norm"] for s in range(1, 7)] == [b[s]["grad_norm"] for s in range(1, 7)]


def test_two_ddp_processes_match_one_process_with_the_same_global_batch(data, tmp_path):
    """Global batch 2 both ways: one process accumulating 2 micro-batches of 1, or 2 processes with 1
    each. The loader deals sample i of the shuffled order to rank i % 2, and each micro-batch's noise
    is seeded by its index in the global batch, so both runs see the same samples with the same noise.
    They differ only in the order gradients are summed (DDP's all-reduce vs accumulation), which is
    float rounding: the first loss agrees to 1e-6 and later ones to 1e-4 (relative)."""
    import socket

    steps = ["train.max_steps=3", "train.save_every=100", "train.batch_size=1"]
    one = tmp_path / "one"
    done = _run(_args(one, data, *steps, "train.grad_accum=2"))
    assert done.returncode == 0, done.stderr[-3000:]

    with socket.socket() as sock:  # a free port, so parallel runs on this machine do not collide
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(REPO / "configs" / "accelerate" / "cpu_ddp.yaml"), "--main_process_port", str(port)]
    two = tmp_path / "two"
    done = _run(_args(two, data, *steps, "train.grad_accum=1"), launcher=launcher)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = _losses(one), _losses(two)
    assert sorted(a) == sorted(b) == [1, 2, 3]
    assert a[1]["samples_seen"] == b[1]["samples_seen"] == 2
    assert b[1]["loss"] == pytest.approx(a[1]["loss"], rel=1e-6)
    assert [b[s]["loss"] for s in (2, 3)] == pytest.approx([a[s]["loss"] for s in (2, 3)], rel=1e-4)
