"""Speed, measured in one process (what `dyadgen bench` with no flag prints): the machine's matmul ceiling,
generation's real-time factor for every sampler setting a user can pick, where generation's time goes, the
cost of a chunk step deep into a dialogue, training throughput and model FLOP utilisation, and the real
presets' projection on a named GPU.

The real-time factor (RTF) is compute seconds per second of video, both people, every decoder step and
the VAE decode included: below 1 is faster than real time. On a shared machine absolute times drift;
the ratios between figures of one run are what to compare.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from dyadgen.bench.flops import flops_per_second
from dyadgen.bench.memory import fake_batch, step_config, step_model, step_optimizer
from dyadgen.clock import FPS
from dyadgen.config import DyadGenConfig, load_config
from dyadgen.inference.pipeline import DyadGenPipeline, read_tracks

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"  # the README's left.wav and right.wav
PARTS = ("tokenizer", "backbone", "decoder", "vae_decode", "writing")  # the profiler labels, "dyadgen.<part>"
POSITIONS_S = (10.0, 60.0, 300.0)  # where into a dialogue a chunk step is timed
GPUS = {"h100": 989.0}  # dense bf16 TFLOP/s (H100 SXM)


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that a wall-clock time covers it (nothing to wait for on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_ceiling(device: torch.device, seconds: float = 1.0) -> dict:
    """FLOP/s of square matrix products: fp32 on a CPU (n = 2048), bf16 on a GPU (n = 8192), best of runs
    filling ``seconds``."""
    dtype, n = (torch.bfloat16, 8192) if device.type == "cuda" else (torch.float32, 2048)
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b  # warm-up
    best, spent = float("inf"), 0.0
    while spent < seconds:
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return {"flops_per_s": 2 * n**3 / best, "dtype": str(dtype).removeprefix("torch."), "n": n}


@dataclass(frozen=True)
class Setting:
    """One sampler setting a user can pick (``--steps``, ``--guidance-mode``, ``--fast-decoder``)."""

    euler_steps: int
    guidance_mode: str  # "batched" | "separate" | "none" (guidance 1: one branch) | "distilled" (the student)
    fast_decoder: bool

    @property
    def name(self) -> str:
        return f"steps{self.euler_steps}/{self.guidance_mode}/{'fast' if self.fast_decoder else 'full'}"

    def changes(self, guidance: float) -> dict:
        """The pipeline's settings for this row (the checkpoint's guidance scale where it guides)."""
        mode = "batched" if self.guidance_mode == "none" else self.guidance_mode
        return {"euler_steps": self.euler_steps, "guidance": 1.0 if self.guidance_mode == "none" else guidance,
                "guidance_mode": mode, "fast_decoder": self.fast_decoder}


def settings(has_fast_decoder: bool, guided: bool, distilled_steps: tuple[int, ...] = ()) -> list[Setting]:
    """Every setting of a checkpoint: steps 4/2/1 with guidance batched, separate or none (one branch, where
    it guides at all), and its guidance-distilled student's step counts, each with either decoder."""
    modes = ("batched", "separate", "none") if guided else ("none",)
    decoders = (False, True) if has_fast_decoder else (False,)
    return [Setting(steps, mode, fast) for fast in decoders
            for mode, counts in [*((m, (4, 2, 1)) for m in modes), ("distilled", distilled_steps)]
            for steps in sorted(counts, reverse=True)]


def _timed_run(pipe: DyadGenPipeline, audio: np.ndarray, out: Path, changes: dict) -> float:
    synchronize(pipe.device)
    start = time.perf_counter()
    pipe(audio[0], audio[1], out=out, progress=False, **changes)
    synchronize(pipe.device)
    return time.perf_counter() - start


def generation(pipe: DyadGenPipeline, audio: np.ndarray, workdir: Path) -> dict:
    """RTF of writing the video of ``audio`` [P,N] for every setting, one run each, and the checkpoint's
    own setting timed first and last (its drift says how steady the machine was)."""
    video_s = audio.shape[1] / 16000
    default = pipe.options()
    out = workdir / "bench.mp4"
    pipe(audio[0][:16000], audio[1][:16000], out=out, progress=False)  # warm-up
    first = _timed_run(pipe, audio, out, {})
    rows = {}
    student = pipe.model.student
    for setting in settings(pipe.folder.vae.fast_decoder is not None, default.guidance != 1.0,
                            student.cfg.distilled_steps if student is not None else ()):
        rows[setting.name] = _timed_run(pipe, audio, out, setting.changes(default.guidance)) / video_s
    # torch.compile of the decoder step at the checkpoint's setting: one run to compile, then the timed one
    _timed_run(pipe, audio[:, :16000], out, {"compile": True})
    compiled = _timed_run(pipe, audio, out, {"compile": True}) / video_s
    last = _timed_run(pipe, audio, out, {})
    mode = "none" if default.guidance == 1.0 and default.guidance_mode != "distilled" else default.guidance_mode
    default_name = Setting(default.euler_steps, mode, default.fast_decoder).name
    return {"video_seconds": video_s, "rtf": rows, "rtf_default": min(first, last) / video_s,
            "default_setting": default_name, "drift": last / first, "rtf_compiled": compiled,
            "distilled": ("measured: the rows steps*/distilled/* (the checkpoint's guidance-distilled student)"
                          if student is not None else
                          "not measured: this checkpoint has no guidance-distilled student")}


def time_shares(pipe: DyadGenPipeline, audio: np.ndarray, workdir: Path) -> dict:
    """Shares of one run's wall time (the checkpoint's setting) spent under each part's profiler label;
    ``other`` is the rest (reading audio, references, Python between the parts)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if pipe.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        wall = _timed_run(pipe, audio, workdir / "shares.mp4", {})
    spent = {part: 0.0 for part in PARTS}
    for event in prof.key_averages():
        part = event.key.removeprefix("dyadgen.")
        if event.key.startswith("dyadgen.") and part in spent:
            spent[part] += event.cpu_time_total / 1e6  # includes the work the label encloses
    shares = {part: spent[part] / wall for part in PARTS}
    shares["other"] = max(0.0, 1.0 - sum(shares.values()))
    return shares


def step_costs(pipe: DyadGenPipeline, positions_s: tuple[float, ...] = POSITIONS_S, around: int = 8) -> dict:
    """Seconds per chunk step at each position into a dialogue (median of ``around`` steps there), from one
    generation of silence as long as the last position, with one Euler step and no guidance: the backbone's
    step (the only part that sees the history) at full cost, the decoder at its cheapest."""
    model, C = pipe.model, pipe.model.cfg.chunk_frames
    frames = int(max(positions_s) * FPS) + around * C
    silence = int(pipe.folder.tokenizer.encode(np.zeros(16000, np.float32))[0])  # the code of a silent frame
    tokens = torch.full((2, frames), silence, dtype=torch.long, device=pipe.device)  # [P,T]
    refs = pipe.references(None, None)
    stamps: list[float] = []

    def tick(step: int, steps: int, chunk: torch.Tensor) -> None:
        synchronize(pipe.device)
        stamps.append(time.perf_counter())

    stamps.append(time.perf_counter())
    with warnings.catch_warnings():  # a cost, not a video: past the trained distances is expected here
        warnings.filterwarnings("ignore", message="generating .* chunk steps")
        for _ in model.generate_stream(tokens, refs, euler_steps=1, guidance=1.0, callback=tick):
            pass
    durations = np.diff(stamps)  # seconds of chunk step s
    out = {}
    for seconds in positions_s:
        s = min(int(seconds * FPS) // C, len(durations) - around)
        out[f"{seconds:g}s"] = statistics.median(durations[s: s + around])
    first, last = f"{positions_s[0]:g}s", f"{positions_s[-1]:g}s"
    return {"seconds_per_step": out, "ratio": out[last] / out[first], "ratio_key": f"{last}/{first}"}


def training(preset: str, device: torch.device, ceiling: float, *, steps: int = 3, batch_size: int = 1) -> dict:
    """Samples per second of training steps (forward, backward, AdamW) of ``preset`` with random weights on
    the config's window, and their model FLOP utilisation: the step's FLOPs (counted by
    ``torch.utils.flop_counter`` on one step) times steps per second over the measured matmul ceiling (fp32
    on a CPU, bf16 on a GPU, as the step runs)."""
    cfg = step_config(load_config(preset_name=preset))
    torch.manual_seed(0)
    model = step_model(cfg, cfg.latent_shape).to(device)
    optimizer = step_optimizer(cfg, model, foreach=device.type == "cuda")
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v
             for k, v in fake_batch(cfg, cfg.latent_shape, batch_size, cfg.audio_tokenizer.num_codes).items()}

    def step() -> None:  # bf16 autocast on a GPU (as training runs there), fp32 on the CPU
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with FlopCounterMode(display=False) as counter:
        step()  # also the warm-up
    flops = float(counter.get_total_flops())
    times = []
    for _ in range(steps):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    best = min(times)
    params = sum(p.numel() for p in model.parameters())
    return {"preset": preset, "parameters": params, "batch_size": batch_size, "window_frames": cfg.window_frames,
            "samples_per_s": batch_size / best, "step_flops": flops, "mfu": flops / best / ceiling}


def projection(cfg: DyadGenConfig, gpu: str = "h100", utilisation: float = 0.4) -> dict:
    """The RTF a configuration projects on ``gpu`` at ``utilisation`` for each sampler setting: its FLOPs per
    second of video (counted on the meta device) over the GPU's dense bf16 rate. Projected, not measured."""
    tflops = GPUS[gpu]
    rows, parts = {}, {}
    for mode, guidance in (("guided", cfg.infer.guidance), ("distilled", 1.0)):
        variant = copy.deepcopy(cfg)
        variant.infer.euler_steps, variant.infer.guidance = 1, guidance
        one_step = flops_per_second(variant, gpu_tflops=tflops, utilisation=utilisation)["per_second"]
        for steps in (4, 2, 1):  # the decoder runs once per Euler step; nothing else depends on the steps
            per_second = one_step | {"decoder": one_step["decoder"] * steps}
            parts[f"steps{steps}/{mode}"] = per_second
            base = per_second["backbone"] + per_second["decoder"]
            for vae in ("vae_decode", "taef1_decode"):
                if vae in per_second:
                    name = f"steps{steps}/{mode}/{'full' if vae == 'vae_decode' else 'taef1'}"
                    rows[name] = (base + per_second[vae]) / (tflops * 1e12 * utilisation)
    return {"gpu": gpu, "gpu_tflops": tflops, "utilisation": utilisation, "rtf": rows,
            "flops_per_second": parts, "preset": cfg.preset}


def projected_setting(cfg: DyadGenConfig) -> str:
    """The projection's row of a config's own inference settings."""
    mode = "distilled" if cfg.infer.guidance_mode == "distilled" or cfg.infer.guidance == 1.0 else "guided"
    return f"steps{cfg.infer.euler_steps}/{mode}/{'taef1' if cfg.infer.fast_decoder else 'full'}"


def speed_table(checkpoint=None, *, seconds: float = 4.0, positions_s: tuple[float, ...] = POSITIONS_S,
                train_presets: tuple[str, ...] = ("tiny", "small"), train_steps: int = 3,
                projection_presets: tuple[str, ...] = ("real",), utilisation: float = 0.4) -> dict:
    """Everything `dyadgen bench` with no flag measures, in one process (see the module's docstring)."""
    pipe = DyadGenPipeline.from_pretrained(checkpoint)
    audio = read_tracks(EXAMPLES / "left.wav", EXAMPLES / "right.wav", None, seconds)  # [P,N]
    ceiling = matmul_ceiling(pipe.device)
    result = {"device": str(pipe.device), "dtype": str(pipe.dtype).removeprefix("torch."),
              "matmul_flops_per_s": ceiling["flops_per_s"], "matmul": ceiling}
    with tempfile.TemporaryDirectory() as tmp:
        gen = generation(pipe, audio, Path(tmp))
        result.update(rtf=gen["rtf"], rtf_default=gen["rtf_default"], generation=gen)
        result["time_shares"] = time_shares(pipe, audio, Path(tmp))
    steps = step_costs(pipe, positions_s)
    result["step_cost"] = steps
    result[f"step_cost_ratio_{steps['ratio_key'].replace('/', '_')}"] = steps["ratio"]
    result["train"] = {p: training(p, pipe.device, ceiling["flops_per_s"], steps=train_steps) for p in train_presets}
    for preset, row in result["train"].items():
        result[f"train_mfu_{preset}"] = row["mfu"]
    result["projection"] = {}
    for preset in projection_presets:
        cfg = load_config(preset_name=preset)
        proj = projection(cfg, "h100", utilisation)
        key = preset.replace("-", "_").replace(".", "")
        result["projection"][key] = proj
        result["projection"][f"h100_rtf_{key}"] = proj["rtf"][projected_setting(cfg)]
        result["projection"][f"h100_setting_{key}"] = projected_setting(cfg)
    return result
