"""Guidance distillation: a student decoder that does in one pass per Euler step what its teacher does
with classifier-free guidance (two branches) and four steps.

Legend: N rows (one person at one chunk step), C frames per chunk, c,h,w latent, K the teacher's Euler
steps (the largest of ``steps``), k a student's step count (each divides K), w the guidance scale.

1. Record: the teacher generates the first ``record_seconds`` of corpus dialogues with its own sampler
   settings; every chunk step's decoder inputs (the conditional and the unconditional branch's
   :class:`ChunkCondition`) are kept, one row per person. These are the inputs the decoder meets at
   inference, its own past chunks included.
2. Distil: for a batch of rows, a guidance scale w ~ U(guidance_range) per row and fresh noise, the teacher
   solves its guided flow in K Euler steps (the time grid of ``flow.time_grid``). The K-step grid holds the
   k-step grids of every k dividing K, so one teacher solution gives the target of every student step: for
   the interval [t0 -> t1] of a k-step grid the student, at the teacher's state x(t0), predicts the mean
   velocity (x(t1) - x(t0)) / (t1 - t0). For k = K that is the teacher's guided velocity itself; for k < K
   it is the jump the teacher makes in K/k steps (a distilled few-step sampler, as in progressive
   distillation, Salimans and Ho 2022, but all step counts at once and conditioned on the step's span as
   in shortcut models, Frans et al. 2024). Why this and not a mean-flow objective: a teacher exists, its
   guided solution is the thing to keep, and the target costs K teacher calls with no Jacobian-vector
   products.
3. Measure on held-out rows: the relative error of the student's one-pass velocity against the teacher's
   guided velocity (k = K), and the distance of every k-step student sample from the teacher's K-step
   guided sample, beside the same distance for the teacher run unguided in k steps (what skipping
   guidance and steps costs without distillation).

The student starts as a copy of the teacher's decoder, its guidance and span embeddings zero (so it starts
as the conditional velocity); the backbone, the tokenizer and the VAE stay the teacher's. The result is the
teacher's inference folder with the student beside the decoder (``DyadGen.student``, under ``student.``
in model.safetensors), whose ``infer`` section says ``guidance_mode: distilled`` and the chosen step
count (unless ``make_default`` is false); ``--guidance-mode batched`` still samples the teacher from the
same folder.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import Tensor
from tqdm.auto import tqdm

from dyadgen.clock import FPS, SAMPLE_RATE
from dyadgen.config import merge_into
from dyadgen.data.socioemodialog import index_dataset
from dyadgen.data.splits import split_of
from dyadgen.errors import UserError
from dyadgen.inference.folder import InferenceFolder, load_inference_folder, save_inference_folder
from dyadgen.io.audio import load_stereo
from dyadgen.io.files import write_text_atomic
from dyadgen.media.clips import ClipError, crop_people, frame_count, sample_frames, video_boxes
from dyadgen.models import DyadGen, flow
from dyadgen.models.decoder import ChunkCondition, FlowDecoder


@dataclass
class GuidanceDistillConfig:
    """What `scripts/distill_guidance.py` reads (configs/distill/guidance.yaml)."""

    teacher: str = "checkpoints/dyadgen-tiny"  # the inference folder distilled
    data: str = "data/synth"  # a corpus in SocioEmoDialog's layout whose audio the teacher generates from
    out: str = "runs/distilled"  # the student's inference folder
    steps: tuple[int, ...] = (4, 2, 1)  # the Euler step counts the student is distilled for (each divides the largest)
    default_steps: int = 2  # the step count the student generates with when it is the folder's default
    make_default: bool = True  # the written folder generates with the student unless told otherwise
    guidance_range: tuple[float, float] = (1.0, 3.0)  # guidance scales drawn in training (the teacher's default inside)
    record_seconds: float = 12.0  # seconds of each dialogue the teacher generates to record the decoder's inputs
    max_dialogues: int = 24  # training dialogues recorded
    held_out_dialogues: int = 2  # dialogues of the val/test split held out for the measures
    max_steps: int = 600
    batch_size: int = 24
    lr: float = 2e-4
    warmup_steps: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_every: int = 100
    seed: int = 0


def load_distill_config(path: str | Path | None, overrides: list[str] = ()) -> GuidanceDistillConfig:
    """The defaults, then a YAML file of the config's fields, then ``key=value`` overrides."""
    cfg = GuidanceDistillConfig()
    if path:
        if not Path(path).is_file():
            raise UserError(f"{path}: no such config")
        merge_into(cfg, yaml.safe_load(Path(path).read_text()) or {}, "distill")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UserError(f"{item}: an override must look like key=value")
        merge_into(cfg, {key.strip(): yaml.safe_load(raw)}, "distill")
    return cfg


@dataclass
class Rows:
    """Recorded decoder inputs, one row per person and chunk step: both branches' conditions."""

    cond: ChunkCondition  # [N,...]
    uncond: ChunkCondition  # [N,...] (the same ref, prev and noise level; the teacher's unconditional audio)

    def __len__(self) -> int:
        return self.cond.tokens.shape[0]

    def take(self, index: Tensor) -> Rows:
        pick = lambda c: ChunkCondition(*(f[index] for f in c.fields()))  # noqa: E731
        return Rows(pick(self.cond), pick(self.uncond))

    @classmethod
    def cat(cls, parts: list[Rows]) -> Rows:
        join = lambda cs: ChunkCondition(*(torch.cat(f) for f in zip(*(c.fields() for c in cs), strict=True)))  # noqa: E731
        return cls(join([p.cond for p in parts]), join([p.uncond for p in parts]))


def dialogue_inputs(folder: InferenceFolder, data: str | Path, seconds: float, *, train: bool, limit: int,
                    skipped: list[str] | None = None) -> Iterator[tuple[str, Tensor, Tensor]]:
    """(video name, audio tokens long [P,T], reference latents [P,c,h,w]) of up to ``limit`` videos of a
    corpus: the first ``seconds`` of each, each person's reference their first frame; ``train`` picks the
    training split (by dialogue id, the training run's rule) or the rest. A video that cannot be read is
    skipped with a message and appended to ``skipped``."""
    cfg = folder.config
    index = index_dataset(data, script_json=cfg.data.script_json, video_to_dialogue=cfg.data.video_to_dialogue)
    in_train = lambda v: split_of(v.dialogue_id or v.name, cfg.data.val_fraction, cfg.data.test_fraction) == "train"  # noqa: E731
    videos = [v for v in index.videos if v.raw_video is not None and in_train(v) == train]
    done = 0
    for video in videos:
        if done >= limit:
            return
        try:
            T = frame_count(video.raw_video)
            first = crop_people(np.stack(sample_frames(video.raw_video, [0])), (cfg.data.height, cfg.data.width),
                                video_boxes(video.raw_video, T))[0][:, 0]  # uint8 [P,3,h,w]
            tracks = load_stereo(video.raw_video)[:, : int(seconds * SAMPLE_RATE)]  # [P,N] at 16 kHz
        except (ClipError, UserError) as err:
            print(f"skipped {video.name}: {err}")
            if skipped is not None:
                skipped.append(f"{video.name}: {err}")
            continue
        tokens = torch.stack([folder.tokenizer.encode(t) for t in tracks])[:, : int(seconds * FPS)]  # [P,T]
        with torch.no_grad():
            refs = folder.vae.encode(torch.from_numpy(first).float() / 127.5 - 1)  # [P,c,h,w]
        done += 1
        yield video.name, tokens, refs


def record_rows(folder: InferenceFolder, inputs: Iterator[tuple[str, Tensor, Tensor]], *, seed: int,
                total: int | None = None, desc: str = "record") -> Rows:
    """The teacher generates each dialogue with its checkpoint's sampler settings (guided: both branches,
    its unconditional branch the one those settings name: tracks and audio); every decoder call's inputs
    are kept."""
    parts: list[Rows] = []

    def observe(cond: ChunkCondition, uncond: ChunkCondition | None, noise: Tensor) -> None:
        if uncond is None:
            raise UserError("the teacher's settings do not guide (infer.guidance 1): nothing to distil")
        parts.append(Rows(cond, uncond))

    for _, tokens, refs in tqdm(inputs, total=total, desc=desc, unit="dialogue"):
        for _ in folder.model.generate_stream(tokens, refs, observe=observe, **folder.default_sampling(tokens, seed)):
            pass
    if not parts:
        raise UserError("no dialogue could be read to record the teacher's decoder inputs")
    return Rows.cat(parts)


def chunk_noise(decoder: FlowDecoder, n: int, generator: torch.Generator) -> Tensor:
    """Noise [n,C,c,h,w] for n chunks of ``decoder``'s shape."""
    return torch.randn((n, decoder.chunk_frames, *decoder.latent_shape), generator=generator)


def guided_solution(teacher: FlowDecoder, rows: Rows, noise: Tensor, guidance: Tensor,
                    steps: int) -> tuple[Tensor, Tensor]:
    """The teacher's guided Euler solution: (states [steps+1,N,C,c,h,w] from noise to data, grid [steps+1])."""
    grid = flow.time_grid(steps, teacher.mu, device=noise.device)
    with torch.no_grad():
        states = flow.euler_solve(lambda x, t, span: teacher.guided_velocity(x, t, rows.cond, rows.uncond, guidance),
                                  noise, grid, states=True)
    return states, grid


def distillation_targets(states: Tensor, grid: Tensor, steps: tuple[int, ...],
                         generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For every row one random interval of one random k-step grid (k in ``steps``): the start state
    x(t0) [N,...], t0 [N], the span t0 - t1 [N] and the target mean velocity (x(t1) - x(t0)) / (t1 - t0)."""
    K, N = len(grid) - 1, states.shape[1]
    k = torch.tensor(steps)[torch.randint(len(steps), (N,), generator=generator)]  # [N]
    j = (torch.rand(N, generator=generator) * k).long()  # the interval of the k-step grid, [N]
    a, b = j * (K // k), (j + 1) * (K // k)  # its ends on the K-step grid
    rows = torch.arange(N)
    a, b = a.to(states.device), b.to(states.device)
    x0, x1 = states[a, rows], states[b, rows]  # [N,C,c,h,w]
    t0, t1 = grid[a], grid[b]
    target = (x1 - x0) / (t1 - t0).view(-1, 1, 1, 1, 1)
    return x0, t0, t0 - t1, target


def velocity_error(student: FlowDecoder, teacher: FlowDecoder, rows: Rows, guidance: float, seed: int) -> float:
    """Relative error |v_student - v_teacher| / |v_teacher| of the one-pass velocity against the teacher's
    guided velocity, at the teacher's states of a K-step solution (every interval, held-out rows)."""
    noise = chunk_noise(teacher, len(rows), torch.Generator().manual_seed(seed))
    scale = torch.full((len(rows),), guidance)
    K = max(student.cfg.distilled_steps)
    states, grid = guided_solution(teacher, rows, noise, scale, K)
    num = den = 0.0
    with torch.no_grad():
        for i in range(K):
            t = grid[i].expand(len(rows))
            v_t = (states[i + 1] - states[i]) / (grid[i + 1] - grid[i])
            v_s = student.velocity(states[i], t, rows.cond, scale, (grid[i] - grid[i + 1]).expand(len(rows)))
            num += float((v_s - v_t).pow(2).sum())
            den += float(v_t.pow(2).sum())
    return math.sqrt(num / den)


def sample_errors(student: FlowDecoder, teacher: FlowDecoder, rows: Rows, guidance: float,
                  seed: int) -> dict[str, float]:
    """RMS distance of each k-step sample from the teacher's K-step guided sample (same noise), for the
    student and for the teacher unguided in k steps; and the teacher sample's own RMS (the scale)."""
    noise = chunk_noise(teacher, len(rows), torch.Generator().manual_seed(seed))
    K = max(student.cfg.distilled_steps)
    reference = guided_solution(teacher, rows, noise, torch.full((len(rows),), guidance), K)[0][-1]
    rms = lambda x: float(x.pow(2).mean().sqrt())  # noqa: E731
    out = {"teacher_rms": rms(reference)}
    for k in student.cfg.distilled_steps:
        s = student.sample_distilled(noise, rows.cond, euler_steps=k, guidance=guidance)
        u = teacher.sample(noise, rows.cond, euler_steps=k)
        out[f"student_steps{k}"] = rms(s - reference)
        out[f"unguided_teacher_steps{k}"] = rms(u - reference)
    return out


def make_student(teacher: FlowDecoder, steps: tuple[int, ...]) -> FlowDecoder:
    """A copy of the teacher's decoder with the guidance and span inputs added (zero: it starts as the
    teacher's conditional velocity)."""
    student = teacher.variant(replace(teacher.cfg, distilled_steps=tuple(sorted(steps, reverse=True))))
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or any(not k.startswith(("guidance_embed.", "span_embed.")) for k in missing):
        raise RuntimeError(f"student and teacher decoders differ: missing {missing}, unexpected {unexpected}")
    return student


def with_student(model: DyadGen, student: FlowDecoder) -> DyadGen:
    """The teacher's whole model with ``student`` beside its decoder (a new model, so that its saved
    model_config.json holds the student's config); a student the model had is replaced."""
    out = DyadGen(model.backbone_cfg, model.decoder_cfg, model.cfg, model.num_audio_codes, *model.latent_shape,
                  student=student.cfg)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("student.")}
    state.update({f"student.{k}": v for k, v in student.state_dict().items()})
    out.load_state_dict(state)
    if model.text_tokenizer() is not None:
        out.use_text_tokenizer(model.text_tokenizer())
    return out.eval()


def train_student(student: FlowDecoder, teacher: FlowDecoder, rows: Rows, cfg: GuidanceDistillConfig,
                  held_out: Rows | None = None, log=print) -> list[dict]:
    """Distil ``teacher`` (guided, K steps) into ``student`` on ``rows``; returns the measures logged."""
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    teacher.eval().requires_grad_(False)
    student.train()
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(cfg.warmup_steps, 1)) * (
        0.5 * (1 + math.cos(math.pi * min(s / max(cfg.max_steps, 1), 1.0)))))
    K, (lo, hi) = max(cfg.steps), cfg.guidance_range
    history: list[dict] = []
    bar = tqdm(range(cfg.max_steps), desc="distil", unit="step")
    for step in bar:
        batch = rows.take(torch.randint(len(rows), (cfg.batch_size,), generator=gen))
        scale = lo + (hi - lo) * torch.rand(cfg.batch_size, generator=gen)  # [N]
        noise = chunk_noise(teacher, cfg.batch_size, gen)
        states, grid = guided_solution(teacher, batch, noise, scale, K)
        x0, t0, span, target = distillation_targets(states, grid, cfg.steps, gen)
        loss = (student.velocity(x0, t0, batch.cond, scale, span) - target).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        last = step + 1 == cfg.max_steps
        if held_out is not None and (last or (cfg.eval_every and (step + 1) % cfg.eval_every == 0)):
            student.eval()
            record = {"step": step + 1, "loss": loss.item()}
            for w in sorted({lo, hi, 0.5 * (lo + hi)}):
                record[f"velocity_rel_error/g{w:g}"] = velocity_error(student, teacher, held_out, w, seed=1)
            student.train()
            history.append(record)
            log(json.dumps(record))
    student.eval()
    return history


def distill_guidance(cfg: GuidanceDistillConfig) -> Path:
    """Record, distil, measure and write the student's inference folder (cfg.out); returns its path."""
    if cfg.default_steps not in cfg.steps:
        raise UserError(f"default_steps {cfg.default_steps} is not one of the distilled steps {cfg.steps}")
    folder = load_inference_folder(cfg.teacher)
    teacher = folder.model.decoder
    if folder.config.infer.guidance_mode == "distilled":  # record the teacher's own guided sampling
        folder.config.infer = replace(folder.config.infer, guidance_mode="batched", euler_steps=max(cfg.steps))
    guidance = folder.config.infer.guidance
    skipped: list[str] = []
    train_rows = record_rows(folder, dialogue_inputs(folder, cfg.data, cfg.record_seconds, train=True,
                                                     limit=cfg.max_dialogues, skipped=skipped),
                             seed=cfg.seed, total=cfg.max_dialogues)
    held_rows = record_rows(folder, dialogue_inputs(folder, cfg.data, cfg.record_seconds, train=False,
                                                    limit=cfg.held_out_dialogues, skipped=skipped),
                            seed=cfg.seed + 1, total=cfg.held_out_dialogues, desc="held out")
    print(f"{len(train_rows)} training rows, {len(held_rows)} held-out rows, {len(skipped)} videos skipped")
    student = make_student(teacher, cfg.steps)
    untrained = velocity_error(student, teacher, held_rows, guidance, seed=1)
    history = train_student(student, teacher, train_rows, cfg, held_rows)
    measures = {"teacher": cfg.teacher, "guidance": guidance, "held_out_rows": len(held_rows), "skipped": skipped,
                "velocity_rel_error_untrained": untrained,
                "velocity_rel_error": velocity_error(student, teacher, held_rows, guidance, seed=1),
                "sample_rms": sample_errors(student, teacher, held_rows, guidance, seed=2),
                "history": history, "config": asdict(cfg)}
    model = with_student(folder.model, student)
    config = copy.deepcopy(folder.config)
    if cfg.make_default:
        config.infer = replace(config.infer, guidance_mode="distilled", euler_steps=cfg.default_steps)
    out = save_inference_folder(cfg.out, config, model, folder.tokenizer, folder.vae, folder.identities or None)
    write_text_atomic(out / "distillation.json", json.dumps(measures, indent=2))
    return out
