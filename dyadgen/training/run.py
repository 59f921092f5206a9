"""The training run: build everything from the config, then loop over :func:`train_step`, log, save.

``scripts/train.py`` (alone or under ``accelerate launch``) calls :func:`train`. The pieces it wires:
data (dyadgen.data, shards split by rank), the model (dyadgen.models), the optimizer and schedule
(optim.py), EMA (ema.py), the loop state (state.py), step folders (checkpoints.py), metrics
(metrics.py), and the inference folder (dyadgen.inference.folder) written beside each accelerate state.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from einops import rearrange
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from tqdm.auto import tqdm

from dyadgen.clock import FPS
from dyadgen.config import DyadGenConfig
from dyadgen.encoders import load_encoders
from dyadgen.encoders.audio_tokenizer import unconditional_codes
from dyadgen.errors import UserError
from dyadgen.inference.folder import save_inference_folder
from dyadgen.io.video import VideoWriter
from dyadgen.models import DyadBatch, DyadGen
from dyadgen.training.checkpoints import CheckpointError, CheckpointManager, failpoint
from dyadgen.training.data import TrainData, audio_margin_problem, build_data, shard_size_problems
from dyadgen.training.distributed import all_agree, global_counts, is_fsdp, make_accelerator, strategy, unsharded
from dyadgen.training.ema import EMA
from dyadgen.training.loop import NonFiniteGuard, StopSignal, train_step, validation_loss
from dyadgen.training.lora import add_lora, has_lora, merged_state_dict
from dyadgen.training.metrics import MetricsLog, tracker_config
from dyadgen.training.optim import build_optimizer, lr_factor, set_lr
from dyadgen.training.state import TrainState

INFERENCE_DIR = "inference"


@dataclass
class TrainingRun:
    """Everything one training run builds before its first step."""

    cfg: DyadGenConfig
    accelerator: Any
    manager: CheckpointManager
    resume_dir: Path | None
    data: TrainData
    bad: BadSamples
    tokenizer: Any
    vae: Any
    model: nn.Module
    optimizer: Any
    ema: EMA
    state: TrainState
    metrics: MetricsLog
    identities: dict[str, torch.Tensor] | None


def train(cfg: DyadGenConfig) -> int:
    """Train until ``train.max_steps`` (or Ctrl-C / SIGTERM, which save first). Returns an exit code."""
    run = setup(cfg)
    tc, accelerator, state = cfg.train, run.accelerator, run.state
    guard = NonFiniteGuard(tc.max_nonfinite)
    batches = run.data.train.batches(cfg.data.num_workers)
    grad_accum = accelerator.gradient_accumulation_steps
    last_saved = state.step if run.resume_dir is not None else -1
    with StopSignal(tc.stop_grace_s) as stop, tqdm(total=tc.max_steps, initial=state.step, desc="train",
                                                   disable=not accelerator.is_main_process, dynamic_ncols=True) as bar:
        try:
            while state.step < tc.max_steps:
                tick = time.perf_counter()
                micro = [to_device(run.bad.take(next(batches), "training"), accelerator.device)
                         for _ in range(grad_accum)]
                lrs = set_lr(run.optimizer, lr_factor(state.step, warmup_steps=tc.warmup_steps,
                                                       max_steps=tc.max_steps, min_lr_ratio=tc.min_lr_ratio))
                result = train_step(accelerator, run.model, run.optimizer, micro, seed=tc.seed, step=state.step,
                                    grad_clip=tc.grad_clip, stop_requested=stop.requested)
                samples, tokens, bad_total = global_counts(micro, accelerator, len(run.data.train.bad))
                run.bad.check(bad_total, state.step + 1)
                state.samples_seen += samples
                state.tokens_seen += tokens
                if guard.update(state, result.finite, state.step + 1):
                    accelerator.print(f"step {state.step + 1}: non-finite loss or gradient, update skipped "
                                      f"({state.nonfinite_in_row} in a row, {state.nonfinite_total} in all)")
                else:
                    state.step += 1
                    run.ema.update(accelerator.unwrap_model(run.model))
                    log_step(run, result, lrs, samples, tokens, time.perf_counter() - tick, bar)
                    if state.step % tc.save_every == 0 or state.step == tc.max_steps:
                        if save_checkpoint(run, final=state.step == tc.max_steps):
                            last_saved = state.step
                if result.stop_requested:
                    if last_saved != state.step:
                        save_checkpoint(run, final=True)
                    accelerator.print(f"stopped at step {state.step}; resume with train.resume=latest "
                                      f"(exit code {stop.exit_code})")
                    return stop.exit_code
            if last_saved != state.step:
                save_checkpoint(run, final=True)
        finally:
            run.metrics.close()
            accelerator.end_training()
    return 0


def setup(cfg: DyadGenConfig) -> TrainingRun:
    """Clean up after killed saves, load the data, encoders and model, prepare them with accelerate,
    and load the checkpoint to resume from."""
    tc = cfg.train
    accelerator = make_accelerator(cfg)
    is_main = accelerator.is_main_process
    output = Path(tc.output_dir)
    manager = CheckpointManager(output, tc.keep_last)
    if is_main:
        manager.clean_stale()  # what a killed save left behind
    accelerator.wait_for_everyone()
    resume_dir = manager.resolve(tc.resume)
    if is_main:
        output.mkdir(parents=True, exist_ok=True)
        cfg.save(output / "config.json")
    set_seed(tc.seed)  # the same initial weights on every process
    data = build_data(cfg, rank=accelerator.process_index, world_size=accelerator.num_processes)
    if is_main:
        margin = audio_margin_problem(cfg, data.train.manifest)
        if margin:
            print(f"warning: {margin}", flush=True)
        for problem in shard_size_problems(data.train.root, data.train.manifest):
            print(f"warning: {problem}; its unreadable samples will be skipped "
                  f"(check all shards with `dyadgen verify-shards {data.train.root}`)", flush=True)
    bad = BadSamples(cfg, accelerator, len(data.train.samples))
    # sample videos and identities decode on the training device
    tokenizer, vae = load_encoders(cfg.audio_tokenizer, cfg.vae, accelerator.device)
    check_audio_codes(cfg, data, tokenizer)
    model = build_model(cfg, num_audio_codes=tokenizer.num_codes, latent_shape=data.latent_shape)
    if tc.lora_rank > 0:
        if is_fsdp(accelerator):
            raise UserError("train.lora_rank > 0: LoRA is not supported under FSDP; train with DDP "
                            "(configs/accelerate/ddp.yaml) or set train.lora_rank=0")
        add_lora(model, rank=tc.lora_rank, alpha=tc.lora_alpha, targets=tc.lora_targets)
    optimizer = build_optimizer(model, lr=tc.lr, backbone_lr=tc.backbone_lr, weight_decay=tc.weight_decay,
                                betas=(tc.adam_beta1, tc.adam_beta2))
    model, optimizer = accelerator.prepare(model, optimizer)
    if accelerator.gradient_accumulation_steps != tc.grad_accum:
        raise UserError(f"train.grad_accum={tc.grad_accum} but the accelerate config accumulates "
                        f"{accelerator.gradient_accumulation_steps} steps (DeepSpeed's "
                        "gradient_accumulation_steps); make them equal")
    ema = EMA(accelerator.unwrap_model(model), tc.ema_decay)
    state = TrainState()
    state.register(accelerator, loader=data.train, ema=ema)
    if resume_dir is not None:
        accelerator.print(f"resuming from {resume_dir}")
        accelerator.load_state(str(resume_dir))
    elif tc.resume:
        accelerator.print(f"train.resume={tc.resume}: no checkpoint in {output} yet, starting fresh")
    metrics = MetricsLog(output, enabled=is_main)
    metrics.open(resume_step=state.step if resume_dir is not None else None)
    if tc.tracker != "none":
        accelerator.init_trackers("dyadgen", config=tracker_config(cfg.to_dict()))
    identities = default_identities(data, vae, bad) if is_main else None
    accelerator.print(f"training {count_parameters(model):,} parameters ({count_parameters(model, True):,} "
                      f"trainable) on {accelerator.num_processes} process(es) ({strategy(accelerator)}), global batch "
                      f"{tc.batch_size * tc.grad_accum * accelerator.num_processes}")
    return TrainingRun(cfg, accelerator, manager, resume_dir, data, bad, tokenizer, vae, model, optimizer, ema, state,
               metrics, identities)


def log_step(run: TrainingRun, result: Any, lrs: dict[str, float], samples: int, tokens: int, seconds: float,
             bar: Any) -> None:
    """metrics.jsonl, the progress bar and the tracker for one optimizer step; then validation and
    the sample video when they are due."""
    tc, state, accelerator = run.cfg.train, run.state, run.accelerator
    record = {"step": state.step, **result.terms, "grad_norm": result.grad_norm,
              **{f"lr/{k}": v for k, v in lrs.items()}, "samples_per_s": samples / seconds,
              "tokens_per_s": tokens / seconds, "samples_seen": state.samples_seen,
              "nonfinite_total": state.nonfinite_total}
    run.metrics.write(record)
    bar.update(1)
    bar.set_postfix(loss=f"{result.terms['loss']:.4f}", sps=f"{samples / seconds:.1f}")
    if tc.tracker != "none" and state.step % tc.log_every == 0:
        accelerator.log({k if "/" in k else f"train/{k}": v for k, v in record.items() if k != "step"},
                        step=state.step)
    if tc.val_every > 0 and state.step % tc.val_every == 0:
        validate(run.cfg, accelerator, run.model, run.ema, run.data, run.metrics, state.step, run.bad)
    if tc.sample_every > 0 and state.step % tc.sample_every == 0:  # every process: FSDP's forward is collective
        write_sample_video(run.cfg, accelerator, run.model, run.ema, run.data, run.tokenizer, run.vae,
                           Path(tc.output_dir), state.step, run.bad)


def save_checkpoint(run: TrainingRun, final: bool = False) -> bool:
    """Save a checkpoint; False when it failed and ``train.on_save_error=retry`` lets training go on
    (never for the last save, after which nothing would retry)."""
    accelerator, step = run.accelerator, run.state.step

    def write(folder: Path) -> None:
        accelerator.save_state(str(folder))
        failpoint("save:state-written", step)
        write_inference_folder(folder / INFERENCE_DIR, run.cfg, accelerator, run.model, run.ema, run.tokenizer,
                               run.vae, run.identities)

    try:
        path = run.manager.save(step, write, is_main=accelerator.is_main_process,
                                barrier=accelerator.wait_for_everyone, agree=lambda ok: all_agree(accelerator, ok))
    except CheckpointError as err:
        if run.cfg.train.on_save_error != "retry" or final:
            raise
        accelerator.print(f"step {step}: {err}; training goes on and the next save tries again "
                          "(train.on_save_error=retry)")
        return False
    accelerator.print(f"saved {path}")
    return True


# --------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------


def check_audio_codes(cfg: DyadGenConfig, data: TrainData, tokenizer: Any) -> None:
    codes = int(data.train.manifest.get("num_audio_codes", tokenizer.num_codes))
    if codes != tokenizer.num_codes:
        raise UserError(f"{cfg.data.shards}: shards were tokenized with {codes} audio codes, "
                        f"audio_tokenizer.name_or_path={cfg.audio_tokenizer.name_or_path} has {tokenizer.num_codes}")


def build_model(cfg: DyadGenConfig, *, num_audio_codes: int, latent_shape: tuple[int, int, int],
                pretrained: bool = True) -> nn.Module:
    """DyadGen with the backbone's pretrained weights when ``backbone.name_or_path`` names them."""
    return DyadGen.from_config(cfg, num_audio_codes=num_audio_codes, latent_shape=latent_shape,
                               pretrained_backbone=pretrained and bool(cfg.backbone.name_or_path))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def to_device(batch: dict[str, Any], device: torch.device) -> Any:
    """The loader's batch on ``device`` (from pinned memory without blocking where it is pinned), its
    bf16 latents and references converted to fp32 there, not in the loader."""
    moved = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    moved = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in moved.items()}
    return DyadBatch(**moved)


class BadDataError(UserError):
    """More training samples are unreadable than data.max_bad_fraction / data.max_bad_samples allow."""


class BadSamples:
    """Logs each sample the loaders skipped (shard, key, reason) once per place it was met, and stops
    the run once the distinct bad training samples, over all processes, pass the configured limits."""

    def __init__(self, cfg: DyadGenConfig, accelerator: Any, num_samples: int) -> None:
        self.rank = accelerator.process_index
        self.num_samples = num_samples
        self.max_fraction, self.max_count = cfg.data.max_bad_fraction, cfg.data.max_bad_samples
        self.shards = cfg.data.shards
        self.logged: set[tuple[str, int]] = set()

    def take(self, batch: dict[str, Any], where: str) -> dict[str, Any]:
        """The batch without its list of skipped samples, each new one logged."""
        for index, reason in batch.pop("skipped", []):
            if (where, index) not in self.logged:
                self.logged.add((where, index))
                print(f"[rank {self.rank}] skipped a bad sample in {where}: {reason}", flush=True)
        return batch

    def check(self, total: int, step: int) -> None:
        over_share = total > self.max_fraction * self.num_samples
        over_count = 0 <= self.max_count < total
        if over_share or over_count:
            limit = (f"data.max_bad_fraction={self.max_fraction}" if over_share
                     else f"data.max_bad_samples={self.max_count}")
            raise BadDataError(f"stopping at step {step}: {total} of {self.num_samples} training samples are "
                               f"unreadable or fail their checksum (past {limit}); run `dyadgen verify-shards "
                               f"{self.shards}` and copy the bad shards again")


# --------------------------------------------------------------------------------------------------
# Validation, samples, inference folder
# --------------------------------------------------------------------------------------------------


def validate(cfg: DyadGenConfig, accelerator: Any, model: nn.Module, ema: EMA, data: Any,
             metrics: MetricsLog, step: int, bad: BadSamples) -> None:
    """Loss on ``train.val_batches`` held-out batches per process, with the training and the EMA weights."""
    if data.val is None:
        return
    reduce = lambda t: accelerator.reduce(t, reduction="mean")  # noqa: E731
    batches = _val_batches(cfg, accelerator, data, bad)
    raw = validation_loss(model, batches, seed=cfg.train.seed, reduce=reduce)
    with ema.swapped_in(accelerator.unwrap_model(model)):
        smooth = validation_loss(model, batches, seed=cfg.train.seed, reduce=reduce)
    record = {"step": step, **{f"val/{k}": v for k, v in raw.items()},
              **{f"val_ema/{k}": v for k, v in smooth.items()}}
    metrics.write(record)
    if cfg.train.tracker != "none":
        accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)
    accelerator.print(f"step {step}: val loss {raw.get('loss', math.nan):.4f} "
                      f"(EMA {smooth.get('loss', math.nan):.4f})")


def _val_batches(cfg: DyadGenConfig, accelerator: Any, data: Any, bad: BadSamples) -> list[Any]:
    out = []
    for i, batch in enumerate(data.val_batches()):
        if i >= cfg.train.val_batches:
            break
        out.append(to_device(bad.take(batch, "validation"), accelerator.device))
    return out


def default_identities(data: TrainData, vae: Any, bad: BadSamples) -> dict[str, torch.Tensor]:
    """Identity 0 = the left person, 1 = the right person of the first held-out sample (or the first
    training sample when there is no held-out split): for each, the first frame of the window where
    that person is silent (a neutral face; the drawn reference when they speak throughout), as
    reference latents and their decoded images."""
    batch = bad.take(data.first_batch(), "default identities")
    latents = batch["refs"][0].float()  # [P,c,h,w]
    speaking = batch.get("speaking")
    if speaking is not None:
        latents = latents.clone()
        for p in range(latents.shape[0]):
            silent = (~speaking[0, p].bool()).nonzero()
            if len(silent):
                latents[p] = batch["latents"][0, p, silent[0, 0]].float()
    images = vae.decode_uint8(latents)  # [P,H,W,3]
    return {"latents": latents.contiguous().cpu(), "images": images.contiguous().cpu()}


def inference_model(cfg: DyadGenConfig, accelerator: Any, model: nn.Module, ema: EMA) -> nn.Module | None:
    """A plain DyadGen on the CPU holding the EMA weights (LoRA merged in), for the inference folder,
    on the main process (None on the others).

    Built fresh and filled from a CPU state dict, so the training device never holds a second copy.
    Under FSDP every process must call it: the full weights are gathered from all shards.
    """
    unwrapped = accelerator.unwrap_model(model)
    if is_fsdp(accelerator):
        full = get_model_state_dict(unwrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        average = ema.state_dict()  # gathered: collective too
        if not accelerator.is_main_process:
            return None
        weights = {k: _cpu_copy(average.get(k, v)) for k, v in full.items()}
    elif not accelerator.is_main_process:
        return None
    elif has_lora(unwrapped):
        with ema.swapped_in(unwrapped):  # adapters and new parts only: a small swap
            weights = {k: v.cpu() for k, v in merged_state_dict(unwrapped).items()}
    else:
        weights = {k: _cpu_copy(ema.shadow.get(k, v)) for k, v in unwrapped.state_dict().items()}
    plain = build_model(cfg, num_audio_codes=unwrapped.num_audio_codes, latent_shape=tuple(unwrapped.latent_shape),
                        pretrained=False)
    plain.load_state_dict(weights)
    return plain.eval()


def _cpu_copy(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().to("cpu", copy=True)
    return t.float() if t.is_floating_point() else t


def write_inference_folder(folder: Path, cfg: DyadGenConfig, accelerator: Any, model: nn.Module, ema: EMA,
                           tokenizer: Any, vae: Any, identities: dict[str, torch.Tensor] | None) -> None:
    """Every process calls it (FSDP gathers the weights collectively); the main process writes."""
    plain = inference_model(cfg, accelerator, model, ema)
    if plain is not None:
        save_inference_folder(folder, cfg, plain, tokenizer, vae, identities)


@torch.no_grad()
def write_sample_video(cfg: DyadGenConfig, accelerator: Any, model: nn.Module, ema: EMA, data: Any, tokenizer: Any,
                       vae: Any, output: Path, step: int, bad: BadSamples) -> Path | None:
    """``<output_dir>/samples/step_XXXXXXX.mp4``: ground truth (left | right) beside the EMA model's
    generation (left | right) from the same audio tokens and references, for one held-out window, sampled as
    ``dyadgen infer`` samples the exported folder (``infer.*``, guidance's unconditional audio included).

    Every process generates the same window on its own device (no process waits on another at the
    next collective, and FSDP's sharded forward needs them all); the main process decodes and writes."""
    batch = bad.take(data.first_batch(), "sample video")
    chunk = cfg.model.chunk_frames
    frames = min(batch["tokens"].shape[-1], max(chunk, int(cfg.train.sample_seconds * FPS) // chunk * chunk))
    tokens = batch["tokens"][0, :, :frames].to(accelerator.device)  # [P,T]
    refs = batch["refs"][0].float().to(accelerator.device)  # [P,c,h,w]
    emotion = batch["emotion"][0, :, :frames].to(accelerator.device) if "emotion" in batch else None  # [P,T]
    text = batch["text"][0] if batch.get("text") else None
    unwrapped = accelerator.unwrap_model(model)
    was_training = unwrapped.training
    unwrapped.eval()
    try:
        with ema.swapped_in(unwrapped), unsharded(unwrapped):
            unconditional = unconditional_codes(tokenizer, tokens, cfg.infer.unconditional_audio)  # [P,T] or None
            generated = unwrapped.generate(tokens, refs, emotion=emotion, text=text, unconditional=unconditional,
                                           **cfg.infer.sampler())  # [P,T,c,h,w]
    finally:
        unwrapped.train(was_training)
    if not accelerator.is_main_process:
        return None
    truth = batch["latents"][0, :, :frames].float()  # [P,T,c,h,w]
    panels = [vae.decode_uint8(truth[p]) for p in range(2)]  # [T,H,W,3] each, decoded on the VAE's device
    panels += [vae.decode_uint8(generated[p].float()) for p in range(2)]
    video = rearrange(torch.stack(panels), "k t h w c -> t h (k w) c").numpy()  # [T,H,4W,3]
    path = output / "samples" / f"step_{step:07d}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps=FPS, width=video.shape[2], height=video.shape[1]) as writer:
        writer.write(video)
    return path
