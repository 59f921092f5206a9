"""The real training script on tiny generated shards: it trains and writes what it promises
(metrics.jsonl, step folders, an inference folder), Ctrl-C saves and a resumed run continues with the
very same losses, and two DDP processes match one process with the same global batch, across a
SIGTERM (preemption) and a requeued resume.

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

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from trainrun import LATENT, REPO, ddp_launcher, fsdp_launcher, losses, run_train, train_args, train_env

from dyadgen.inference.folder import load_inference_folder


def test_trains_and_writes_metrics_checkpoints_and_an_inference_folder(train_data, tmp_path):
    out = tmp_path / "run"
    # the sample video is generated with guidance against silence (the tokenizer's codes), as the bundled recipe sets
    done = run_train(train_args(out, train_data, "train.max_steps=3", "train.save_every=2", "train.keep_last=1",
                                "train.val_every=3", "train.sample_every=3", "train.tracker=tensorboard",
                                "infer.guidance=3", "infer.unconditional_audio=silence"))
    assert done.returncode == 0, done.stderr[-3000:]
    records = losses(out)
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

    loaded = load_inference_folder(folder / "inference")  # what `dyadgen infer --checkpoint` reads
    ema, raw = load_file(folder / "ema.safetensors"), load_file(folder / "model.safetensors")
    shipped = loaded.model.state_dict()
    assert all(torch.equal(shipped[k], v) for k, v in ema.items())  # the EMA weights are what ships
    assert any(not torch.equal(raw[k], v) for k, v in ema.items())
    assert loaded.identities["latents"].shape == (2, *LATENT)
    assert loaded.identities["images"].shape == (2, 64, 48, 3)


@pytest.mark.slow  # fault injection: a training run interrupted, saved and resumed
def test_ctrl_c_saves_and_resume_continues_with_the_same_losses(train_data, tmp_path):
    steps = ["train.max_steps=6", "train.save_every=100"]
    whole = tmp_path / "whole"
    done = run_train(train_args(whole, train_data, *steps))
    assert done.returncode == 0, done.stderr[-3000:]

    cut = tmp_path / "cut"
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), *train_args(cut, train_data, *steps)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=train_env())
    metrics = cut / "metrics.jsonl"
    while proc.poll() is None and not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 130, log[-3000:]
    stopped = max(losses(cut))
    assert 2 <= stopped < 6
    assert (cut / "checkpoints" / f"step_{stopped:07d}").is_dir()  # saved before exiting

    done = run_train(train_args(cut, train_data, *steps, "train.resume=latest"))
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = losses(whole), losses(cut)
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    # Bit-for-bit on the CPU: same weights, optimizer state, data position and noise seeds.
    assert [a[s]["loss"] for s in range(1, 7)] == [b[s]["loss"] for s in range(1, 7)]
    assert [a[s]["grad_norm"] for s in range(1, 7)] == [b[s]["grad_norm"] for s in range(1, 7)]


STEPS = ["train.max_steps=6", "train.save_every=100", "train.batch_size=1"]


@pytest.fixture(scope="module")
def one_process(train_data, tmp_path_factory):
    """Global batch 2 on one process: 2 micro-batches of 1 accumulated (what 2 processes must match)."""
    one = tmp_path_factory.mktemp("one_process")
    done = run_train(train_args(one, train_data, *STEPS, "train.grad_accum=2"))
    assert done.returncode == 0, done.stderr[-3000:]
    return one


@pytest.mark.slow  # multi-process: launches two training processes and resumes them
def test_two_ddp_processes_match_one_process_and_sigterm_mid_step_saves_exits_and_resumes(train_data, one_process,
                                                                                          tmp_path):
    """Global batch 2 both ways: one process accumulating 2 micro-batches of 1, or 2 processes with 1
    each. The loader deals sample i of the shuffled order to rank i % 2, and each micro-batch's noise
    is seeded by its index in the global batch, so both runs see the same samples with the same noise.
    They differ only in the order gradients are summed (DDP's all-reduce vs accumulation), which is
    float rounding: the first loss agrees to 1e-6 and later ones to 1e-4 (relative). The 2-process
    run is stopped mid-way as a scheduler stops a job (SIGTERM to every process), then requeued."""
    steps, one = STEPS, one_process
    two = tmp_path / "two"
    cmd = [*ddp_launcher(), str(REPO / "scripts" / "train.py"), *train_args(two, train_data, *steps)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=train_env(), start_new_session=True)
    metrics = two / "metrics.jsonl"
    while proc.poll() is None and not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)  # what a scheduler does: every process of the job
    sent = time.monotonic()
    log, _ = proc.communicate(timeout=300)
    assert time.monotonic() - sent < 60, "saved and exited within the grace time"
    assert proc.returncode != 0, log[-3000:]  # the launcher turns the workers' 75 into its own failure code
    stopped = max(losses(two))
    assert 2 <= stopped < 6 and f"stopped at step {stopped}" in log and "(exit code 75)" in log
    state = json.loads((two / "checkpoints" / f"step_{stopped:07d}" / "train_state.json").read_text())
    assert state["world_size"] == 2 and len(state["data_states"]) == 2  # every rank's position was saved

    resumed = run_train(train_args(two, train_data, *steps, "train.resume=latest"), launcher=ddp_launcher())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = losses(one), losses(two)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5, 6]
    assert a[1]["samples_seen"] == b[1]["samples_seen"] == 2
    assert b[1]["loss"] == pytest.approx(a[1]["loss"], rel=1e-6)
    assert [b[s]["loss"] for s in range(2, 7)] == pytest.approx([a[s]["loss"] for s in range(2, 7)], rel=1e-4)
    # each rank's loader position is its own: resuming the 2-process run in one process is refused
    alone = run_train(train_args(two, train_data, *steps, "train.resume=latest"))
    assert alone.returncode == 2 and "saved by 2 processes, resumed with 1" in alone.stderr.splitlines()[-1]


@pytest.mark.slow  # multi-process: launches two training processes and resumes them
def test_fsdp2_on_two_processes_matches_one_process_resumes_exactly_and_exports_a_working_folder(
        train_data, one_process, tmp_path):
    """The shipped FSDP2 launcher config on 2 CPU processes (gloo): parameters, gradients, optimizer
    state and the EMA sharded over the processes. Killed (SIGKILL) right after its step-2 save and
    resumed, it gives the one-process losses (same summation orders on the CPU: equal to 1e-6), and
    the inference folder it gathers from the shards holds the one-process run's EMA weights and
    generates video."""
    import torch
    from safetensors.torch import load_file

    from dyadgen.inference.pipeline import DyadGenPipeline

    out = tmp_path / "fsdp"
    args = train_args(out, train_data, *STEPS, "train.save_every=2", "train.sample_every=6",
                      "train.sample_seconds=0.32")
    killed = subprocess.run([*fsdp_launcher(), str(REPO / "scripts" / "train.py"), *args], cwd=REPO,
                            capture_output=True, text=True, timeout=600,
                            env=train_env() | {"DYADGEN_FAILPOINT": "save:renamed:2"})
    assert killed.returncode != 0 and "(FSDP2, sharded parameters)" in killed.stdout, killed.stderr[-3000:]
    assert sorted(losses(out)) == [1, 2]
    resumed = run_train([*args, "train.resume=latest"], launcher=fsdp_launcher())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = losses(one_process), losses(out)
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    assert [b[s]["loss"] for s in range(1, 7)] == pytest.approx([a[s]["loss"] for s in range(1, 7)], rel=1e-6)
    assert (out / "samples" / "step_0000006.mp4").stat().st_size > 0  # every rank generated, rank 0 wrote

    step = out / "checkpoints" / "step_0000006"
    ema = load_file(step / "ema.safetensors")
    exported = load_file(step / "inference" / "model.safetensors")
    reference = load_file(one_process / "checkpoints" / "step_0000006" / "inference" / "model.safetensors")
    assert set(exported) == set(reference)
    for name, value in exported.items():  # full shapes, gathered from both shards
        assert value.shape == reference[name].shape
        torch.testing.assert_close(value, reference[name], rtol=1e-5, atol=1e-6)
    assert all(torch.equal(exported[k], v) for k, v in ema.items())  # the folder holds the EMA weights
    pipe = DyadGenPipeline.from_pretrained(step / "inference", device="cpu")
    frames = pipe.frames(REPO / "examples" / "left.wav", REPO / "examples" / "right.wav",
                         max_seconds=0.32)  # [P,T,H,W,3]
    assert frames.shape[:2] == (2, 8) and frames.dtype == np.uint8

