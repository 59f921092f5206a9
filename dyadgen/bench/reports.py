"""What `dyadgen bench` measures and prints, one function per flag: each prints its table and returns the
figures that ``--json`` writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from dyadgen.bench.data import preprocess_report, shard_read_report
from dyadgen.bench.flops import flops_per_second, parameter_counts
from dyadgen.bench.memory import memory_table
from dyadgen.bench.speed import EXAMPLES, speed_table
from dyadgen.errors import UserError
from dyadgen.inference.pipeline import DyadGenPipeline


def params_report(cfg) -> dict:
    """Parameter counts of each part (meta device, no weights), printed and returned."""
    counts = parameter_counts(cfg)
    print(f"parameters of the {cfg.preset} configuration (meta device, no weights):")
    for name, n in counts.items():
        print(f"  {name:18s} {'n/a' if n is None else f'{n:>15,d}'}")
    return counts


def flops_report(cfg, gpu_tflops: float, utilisation: float) -> tuple[dict, dict]:
    """The decoder's FLOPs per Euler step, chunk and second, every part's FLOPs per second of video, and the
    real-time factor they project on ``gpu_tflops`` at ``utilisation``: (decoder FLOPs, projection)."""
    parts = flops_per_second(cfg, gpu_tflops=gpu_tflops, utilisation=utilisation)
    flops = parts["decoder"]
    print(f"decoder FLOPs of the {cfg.preset} configuration ({flops['euler_steps']} Euler steps, "
          f"{flops['branches']} guidance branch(es), both people, {flops['tokens_per_sequence']} tokens "
          "per sequence):")
    for name in ("per_euler_step", "per_chunk", "per_second"):
        print(f"  {name:18s} {flops[name] / 1e12:15.2f} TFLOP")
    print("FLOPs per second of video, both people:")
    for name, n in parts["per_second"].items():
        print(f"  {name:18s} {n / 1e12:15.2f} TFLOP")
    rt = parts["real_time"]
    taef1 = f", {rt['x_taef1']:.2f}x with TAEF1" if "x_taef1" in rt else ""
    print(f"projected on {rt['gpu_tflops']:.0f} TFLOP/s at {rt['utilisation']:.0%}: {rt['x']:.2f}x real time "
          f"with the full VAE decode{taef1}")
    return flops, {"per_second": parts["per_second"], "real_time": parts["real_time"]}


def infer_report(checkpoint, seconds: float) -> dict:
    """Measured: the real-time factor (compute seconds per second of video; below 1 = faster than real time),
    full decoder vs fast decoder, alternating runs (full, fast, full, fast) so that load on a shared machine
    hits both alike; the ratio is the figure."""
    pipe = DyadGenPipeline.from_pretrained(checkpoint)
    left, right = EXAMPLES / "left.wav", EXAMPLES / "right.wav"
    times: dict[str, list[float]] = {"full": [], "fast": []}
    modes = ["full", "fast"] if pipe.folder.vae.fast_decoder is not None else ["full"]
    pipe.frames(left, right, max_seconds=1.0)  # warm-up, with the checkpoint's settings as below
    for _ in range(2):
        for mode in modes:
            start = time.perf_counter()
            frames = pipe.frames(left, right, max_seconds=seconds, fast_decoder=mode == "fast")
            times[mode].append(time.perf_counter() - start)
    video_s = frames.shape[1] / 25
    out = {"device": str(pipe.device), "dtype": str(pipe.dtype).removeprefix("torch."), "video_seconds": video_s}
    print(f"inference, measured on {pipe.device} ({out['dtype']}), {video_s:.1f} s of video, best of 2 runs each:")
    for mode in modes:
        out[f"rtf_{mode}"] = min(times[mode]) / video_s
        print(f"  {mode + ' decoder':14s} RTF {out[f'rtf_{mode}']:.2f} ({1 / out[f'rtf_{mode}']:.2f}x real time)")
    if "fast" in modes:
        out["speedup_fast"] = out["rtf_full"] / out["rtf_fast"]
        print(f"  --fast-decoder is {out['speedup_fast']:.2f}x as fast (the ratio is the figure to compare)")
    return out


def memory_report(cfg, budget_gib: float, measure_cpu: bool) -> dict:
    presets = [cfg.preset] if cfg is not None else ["real", "real-0.5b"]
    print(f"estimating peak memory per GPU of one training step ({', '.join(presets)}; fake tensors, bf16, "
          "AdamW foreach); this takes a few minutes", flush=True)
    table = memory_table(presets, budget_gib, cfg)
    print(f"{'preset':10s} {'strategy':10s} {'window':>7s} {'GiB/GPU at 1':>12s} {'at 2':>6s} {'at 4':>6s} "
          f"{'at config micro-batch':>22s} {f'largest in {budget_gib:.0f} GiB':>18s}")
    for preset, rows in table.items():
        for strategy, row in rows.items():
            print(f"{preset:10s} {strategy:10s} {row['window_seconds']:6.2f}s {row['peak_gib_per_gpu_at_1']:12.1f} "
                  f"{row['peak_gib_per_gpu_at_2']:6.1f} {row['peak_gib_per_gpu_at_4']:6.1f} "
                  f"{gib(row['peak_gib_per_gpu']):>14s} (at {row['micro_batch']}) "
                  f"{largest(row['largest_micro_batch']):>18s}")
    print("(at 1, 2 and 4: estimated, every tensor alive during the step; beyond 4: projected linearly from 2 "
          "and 4; '>= 4': the peak is still in the optimizer step at 4, not projected; the CUDA context and the "
          "allocator's reserve, ~1-3 GiB, come on top)")
    if measure_cpu:
        print("measuring one real-0.5b training step at full size on this CPU (fp32, micro-batch 1)...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "cpu.json")
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
            subprocess.run([sys.executable, "-m", "dyadgen.bench.memory", "real-0.5b", "1", tmp, out],
                           check=True, env=env)
            with open(out) as f:
                cpu = json.load(f)
        table.setdefault("real_0.5b", {}).update(cpu)
        ratio = cpu["cpu_estimated_peak_gib"] / cpu["cpu_measured_peak_gib"]
        print(f"real_0.5b on this CPU (fp32, micro-batch 1): measured peak RSS {cpu['cpu_measured_peak_gib']:.2f} GiB, "
              f"estimated {cpu['cpu_estimated_peak_gib']:.2f} GiB (process base {cpu['cpu_base_rss_gib']:.2f} GiB + "
              f"tensors), estimate / measured = {ratio:.3f}; the step took {cpu['step_seconds']:.0f} s")
    return table


def largest(batch: int | None) -> str:
    return ">= 4" if batch is None else str(batch)


def gib(value: float | None) -> str:
    return "not projected" if value is None else f"{value:.1f}"


def preprocess_bench(minutes: str, size: str) -> dict:
    try:
        lengths = [float(m) for m in minutes.split(",")]
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise UserError(f"--minutes {minutes!r} / --size {size!r}: expected e.g. --minutes 1,10 "
                        "--size 1280x720") from None
    report = preprocess_report(lengths, width, height)
    print(f"preprocess (measured, tiny preset, this CPU), {width}x{height} side-by-side source, one process each:")
    for row in report["rows"]:
        print(f"  {row['minutes']:5g} min video: {row['seconds']:7.1f} s, {row['video_s_per_s']:6.2f} video s/s, "
              f"peak RSS {row['peak_rss_mib']:7.0f} MiB, shard {row['shard_mb']:.1f} MB")
    whole = report["whole_video_decode_gib"][lengths[-1]]
    print(f"  peak RSS {lengths[-1]:g} min / {lengths[0]:g} min: {report['rss_ratio']:.2f}x (a whole-video decode "
          f"would hold {whole:.1f} GiB of uint8 frames for the {lengths[-1]:g}-minute one)")
    return report


def shards_bench(cfg, gpu_tflops: float, utilisation: float) -> dict:
    report = shard_read_report(cfg, gpu_tflops=gpu_tflops, utilisation=utilisation)
    print(f"shard reading (measured on this machine, files in the page cache), {cfg.preset} latents "
          f"{report['latent_shape']} ({report['window_mb']:.1f} MB per window), {report['shard_gb']:.2f} GB of "
          f"shards, shuffle buffer {report['buffer']}, batch {cfg.train.batch_size}:")
    for rate in report["rates"]:
        extra = (f", {rate['members_read_per_window']:.2f} members read from disk per window"
                 if "members_read_per_window" in rate else "")
        print(f"  {rate['workers']} workers: {rate['windows_per_s']:8.1f} windows/s{extra}")
    uncached = report["uncached"]
    print(f"  without the block cache (each window reads its head, blocks and pool): "
          f"{uncached['windows_per_s']:8.1f} windows/s, {uncached['members_read_per_window']:.2f} members per window")
    consume = report["consumed_windows_per_s_per_gpu"]
    print(f"one training step reads one window per {report['train_flops_per_window'] / 1e12:.1f} TFLOP (counted on "
          f"fake tensors): {consume:.2f} windows/s per GPU projected at {gpu_tflops:.0f} TFLOP/s x {utilisation:.0%}; "
          f"reading keeps {report['rates'][0]['windows_per_s'] / consume:.1f}x ahead of one GPU in one process")
    return report


def speed_report(checkpoint, seconds: float, positions_s: tuple[float, ...], train_presets: tuple[str, ...],
                 train_steps: int, utilisation: float) -> dict:
    """`dyadgen bench` with no flag: :func:`dyadgen.bench.speed.speed_table`, printed as one table."""
    print("measuring speed in one process (generation per sampler setting, time shares, step cost deep into a "
          "dialogue, training throughput); a few minutes", flush=True)
    r = speed_table(checkpoint, seconds=seconds, positions_s=positions_s, train_presets=train_presets,
                    train_steps=train_steps, utilisation=utilisation)
    m = r["matmul"]
    print(f"\nmachine: {r['device']}, matmul ceiling {r['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s "
          f"({m['dtype']}, {m['n']}x{m['n']}, measured)")
    gen = r["generation"]
    print(f"\ngeneration, measured: real-time factor = compute seconds per second of video (both people, every "
          f"decoder step, the VAE decode and the mp4 writing; below 1 = faster than real time), "
          f"{gen['video_seconds']:.1f} s of examples/, one run each")
    print(f"  {'setting':28s} {'RTF':>7s} {'vs default':>11s}")
    for name, rtf in r["rtf"].items():
        mark = "  <- the checkpoint's setting" if name == gen["default_setting"] else ""
        print(f"  {name:28s} {rtf:7.2f} {rtf / r['rtf_default']:10.2f}x{mark}")
    print(f"  the checkpoint's setting, best of a run before and after the rows: RTF {r['rtf_default']:.2f} "
          f"(last / first run: {gen['drift']:.2f}, how steady the machine was)")
    print(f"  the checkpoint's setting with --compile (torch.compile of the decoder step, after a compiling run): "
          f"RTF {gen['rtf_compiled']:.2f}, {gen['rtf_compiled'] / r['rtf_default']:.2f}x the eager one")
    print(f"  guidance-distilled: {gen['distilled']}")
    print("time shares of one run at the checkpoint's setting (profiler labels): " + ", ".join(
        f"{part} {share:.0%}" for part, share in r["time_shares"].items()))
    sc = r["step_cost"]
    print("chunk step (backbone + one decoder step, no guidance) deep into a dialogue, measured: " + ", ".join(
        f"{k} {v * 1000:.0f} ms" for k, v in sc["seconds_per_step"].items()) + f"; ratio {sc['ratio_key']} = "
        f"{sc['ratio']:.2f} (1 = flat: the KV-cache window)")
    print("\ntraining, measured (random weights, fake batch of the config's window, forward + backward + AdamW):")
    for preset, row in r["train"].items():
        print(f"  {preset:6s} {row['parameters'] / 1e6:6.1f} M parameters: {row['samples_per_s']:.3f} samples/s, "
              f"{row['step_flops'] / 1e12:.2f} TFLOP per step (counted), MFU {row['mfu']:.0%} of the ceiling")
    for proj in r["projection"].values():
        if not isinstance(proj, dict):
            continue
        print(f"\nprojected, not measured: {proj['preset']} on one {proj['gpu'].upper()} "
              f"({proj['gpu_tflops']:.0f} TFLOP/s dense bf16) at {proj['utilisation']:.0%} utilisation, RTF per "
              "setting (FLOPs counted on the meta device; distilled = one branch):")
        for name, rtf in proj["rtf"].items():
            print(f"  {name:28s} {rtf:7.2f}   ({1 / rtf:.1f}x real time)")
    return r
