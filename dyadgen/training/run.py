"""The training run: build everything from the config, then loop over :func:`train_step`, log, save.

``scripts/train.py`` (alone or under ``accelerate launch``) calls :func:`train`. The pieces it wires:
data (dyadgen.data, shards split by rank), the model (dyadgen.models), the optimizer and schedule
(optim.py), EMA (ema.py), the loop state (state.py), step folders (checkpoints.py), metrics
(metrics.py), and the inference folder (dyadgen.checkpoint) written beside each accelerate state.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dyadgen.config import DyadGenConfig
from dyadgen.errors import UserError
from dyadgen.training.checkpoints import CheckpointManager
from dyadgen.training.data import TrainData, build_data
from dyadgen.training.ema import EMA
from dyadgen.training.loop import NonFiniteGuard, StopSignal, train_step, validation_loss
from dyadgen.training.metrics import MetricsLog, tracker_config
from dyadgen.training.optim import build_optimizer, lr_factor, set_lr
from dyadgen.training.state import TrainState

INFERENCE_DIR = "inference"


def train(cfg: DyadGenConfig) -> int:
    """Train until ``train.max_steps`` (or Ctrl-C / SIGTERM, which save first). Returns an exit code."""
    tc = cfg.train
    accelerator = make_accelerator(cfg)
    is_main = accelerator.is_main_process
    output = Path(tc.output_dir)
    manager = CheckpointManager(output, tc.keep_last)
    resume_dir = manager.resolve(tc.resume)
    if is_main:
        output.mkdir(parents=True, exist_ok=True)
        cfg.save(output / "config.json")

    from accelerate.utils import set_seed

    set_seed(tc.seed)  # the same initial weights on every process
    data = build_data(cfg, rank=accelerator.process_index, world_size=accelerator.num_processes)
    tokenizer, vae = load_encoders(cfg)
    codes = int(data.train.manifest.get("num_audio_codes", tokenizer.num_codes))
    if codes != tokenizer.num_codes:
        raise UserError(f"{cfg.data.shards}: shards were tokenized with {codes} audio codes, "
                        f"audio_tokenizer.name_or_path={cfg.audio_tokenizer.name_or_path} has {tokenizer.num_codes}")
    model = build_model(cfg, num_audio_codes=tokenizer.num_codes, latent_shape=data.latent_shape)
    if tc.lora_rank > 0:
        from dyadgen.training.lora import add_lora

        add_lora(model, rank=tc.lora_rank, alpha=tc.lora_alpha, targets=tc.lora_targets)
    optimizer = build_optimizer(model, lr=tc.lr, backbone_lr=tc.backbone_lr, weight_decay=tc.weight_decay,
                                betas=(tc.adam_beta1, tc.adam_beta2))
    model, optimizer = accelerator.prepare(model, optimizer)
    grad_accum = accelerator.gradient_accumulation_steps
    if grad_accum != tc.grad_accum:
        raise UserError(f"train.grad_accum={tc.grad_accum} but the accelerate config accumulates "
                        f"{grad_accum} steps (DeepSpeed's gradient_accumulation_steps); make them equal")
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

    identities = default_identities(data, vae, accelerator) if is_main else None
    guard = NonFiniteGuard(tc.max_nonfinite)
    batches = data.train.batches(cfg.data.num_workers)
    accelerator.print(f"training {count_parameters(model):,} parameters ({count_parameters(model, True):,} "
                      f"trainable) on {accelerator.num_processes} process(es), global batch "
                      f"{tc.batch_size * grad_accum * accelerator.num_processes}")

    def save() -> None:
        def write(folder: Path) -> None:
            accelerator.save_state(str(folder))
            write_inference_folder(folder / INFERENCE_DIR, cfg, accelerator, model, ema, tokenizer, vae,
                                   identities)

        path = manager.save(state.step, write, is_main=is_main, barrier=accelerator.wait_for_everyone)
        accelerator.print(f"saved {path}")

    from tqdm.auto import tqdm

    exit_code = 0
    last_saved = state.step if resume_dir is not None else -1
    with StopSignal() as stop, tqdm(total=tc.max_steps, initial=state.step, disable=not is_main,
                                    desc="train", dynamic_ncols=True) as bar:
        try:
            while state.step < tc.max_steps:
                tick = time.perf_counter()
                micro = [to_device(next(batches), accelerator.device) for _ in range(grad_accum)]
                lrs = set_lr(optimizer, lr_factor(state.step, warmup_steps=tc.warmup_steps,
                                                   max_steps=tc.max_steps, min_lr_ratio=tc.min_lr_ratio))
                result = train_step(accelerator, model, optimizer, micro, seed=tc.seed, step=state.step,
                                    grad_clip=tc.grad_clip, stop_requested=stop.requested)
                samples, tokens = global_counts(micro, accelerator)
                state.samples_seen += samples
                state.tokens_seen += tokens
                if guard.update(state, result.finite, state.step + 1):
                    accelerator.print(f"step {state.step + 1}: non-finite loss or gradient, update skipped "
                                      f"({state.nonfinite_in_row} in a row, {state.nonfinite_total} in all)")
                else:
                    state.step += 1
                    ema.update(accelerator.unwrap_model(model))
                    seconds = time.perf_counter() - tick
                    record = {"step": state.step, **result.terms, "grad_norm": result.grad_norm,
                              **{f"lr/{k}": v for k, v in lrs.items()},
                              "samples_per_s": samples / seconds, "tokens_per_s": tokens / seconds,
                              "samples_seen": state.samples_seen, "nonfinite_total": state.nonfinite_total}
                    metrics.write(record)
                    bar.update(1)
                    bar.set_postfix(loss=f"{result.terms['loss']:.4f}", sps=f"{samples / seconds:.1f}")
                    if tc.tracker != "none" and state.step % tc.log_every == 0:
                        accelerator.log({k if "/" in k else f"train/{k}": v for k, v in record.items()
                                         if k != "step"}, step=state.step)
                    if tc.val_every > 0 and state.step % tc.val_every == 0:
                        validate(cfg, accelerator, model, ema, data, metrics, state.step)
                    if tc.sample_every > 0 and state.step % tc.sample_every == 0 and is_main:
                        write_sample_video(cfg, accelerator, model, ema, data, vae, output, state.step)
                    if state.step % tc.save_every == 0 or state.step == tc.max_steps:
                        save()
                        last_saved = state.step
                if result.stop_requested:
                    if last_saved != state.step:
                        save()
                    accelerator.print(f"stopped at step {state.step}; resume with train.resume=latest")
                    exit_code = 130
                    break
            if state.step >= tc.max_steps and last_saved != state.step:
                save()
        finally:
            metrics.close()
            accelerator.end_training()
    return exit_code


# --------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------


def make_accelerator(cfg: DyadGenConfig) -> Any:
    import os

    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration

    tc = cfg.train
    precision: str | None = tc.mixed_precision
    if precision == "auto":
        # a launcher config (ACCELERATE_MIXED_PRECISION) decides; alone: bf16 on a GPU, fp32 on the CPU
        precision = None if "ACCELERATE_MIXED_PRECISION" in os.environ else (
            "bf16" if torch.cuda.is_available() else "no")
    log_with = None if tc.tracker == "none" else tc.tracker
    if tc.tracker == "wandb":
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise UserError("train.tracker=wandb: wandb is not installed (pip install wandb)") from None
    project = ProjectConfiguration(project_dir=tc.output_dir, logging_dir=str(Path(tc.output_dir) / "logs"))
    # Condition dropout can leave a part unused in a step (e.g. the text encoder when every prompt is
    # dropped); DDP must then not wait for its gradients.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    # Several processes and no GPU: accelerate only picks gloo on the CPU when told to (otherwise each
    # process would train alone and all of them would write the same files).
    cpu = "LOCAL_RANK" in os.environ and not torch.cuda.is_available()
    return Accelerator(cpu=cpu, mixed_precision=precision, gradient_accumulation_steps=tc.grad_accum,
                       log_with=log_with, project_config=project, kwargs_handlers=[ddp])


def load_encoders(cfg: DyadGenConfig) -> tuple[Any, Any]:
    from dyadgen.encoders import load_audio_tokenizer, load_video_vae

    return load_audio_tokenizer(cfg.audio_tokenizer), load_video_vae(cfg.vae)


def build_model(cfg: DyadGenConfig, *, num_audio_codes: int, latent_shape: tuple[int, int, int],
                pretrained: bool = True) -> nn.Module:
    """DyadGen with the backbone's pretrained weights when ``backbone.name_or_path`` names them."""
    from dyadgen.models import DyadGen

    return DyadGen.from_config(cfg, num_audio_codes=num_audio_codes, latent_shape=latent_shape,
                               pretrained_backbone=pretrained and bool(cfg.backbone.name_or_path))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def to_device(batch: dict[str, Any], device: torch.device) -> Any:
    from dyadgen.models import DyadBatch

    moved = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    return DyadBatch(**moved)


def global_counts(micro: list[Any], accelerator: Any) -> tuple[int, int]:
    """Samples and audio tokens (both people, valid frames) in this step, over all processes."""
    local = torch.tensor([sum(int(b.tokens.shape[0]) for b in micro),  # [2]
                          sum(int(b.mask.sum()) * int(b.tokens.shape[1]) for b in micro)],
                         device=accelerator.device)
    total = accelerator.reduce(local, reduction="sum")
    return int(total[0]), int(total[1])


# --------------------------------------------------------------------------------------------------
# Validation, samples, inference folder
# --------------------------------------------------------------------------------------------------


def validate(cfg: DyadGenConfig, accelerator: Any, model: nn.Module, ema: EMA, data: Any,
             metrics: MetricsLog, step: int) -> None:
    """Loss on ``train.val_batches`` held-out batches per process, with the training and the EMA weights."""
    if data.val is None:
        return
    reduce = lambda t: accelerator.reduce(t, reduction="mean")  # noqa: E731
    batches = _val_batches(cfg, accelerator, data)
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


def _val_batches(cfg: DyadGenConfig, accelerator: Any, data: Any) -> list[Any]:
    out = []
    for i, batch in enumerate(data.val_batches()):
        if i >= cfg.train.val_batches:
            break
        out.append(to_device(batch, accelerator.device))
    return out


def default_identities(data: TrainData, vae: Any, accelerator: Any) -> dict[str, torch.Tensor]:
    """Identity 0 = the left person, 1 = the right person of the first held-out sample (or the first
    training sample when there is no held-out split): for each, the first frame of the window where
    that person is silent (a neutral face; the drawn reference when they speak throughout), as
    reference latents and their decoded images."""
    batch = data.first_batch()
    latents = batch["refs"][0].float()  # [P,c,h,w]
    speaking = batch.get("speaking")
    if speaking is not None:
        latents = latents.clone()
        for p in range(latents.shape[0]):
            silent = (~speaking[0, p].bool()).nonzero()
            if len(silent):
                latents[p] = batch["latents"][0, p, silent[0, 0]].float()
    with torch.no_grad():
        frames = vae.decode(latents)  # [P,3,H,W] in [-1,1]
    images = ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)  # [P,H,W,3]
    return {"latents": latents.contiguous().cpu(), "images": images.contiguous().cpu()}


def inference_model(cfg: DyadGenConfig, accelerator: Any, model: nn.Module, ema: EMA) -> nn.Module:
    """A plain DyadGen on the CPU holding the EMA weights (LoRA merged in), for the inference folder.

    Built fresh and filled from a CPU state dict, so the training device never holds a second copy.
    """
    from dyadgen.training.lora import has_lora, merged_state_dict

    unwrapped = accelerator.unwrap_model(model)
    if has_lora(unwrapped):
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
    if not accelerator.is_main_process:
        return
    from dyadgen.checkpoint import save_inference_folder

    save_inference_folder(folder, cfg, inference_model(cfg, accelerator, model, ema), tokenizer, vae,
                          identities)


@torch.no_grad()
def write_sample_video(cfg: DyadGenConfig, accelerator: Any, model: nn.Module, ema: EMA, data: Any, vae: Any,
                       output: Path, step: int) -> Path | None:
    """``<output_dir>/samples/step_XXXXXXX.mp4``: ground truth (left | right) beside the EMA model's
    generation (left | right) from the same audio tokens and references, for one held-out window."""
    from einops import rearrange

    from dyadgen.clock import FPS
    from dyadgen.io.video import VideoWriter

    batch = data.first_batch()
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
        with ema.swapped_in(unwrapped):
            generated = unwrapped.generate(tokens, refs, emotion=emotion, text=text, steps=cfg.infer.steps,
                                           cfg=cfg.infer.cfg, seed=cfg.infer.seed)  # [P,T,c,h,w]
    finally:
        unwrapped.train(was_training)
    truth = batch["latents"][0, :, :frames].float()  # [P,T,c,h,w]
    panels = [_decode(vae, truth[p]) for p in range(2)]  # [T,H,W,3] each
    panels += [_decode(vae, generated[p].float().cpu()) for p in range(2)]
    video = rearrange(torch.stack(panels), "k t h w c -> t h (k w) c").numpy()  # [T,H,4W,3]
    path = output / "samples" / f"step_{step:07d}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps=FPS, width=video.shape[2], height=video.shape[1]) as writer:
        writer.write(video)
    return path


def _decode(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    frames = vae.decode(latents.cpu())  # [T,3,H,W] in [-1,1]
    return ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)  # [T,H,W,3]
