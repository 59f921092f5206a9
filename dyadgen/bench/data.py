"""Data benchmarks: preprocessing throughput and peak memory on 1- and 10-minute videos, and how fast
the training loader reads shards at the real latent size against what a trainer consumes.

Everything here is measured on this machine in one run, except the trainer's consumption on a GPU,
which is projected from the training step's FLOPs (counted on fake tensors) at a stated utilisation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from dyadgen.bench.memory import fake_batch, quiet, step_model
from dyadgen.cache.loader import ShardDataset
from dyadgen.cache.shards import write_manifest
from dyadgen.cache.windows import write_video_shard
from dyadgen.clock import FPS, SAMPLE_RATE
from dyadgen.config.presets import preset
from dyadgen.data.faces import FaceLook, FacePose, draw_face
from dyadgen.data.layout import SIDES, SpokenTurn
from dyadgen.data.synthetic import write_recording
from dyadgen.encoders.fitted import FittedTokenizer
from dyadgen.models import DyadBatch


def write_long_video(root: Path, name: str, seconds: float, width: int, height: int, seed: int = 0) -> Path:
    """A dialogue video of ``seconds`` in SocioEmoDialog's layout (raw side-by-side video, channel
    wavs, diarization logs, turn clips): turns of 2-5 s in alternation, drawn faces whose mouths move
    while they speak, noise-burst voices. Frames are written as they are drawn (memory is flat)."""
    rng = np.random.default_rng(seed)
    T = int(seconds * FPS)
    turns, t, side = [], 0.5, 0
    while t < seconds - 2.5:
        end = min(t + rng.uniform(2.0, 5.0), seconds - 0.5)
        turns.append(SpokenTurn(SIDES[side], round(t, 2), round(end, 2)))
        t, side = end + rng.uniform(0.3, 1.0), 1 - side
    speaking = np.zeros((2, T), bool)  # [P,T]
    audio = np.zeros((2, T * SAMPLE_RATE // FPS), np.float32)  # [P,N]
    for turn in turns:
        p = SIDES.index(turn.side)
        a, b = int(turn.start * FPS), int(turn.end * FPS)
        speaking[p, a:b] = True
        n = (b - a) * SAMPLE_RATE // FPS
        envelope = 0.5 + 0.5 * np.sin(np.linspace(0, 6 * np.pi * (b - a) / FPS, n)) ** 2
        audio[p, a * SAMPLE_RATE // FPS: a * SAMPLE_RATE // FPS + n] = 0.2 * envelope * rng.standard_normal(n)
    heard = audio + 0.08 * audio[::-1]  # each microphone hears the partner a little
    half = width // 2
    looks = [FaceLook.random(rng), FaceLook.random(rng)]
    faces = [[draw_face(looks[p], FacePose(mouth=m), height, half) for m in (0.0, 0.4, 0.8)] for p in range(2)]

    def frames():  # uint8 [H,W,3] each, drawn as they are written
        for f in range(T):
            mouth = [1 + (f // 3) % 2 if speaking[p, f] else 0 for p in range(2)]
            yield np.concatenate([faces[0][mouth[0]], faces[1][mouth[1]]], axis=1)

    return write_recording(root, name, frames(), (height, 2 * half), heard, SAMPLE_RATE, turns)


def _peak_rss_of(command: list[str], env: dict) -> tuple[float, int, str]:
    """Run ``command``; its wall time, peak RSS (bytes, from the kernel's accounting of that child
    alone) and output."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed ({proc.returncode}):\n{out[-2000:]}")
    return time.perf_counter() - start, usage.ru_maxrss * 1024, out


def preprocess_report(minutes: list[float], width: int = 1280, height: int = 720, workdir: str | None = None,
                      device: str = "cpu") -> dict:
    """`dyadgen preprocess` (tiny preset, its random VAE, a fitted tokenizer) on one synthetic video
    of each length, each in its own process: video seconds per second and peak RSS."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        FittedTokenizer.fit([rng.standard_normal(64000).astype(np.float32)], num_codes=64, n_mels=16) \
            .save_pretrained(tmp / "tok")
        rows = []
        for m in minutes:
            root = tmp / f"data_{m:g}min"
            root.mkdir()
            start = time.perf_counter()
            write_long_video(root, f"990101_{int(m):03d}", m * 60, width, height)
            made = time.perf_counter() - start
            command = [sys.executable, "-m", "dyadgen", "preprocess", "--data", str(root), "--out",
                       str(tmp / f"shards_{m:g}"), "--preset", "tiny", "--device", device, "vae.name_or_path=",
                       f"audio_tokenizer.name_or_path={tmp / 'tok'}", "data.test_fraction=0", "data.val_fraction=0"]
            wall, rss, out = _peak_rss_of(command, {**os.environ, "TQDM_DISABLE": "1"})
            if "from 1 videos" not in out:
                raise RuntimeError(f"preprocess did not encode the {m:g}-minute video:\n{out[-2000:]}")
            shard_bytes = sum(p.stat().st_size for p in (tmp / f"shards_{m:g}").rglob("*.tar"))
            rows.append({"minutes": m, "seconds": wall, "video_s_per_s": m * 60 / wall, "peak_rss_mib": rss / 2**20,
                         "shard_mb": shard_bytes / 1e6, "made_in_s": made})
    whole = {m: (m * 60 * FPS) * height * width * 3 / 2**30 for m in minutes}  # uint8 frames of the whole video
    return {"width": width, "height": height, "rows": rows, "rss_ratio": rows[-1]["peak_rss_mib"] /
            rows[0]["peak_rss_mib"], "whole_video_decode_gib": whole}


def train_flops_per_window(cfg) -> float:
    """FLOPs of one training step (forward and backward) on one window of ``cfg``'s size, counted by
    ``torch.utils.flop_counter`` on fake tensors (nothing computed)."""
    latent = cfg.latent_shape
    with quiet(), FakeTensorMode():
        torch.manual_seed(0)
        model = step_model(cfg, latent)
        batch = DyadBatch.from_dict(fake_batch(cfg, latent, 1, cfg.audio_tokenizer.num_codes))
        with FlopCounterMode(display=False) as counter:
            model(batch)["loss"].backward()
    return float(counter.get_total_flops())


def write_bench_shards(folder: Path, cfg, videos: int, seconds: float) -> int:
    """``videos`` video shards of ``seconds`` each at ``cfg``'s latent size, random latents (what is
    timed is reading, not encoding); returns the bytes written."""
    latent = cfg.latent_shape
    window = cfg.window_frames
    stride = cfg.window_stride_frames
    (folder / "train").mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for v in range(videos):
        T = int(seconds * FPS)
        segment = {"tokens": torch.randint(0, 512, (2, T), generator=g),
                   "latents": torch.randn(2, T, *latent, generator=g).to(torch.bfloat16),  # [P,T,c,h,w]
                   "speaking": torch.zeros(2, T, dtype=torch.bool), "emotion": torch.zeros(2, T, dtype=torch.long),
                   "meta": {"text": "", "split": "train", "first": 0}}
        write_video_shard(folder / "train" / f"v{v:03d}.tar", f"v{v:03d}", [segment], window=window, stride=stride,
                          num_refs=cfg.data.num_refs)
        del segment
    write_manifest(folder, {"latent_shape": list(latent), "num_audio_codes": 512, "window_frames": window,
                            "window_stride": stride, "audio_margin": list(cfg.audio_margin)})
    return sum(p.stat().st_size for p in folder.rglob("*.tar"))


def read_rate(folder: Path, batch_size: int, num_workers: int, batches: int, buffer: int,
              cache_mib: int = 0) -> dict:
    """Windows per second the training loader gives over ``batches`` batches (after the first, which
    includes starting the workers), and members read from disk per window."""
    data = ShardDataset(folder, "train", batch_size=batch_size, seed=0, buffer=buffer, cache_mib=cache_mib)
    it = data.batches(num_workers, pin_memory=False)
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    wall = time.perf_counter() - start
    out = {"workers": num_workers, "windows_per_s": batches * batch_size / wall, "batches": batches}
    if num_workers == 0:
        out["members_read_per_window"] = data.reader.reads / ((batches + 1) * batch_size)
    return out


def shard_read_report(cfg, *, videos: int = 8, seconds: float = 60.0, batches: int = 8, workdir: str | None = None,
                      gpu_tflops: float = 989.0, utilisation: float = 0.4) -> dict:
    """Reading speed of shards at ``cfg``'s latent size (measured), against the windows per second
    one GPU's training step consumes (projected from its FLOPs). The shards (``videos`` x ``seconds``)
    are larger than the loader's block cache, and ``batches`` stays inside one epoch, so each window
    is read from the files (from the OS page cache: this measures the loader, not the disk)."""
    flops = train_flops_per_window(cfg)
    consume = gpu_tflops * 1e12 * utilisation / flops  # windows per second per GPU
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        folder = Path(tmp) / "shards"
        size = write_bench_shards(folder, cfg, videos, seconds)
        buffer = cfg.data.shuffle_buffer
        rates = [read_rate(folder, cfg.train.batch_size, w, batches, buffer, cfg.data.read_cache_mib) for w in (0, 2)]
        uncached = read_rate(folder, cfg.train.batch_size, 0, batches, buffer, cache_mib=-1)  # no cache
    latent = cfg.latent_shape
    window_mb = 2 * cfg.window_frames * int(np.prod(latent)) * 2 / 1e6
    return {"preset": cfg.preset, "latent_shape": list(latent), "shard_gb": size / 1e9, "buffer": buffer,
            "window_mb": window_mb, "rates": rates, "uncached": uncached,
            "train_flops_per_window": flops, "gpu_tflops": gpu_tflops, "utilisation": utilisation,
            "consumed_windows_per_s_per_gpu": consume}


def main() -> None:  # python -m dyadgen.bench.data preprocess|shards [json]
    kind = sys.argv[1]
    if kind == "preprocess":
        report = preprocess_report([1, 10])
    else:
        report = shard_read_report(preset(sys.argv[2] if len(sys.argv) > 2 else "real"))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
