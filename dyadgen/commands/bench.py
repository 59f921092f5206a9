"""`dyadgen bench`: parameter counts of each part of a configuration, the decoder's FLOPs per second of
video (meta device, no weights), and the peak memory of a training step (fake tensors)."""

from __future__ import annotations

import argparse
import json

from dyadgen.commands.config import add_config_arguments, resolve

HELP = ("count the parameters of each part of a configuration (default: the real preset) and the decoder's "
        "FLOPs per second of video, on the meta device")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", action="store_true", help="parameter counts of each part")
    parser.add_argument("--flops", action="store_true",
                        help="FLOPs of each part per second of generated video (infer.steps, infer.guidance) and the "
                             "real-time factor they project on --gpu-tflops at --utilisation")
    parser.add_argument("--gpu-tflops", type=float, default=989.0,
                        help="dense bf16 TFLOP/s of the GPU for the projection (default 989: one H100 SXM)")
    parser.add_argument("--utilisation", type=float, default=0.4, help="the share of it reached (default 0.4)")
    parser.add_argument("--memory", action="store_true",
                        help="peak memory per GPU of one training step (fake tensors: no GPU, no weights) for the "
                             "real presets (or --config) under DDP on 1 GPU and FSDP2 on 8, and the largest "
                             "micro-batch within --budget-gib")
    parser.add_argument("--budget-gib", type=float, default=80.0, help="GPU memory for --memory (default 80)")
    parser.add_argument("--measure-cpu", action="store_true",
                        help="with --memory: also run one real training step of real-0.5b at full size on this CPU "
                             "(minutes, ~14 GB RAM) and put its peak RSS beside the estimate")
    parser.add_argument("--infer", action="store_true",
                        help="measured here: real-time factor of the bundled (or --checkpoint) inference on "
                             "examples/, with the full VAE decoder and with --fast-decoder, in one run")
    parser.add_argument("--checkpoint", default=None, help="inference folder for --infer (default: bundled)")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio generated per --infer run")
    parser.add_argument("--preprocess", action="store_true",
                        help="preprocessing throughput and peak RSS on synthetic 1- and 10-minute videos (measured)")
    parser.add_argument("--minutes", default="1,10", help="video lengths for --preprocess (default 1,10)")
    parser.add_argument("--size", default="1280x720",
                        help="side-by-side frame size for --preprocess (default 1280x720)")
    parser.add_argument("--shards", action="store_true",
                        help="shard reading at the config's latent size (measured) against a GPU trainer (projected)")
    parser.add_argument("--json", metavar="FILE",
                        help="also write the results as JSON ({'params': {...}, 'decoder_flops': {...}, "
                             "'flops': {...}})")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from dyadgen.bench import flops_per_second, parameter_counts
    from dyadgen.errors import UserError

    if not (args.params or args.flops or args.memory or args.infer or args.preprocess or args.shards):
        raise UserError("dyadgen bench: choose what to measure: --params, --flops, --memory, --infer, --preprocess "
                        "and/or --shards")
    given = args.config is not None or args.preset is not None
    if not given:
        args.preset = "real"
    cfg = resolve(args)
    result: dict = {"preset": cfg.preset}
    if args.memory:
        result["memory"] = memory_report(cfg if given else None, args.budget_gib, args.measure_cpu)
    if args.params:
        result["params"] = counts = parameter_counts(cfg)
        print(f"parameters of the {cfg.preset} configuration (meta device, no weights):")
        for name, n in counts.items():
            print(f"  {name:18s} {'n/a' if n is None else f'{n:>15,d}'}")
    if args.flops:
        parts = flops_per_second(cfg, gpu_tflops=args.gpu_tflops, utilisation=args.utilisation)
        result["decoder_flops"] = flops = parts["decoder"]
        result["flops"] = {"per_second": parts["per_second"], "real_time": parts["real_time"]}
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
    if args.infer:
        result["infer"] = infer_report(args.checkpoint, args.seconds)
    if args.preprocess:
        result["preprocess"] = preprocess_bench(args.minutes, args.size)
    if args.shards:
        result["shards"] = shards_bench(cfg, args.gpu_tflops, args.utilisation)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


def infer_report(checkpoint, seconds: float) -> dict:
    """Measured: seconds of video per second of wall time, full decoder vs fast decoder, alternating runs
    (full, fast, full, fast) so that load on a shared machine hits both alike; the ratio is the figure."""
    import time
    from pathlib import Path

    from dyadgen.pipeline import DyadGenPipeline

    pipe = DyadGenPipeline.from_pretrained(checkpoint)
    examples = Path(__file__).resolve().parents[2] / "examples"
    left, right = examples / "left.wav", examples / "right.wav"
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
        out[f"rtf_{mode}"] = video_s / min(times[mode])
        print(f"  {mode + ' decoder':14s} {out[f'rtf_{mode}']:.2f}x real time")
    if "fast" in modes:
        out["speedup_fast"] = out["rtf_fast"] / out["rtf_full"]
        print(f"  --fast-decoder is {out['speedup_fast']:.2f}x as fast (the ratio is the figure to compare)")
    return out


def memory_report(cfg, budget_gib: float, measure_cpu: bool) -> dict:
    import os
    import subprocess
    import sys
    import tempfile

    from dyadgen.memory import memory_table

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
            subprocess.run([sys.executable, "-m", "dyadgen.memory", "real-0.5b", "1", tmp, out], check=True, env=env)
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
    from dyadgen.bench_data import preprocess_report
    from dyadgen.errors import UserError

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
    from dyadgen.bench_data import shard_read_report

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
