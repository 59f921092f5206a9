"""DyadGen: the whole model - backbone conditions, flow-matching decoder, loss and generation.

Legend: B batch, P persons (0 left, 1 right), T frames, S = T / C chunk steps, C frames per chunk,
M motion/query tokens, D backbone width, c,h,w latent, A = (2k+1) + (q+1) audio tokens of a frame
(own around it, partner's up to it).

Audio ids: 0..K-1 are the tokenizer's codes, K is its padding code, K+1 is the null token that
replaces both audio tracks for guidance (so the audio vocabulary holds K+2 entries).

Audio around a training window: the decoder reads each person's own tokens a frames either side of a
frame and the partner's q frames before it, the backbone k frames ahead. A window cut from a longer
dialogue carries those frames (``tokens_before`` [B,P,pre], ``tokens_after`` [B,P,post], from the
shards), so its edges see the audio that generation sees there; they have no latents and no loss.

Sampling noise: each person's noise comes from their own generator, seeded by the user's seed and that
person's reference latents, so the two people blink and drift independently while swapping the people
still swaps the outputs exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from einops import repeat
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn
from torch.profiler import record_function

from dyadgen.config import BackboneConfig, DecoderConfig, DyadGenConfig, ModelConfig, audio_margin, merge_into
from dyadgen.models.backbone import DyadBackbone, StepCache
from dyadgen.models.decoder import ChunkCondition, FlowDecoder
from dyadgen.models.resampler import MotionResampler
from dyadgen.models.text import BYTE_PAD, QwenText, byte_ids


@dataclass
class DyadBatch:
    """A training batch (see the data loader): every tensor has the person axis P = 2."""

    tokens: Tensor  # long [B,P,T] audio codes (padding code where there is no audio)
    latents: Tensor  # float [B,P,T,c,h,w]
    refs: Tensor  # float [B,P,c,h,w] one reference latent per person
    mask: Tensor  # bool [B,T] valid frames
    speaking: Tensor | None = None  # bool [B,P,T]
    emotion: Tensor | None = None  # long [B,P,T], -1 unknown
    text: list[str] | None = None  # one prompt per dialogue
    tokens_before: Tensor | None = None  # long [B,P,pre] audio codes just before the window (padding: none)
    tokens_after: Tensor | None = None  # long [B,P,post] ... and just after it
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DyadBatch:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in names},
                   extra={k: v for k, v in data.items() if k not in names})


def _as(cls, value, section: str):
    """A config section as given, or built from its saved dict (older key names load through the rename
    table, as the root config's do)."""
    if isinstance(value, cls):
        return value
    section_cfg = cls()
    merge_into(section_cfg, value, section)
    return section_cfg


class DyadGen(nn.Module, PyTorchModelHubMixin, library_name="dyadgen", tags=["talking-head", "dyadic"]):
    def __init__(self, backbone: BackboneConfig | dict, decoder: DecoderConfig | dict, model: ModelConfig | dict,
                 num_audio_codes: int, latent_channels: int, latent_height: int, latent_width: int,
                 pretrained_backbone: bool = False, student: DecoderConfig | dict | None = None):
        super().__init__()
        self.backbone_cfg = _as(BackboneConfig, backbone, "backbone")
        self.decoder_cfg = _as(DecoderConfig, decoder, "decoder")
        if self.decoder_cfg.distilled_steps:
            raise ValueError("the decoder is what training trains and guidance runs: a guidance-distilled "
                             "student goes in ``student``")
        self.cfg = _as(ModelConfig, model, "model")
        self.num_audio_codes = num_audio_codes
        self.pad_id, self.null_id = num_audio_codes, num_audio_codes + 1
        self.latent_shape = (latent_channels, latent_height, latent_width)
        audio_vocab = num_audio_codes + 2
        self.backbone = DyadBackbone(self.backbone_cfg, self.cfg, audio_vocab=audio_vocab,
                                     latent_shape=self.latent_shape, resampler_width=self.decoder_cfg.hidden_size,
                                     pretrained=pretrained_backbone)
        self.decoder = FlowDecoder(self.decoder_cfg, cond_dim=self.backbone_cfg.hidden_size,
                                   latent_shape=self.latent_shape, chunk_frames=self.cfg.chunk_frames,
                                   audio_vocab=audio_vocab, time_mean=self.cfg.time_logit_mean,
                                   time_std=self.cfg.time_logit_std, resolution_shift=self.cfg.resolution_shift)
        # optional: the guidance-distilled student of ``decoder`` (scripts/distill_guidance.py), used by
        # guidance_mode "distilled"; training never touches it
        self.student: FlowDecoder | None = None
        if student is not None:
            student_cfg = _as(DecoderConfig, student, "decoder")
            if not student_cfg.distilled_steps:
                raise ValueError("a student decoder's config must name its distilled_steps")
            self.student = self.decoder.variant(student_cfg)
        self._text_tokenizer = None

    @classmethod
    def from_config(cls, cfg: DyadGenConfig, *, num_audio_codes: int, latent_shape: tuple[int, int, int],
                    pretrained_backbone: bool = False) -> DyadGen:
        c, h, w = latent_shape
        return cls(cfg.backbone, cfg.decoder, cfg.model, num_audio_codes, c, h, w,
                   pretrained_backbone=pretrained_backbone)

    # ---- inputs ---------------------------------------------------------------------------------

    def text_ids(self, texts: list[str | None], device: torch.device) -> Tensor:
        """Prompt ids long [N, max_text_tokens]: bytes for tiny presets, Qwen's tokenizer for real ones."""
        length = self.cfg.max_text_tokens
        if self.backbone_cfg.text_tokenizer == "bytes":
            if self.backbone_cfg.vocab_size <= BYTE_PAD:
                raise ValueError("a byte-level text vocabulary needs backbone.vocab_size > 256")
            return byte_ids(texts, length).to(device)
        return self.text_tokenizer()(texts, length).to(device)

    def text_tokenizer(self):
        """The Qwen text tokenizer (None for byte-level prompts): the one a checkpoint folder brought
        (``use_text_tokenizer``), else the backbone's own, from its folder or the local Hub cache."""
        if self.backbone_cfg.text_tokenizer == "bytes":
            return None
        if self._text_tokenizer is None:
            self.use_text_tokenizer(self.backbone_cfg.name_or_path)
        return self._text_tokenizer

    def use_text_tokenizer(self, name_or_path) -> None:
        """Use this text tokenizer: a folder or Hub name, or a loaded one (another model's)."""
        self._text_tokenizer = name_or_path if isinstance(name_or_path, QwenText) else QwenText(str(name_or_path))

    @property
    def audio_margin(self) -> tuple[int, int]:
        """Frames of audio read before and after a window's own frames: (pre, post)."""
        return audio_margin(self.decoder_cfg, self.cfg)

    def with_context(self, tokens: Tensor, before: Tensor | None, after: Tensor | None, pre: int,
                     post: int) -> Tensor:
        """long [...,T] -> [...,pre+T+post]: the window's tokens between the last ``pre`` tokens of
        ``before`` and the first ``post`` of ``after``, padding code where those are absent or short."""
        empty = tokens[..., :0]
        left = before[..., max(0, before.shape[-1] - pre):] if before is not None and pre else empty
        right = after[..., :post] if after is not None and post else empty
        left = F.pad(left, (pre - left.shape[-1], 0), value=self.pad_id)
        right = F.pad(right, (0, post - right.shape[-1]), value=self.pad_id)
        return torch.cat([left, tokens, right], dim=-1)

    def audio_windows(self, tokens: Tensor, after: Tensor | None = None) -> Tensor:
        """Backbone audio per step with the lookahead shift: long [...,T] -> [...,S,C] holding frames
        [sC+k, sC+C+k) (from ``after`` past the end, else the padding code)."""
        k, C = self.cfg.audio_lookahead, self.cfg.chunk_frames
        shifted = self.with_context(tokens, None, after, 0, k)[..., k:]  # [...,T]
        return shifted.unflatten(-1, (-1, C))

    def frame_audio(self, tokens: Tensor, before: Tensor | None = None, after: Tensor | None = None) -> Tensor:
        """Audio of every frame for the decoder: long [...,P,T] -> [...,P,T,A]: each person's own tokens
        t-a..t+a, then the partner's tokens t-q..t (causal: a listener reacts to what was said); frames
        outside the window come from ``before`` / ``after`` [...,P,*] where given."""
        a, q = self.decoder_cfg.audio_context, self.decoder_cfg.partner_context
        own = self.with_context(tokens, before, after, a, a).unfold(-1, 2 * a + 1, 1)  # [...,P,T,2a+1]
        partner = self.with_context(tokens, before, None, q, 0).flip(-2).unfold(-1, q + 1, 1)  # [...,P,T,q+1]
        return torch.cat([own, partner], dim=-1)  # [...,P,T,A]

    def reference_chunk(self, refs: Tensor) -> Tensor:
        """The context of step 0: refs [...,c,h,w] repeated C times -> [...,C,c,h,w]."""
        return repeat(refs, "... c h w -> ... t c h w", t=self.cfg.chunk_frames)

    def previous_chunks(self, refs: Tensor, chunks: Tensor) -> Tensor:
        """The context chunk of every step: refs [...,c,h,w], chunks [...,S,C,c,h,w] -> [...,S,C,c,h,w],
        the reference chunk at s = 0, chunk s - 1 after it."""
        return torch.cat([self.reference_chunk(refs).unsqueeze(-5), chunks[..., :-1, :, :, :, :]], dim=-5)

    def emotion_steps(self, emotion: Tensor | None, shape: tuple[int, int, int], device) -> Tensor:
        """Per-step emotion ids long [B,P,S] (the label at each chunk's first frame; none -> the
        no-emotion id)."""
        none = self.cfg.num_emotions
        if emotion is None:
            return torch.full(shape, none, dtype=torch.long, device=device)
        e = emotion[..., :: self.cfg.chunk_frames]  # [B,P,S]
        return torch.where(e < 0, torch.full_like(e, none), e)

    # ---- training -------------------------------------------------------------------------------

    def forward(self, batch: DyadBatch | dict, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Teacher-forced loss over all chunk steps in one backbone pass.

        Returns "loss" plus per-person ("loss/left", "loss/right") and per-role ("loss/speaking",
        "loss/listening") terms, each averaged over valid frames."""
        if isinstance(batch, dict):
            batch = DyadBatch.from_dict(batch)
        cfg, dev = self.cfg, batch.tokens.device
        B, P, T = batch.tokens.shape
        C = cfg.chunk_frames
        if T % C:
            raise ValueError(f"training windows must be whole chunks: T={T} is not a multiple of C={C}")
        S = T // C
        rand = lambda *shape: torch.rand(*shape, generator=generator, device=dev)  # noqa: E731
        tokens, before, after = batch.tokens, batch.tokens_before, batch.tokens_after
        if self.training:
            draw = rand(B)  # [B]
            drop_audio = (draw < cfg.audio_dropout)[:, None].expand(B, P)  # both tracks of a sample, for guidance
            if cfg.own_audio_dropout > 0:  # or one person's own track, the partner's kept ("own" guidance)
                own = (draw >= cfg.audio_dropout) & (draw < cfg.audio_dropout + cfg.own_audio_dropout)  # [B]
                which = torch.randint(0, P, (B, 1), generator=generator, device=dev)  # [B,1]
                drop_audio = drop_audio | (own[:, None] & (torch.arange(P, device=dev) == which))  # [B,P]

            def drop(t: Tensor | None) -> Tensor | None:
                return t if t is None else torch.where(drop_audio[:, :, None], torch.full_like(t, self.null_id), t)

            tokens, before, after = drop(tokens), drop(before), drop(after)
        emotion = self.emotion_steps(batch.emotion, (B, P, S), dev)  # [B,P,S]
        texts = list(batch.text) if batch.text else [""] * B
        if self.training:
            drop_emotion = rand(B) < cfg.emotion_dropout
            emotion = torch.where(drop_emotion[:, None, None], torch.full_like(emotion, cfg.num_emotions), emotion)
            if cfg.text_dropout > 0:
                keep = (rand(B) >= cfg.text_dropout).tolist()
                texts = [t if k else "" for t, k in zip(texts, keep, strict=True)]

        dtype = self.compute_dtype  # fp32, or bf16 when FSDP casts the parameters
        refs = batch.refs.to(dtype)
        chunks = batch.latents.to(dtype).unflatten(2, (S, C))  # [B,P,S,C,c,h,w]
        prev = self.previous_chunks(refs, chunks)  # [B,P,S,C,c,h,w]
        level = rand(B, P, S) * cfg.context_noise_max if self.training else torch.zeros(B, P, S, device=dev)
        level = level.to(dtype)
        noise = torch.randn(prev.shape, generator=generator, device=dev, dtype=prev.dtype)
        prev = prev + level.view(B, P, S, 1, 1, 1, 1).to(prev.dtype) * noise  # exposure-bias augmentation

        motion = self.resampler(prev.flatten(0, 2), level.flatten()).unflatten(0, (B, P, S))  # [B,P,S,M,D]
        step_tokens = self.backbone.step_tokens(motion, self.audio_windows(tokens, after), emotion)  # [(B P),S,L,D]
        text = self.backbone.text_tokens(self.text_ids(texts, dev))  # [B,Lt,D]
        text = repeat(text, "b l d -> (b p) l d", p=P)
        gap, offset = 0, 0
        if self.training:  # one clock per dialogue: both people share the draws
            gap = self.history_gap(B, generator, dev).repeat_interleave(P)  # [(B P)]
            offset = self.prompt_offset(B, generator, dev).repeat_interleave(P)  # [(B P)]
        cond = self.backbone(text, step_tokens, gap, offset).unflatten(0, (B, P))  # [B,P,S,M,D]

        # the decoder on all steps, or a random subset of them to save memory
        pick = torch.arange(S, device=dev)
        if self.training and 0 < cfg.decoder_steps_per_sample < S:
            pick = torch.randperm(S, generator=generator, device=dev)[: cfg.decoder_steps_per_sample].sort().values
        frame_audio = self.frame_audio(tokens, before, after).unflatten(2, (S, C))  # [B,P,S,C,A]
        if self.training and cfg.decoder_partner_dropout > 0:
            drop_partner = rand(B) < cfg.decoder_partner_dropout  # [B]: both people of a sample
            partner = torch.arange(frame_audio.shape[-1], device=dev) > 2 * self.decoder_cfg.audio_context  # [A]
            frame_audio = torch.where(drop_partner.view(B, 1, 1, 1, 1) & partner, self.null_id, frame_audio)
        chunk_cond = ChunkCondition(
            tokens=cond[:, :, pick].flatten(0, 2),  # [N,M,D], N = B P S'
            ref=repeat(refs, "b p c h w -> (b p s) c h w", s=len(pick)),  # [N,c,h,w]
            prev=prev[:, :, pick, -1].flatten(0, 2),  # the last context frame [N,c,h,w]
            audio=frame_audio[:, :, pick].flatten(0, 2),  # [N,C,A]
            noise_level=level[:, :, pick].flatten(),  # [N]
        )
        frame_loss = self.decoder(chunks[:, :, pick].flatten(0, 2), chunk_cond,  # targets [N,C,c,h,w]
                                  generator=generator).unflatten(0, (B, P, len(pick)))  # [B,P,S',C]
        valid = batch.mask.unflatten(1, (S, C))[:, None, pick].expand(-1, P, -1, -1).float()  # [B,P,S',C]
        return self._loss_terms(frame_loss, valid, batch.speaking, pick)

    @property
    def resampler(self) -> MotionResampler:
        """The motion resampler (previous chunk -> motion tokens); its weights sit under ``backbone.``."""
        return self.backbone.resampler

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the parameters have now: the latents are cast to it (fp32 under autocast; bf16 inside
        an FSDP2 forward with a bf16 mixed-precision policy, which does not cast a batch dataclass)."""
        return self.decoder.patch_in.weight.dtype

    def history_gap(self, batch: int, generator: torch.Generator | None, device) -> Tensor:
        """Steps between the pinned step 0 and step 1 of each training window, long [B]: 0 for half the
        samples (a dialogue's first seconds, as generation starts), uniform in 1..max_position_offset_steps
        for the rest (a window deep into a dialogue, as generation meets it after minutes)."""
        top = self.cfg.max_position_offset_steps
        if top <= 0:
            return torch.zeros(batch, dtype=torch.long, device=device)
        deep = torch.rand(batch, generator=generator, device=device) < 0.5
        gap = torch.randint(1, top + 1, (batch,), generator=generator, device=device)
        return torch.where(deep, gap, torch.zeros_like(gap))

    def prompt_offset(self, batch: int, generator: torch.Generator | None, device) -> Tensor:
        """Steps by which each training window lies further from the text prompt, long [B], uniform in
        0..max_prompt_offset_steps (generation: 0)."""
        top = self.cfg.max_prompt_offset_steps
        return torch.randint(0, max(top, 0) + 1, (batch,), generator=generator, device=device)

    def _loss_terms(self, frame_loss: Tensor, valid: Tensor, speaking: Tensor | None,
                    pick: Tensor) -> dict[str, Tensor]:
        def mean(weight: Tensor) -> Tensor:
            return (frame_loss * weight).sum() / weight.sum().clamp_min(1.0)

        terms = {"loss": mean(valid)}
        for p, name in enumerate(("left", "right")):
            person = torch.zeros_like(valid)
            person[:, p] = 1
            terms[f"loss/{name}"] = mean(valid * person).detach()
        if speaking is not None:
            C = self.cfg.chunk_frames
            talk = speaking.unflatten(2, (-1, C))[:, :, pick].float()  # [B,P,S',C]
            terms["loss/speaking"] = mean(valid * talk).detach()
            terms["loss/listening"] = mean(valid * (1 - talk)).detach()
        return terms

    # ---- generation -----------------------------------------------------------------------------

    @torch.no_grad()
    def generate_stream(self, tokens: Tensor, refs: Tensor, *, emotion: Tensor | None = None,
                        text: str | None = None, euler_steps: int = 4, guidance: float = 1.0, seed: int = 0,
                        context_noise: float = 0.0, guidance_interval: tuple[float, float] = (0.0, 1.0),
                        guidance_rescale: float = 0.0, guidance_mode: str = "batched",
                        unconditional: Tensor | None = None, unconditional_tracks: str = "both",
                        callback: Callable[[int, int, Tensor], None] | None = None,
                        observe: Callable[[ChunkCondition, ChunkCondition | None, Tensor], None] | None = None,
                        ) -> Iterator[Tensor]:
        """Generate one chunk step at a time: yields latents [P,C,c,h,w] (the last chunk cut to T).

        tokens long [P,T] (each person's own audio codes), refs [P,c,h,w], emotion long [P,T] or [P]
        (per frame or one label per person), text: one prompt for the dialogue. With guidance != 1 the
        unconditional branch (both audio tracks null) runs as two more batch elements with their own
        KV cache, fed the same generated motion (``unconditional``: its audio codes long [P,T] instead, e.g.
        both tracks silent). ``unconditional_tracks`` "own": each person's unconditional branch replaces
        only that person's own track and keeps the partner's voice, so guidance sharpens what a person's
        own voice drives (lip sync) and leaves the reaction to the partner as the conditional branch has
        it, at the cost of batched guidance (each person's unconditional sequence is taken from the branch
        that replaces their track). guidance_interval, guidance_rescale and guidance_mode: see
        :meth:`FlowDecoder.sample`; "distilled" samples with the model's guidance-distilled ``student``
        and runs no unconditional branch at all, the guidance scale being the student's input (the interval
        and the rescale do not apply: the student learnt its teacher's plain guidance).
        context_noise: the noise level put on the previous chunk before it
        conditions the next (training draws 0..model.context_noise_max; 0 = clean). The backbone's and the
        decoder's work run under the profiler labels ``dyadgen.backbone`` and ``dyadgen.decoder`` (what
        ``dyadgen bench`` splits time by).
        callback(step, num_steps, chunk) after each step; observe(cond, uncond, noise) before each decoder
        call (what guidance distillation records: the decoder's inputs of every step)."""
        dev = tokens.device
        P, T = tokens.shape
        C = self.cfg.chunk_frames
        S = -(-T // C)
        tokens = F.pad(tokens, (0, S * C - T), value=self.pad_id)  # [P,S C]
        if unconditional is None:
            unconditional = torch.full_like(tokens, self.null_id)
        elif unconditional.shape != (P, T):
            raise ValueError(f"unconditional audio codes of shape {tuple(unconditional.shape)}: expected {(P, T)}")
        else:
            unconditional = F.pad(unconditional.to(tokens), (0, S * C - T), value=self.pad_id)  # [P,S C]
        if emotion is not None and emotion.dim() == 1:
            emotion = emotion[:, None].expand(P, S * C)
        elif emotion is not None:
            emotion = F.pad(emotion, (0, S * C - T), value=-1)
        if S > self.cfg.max_position_offset_steps + self.cfg.history_steps:
            warnings.warn(f"generating {S} chunk steps: past step {self.cfg.max_position_offset_steps} the "
                          "backbone meets distances to the dialogue's start that training never drew "
                          "(model.max_position_offset_steps)", stacklevel=2)
        distilled = guidance_mode == "distilled"
        if distilled and self.student is None:
            raise ValueError("guidance_mode distilled: this model has no guidance-distilled student "
                             "(distil one with scripts/distill_guidance.py)")
        decoder = self.student if distilled else self.decoder
        guided = guidance != 1.0 and not distilled
        if unconditional_tracks not in ("both", "own"):
            raise ValueError(f"unconditional_tracks {unconditional_tracks!r}: choose both or own")
        own = guided and unconditional_tracks == "own"
        if not guided:
            branches = [tokens]
        elif own:  # branch 1 + p: person p's own track replaced, the partner's kept
            person = torch.arange(P, device=dev)[:, None]  # [P,1]
            branches = [tokens] + [torch.where(person == p, unconditional, tokens) for p in range(P)]
        else:
            branches = [tokens, unconditional]
        all_tokens = torch.stack(branches)  # [B,P,S C]: B audio branches, each a "batch element" of 2 people
        B = all_tokens.shape[0]
        # the sequences the backbone and the decoder run, as rows of (B P): every person of every branch, or
        # under "own" the conditional people and then person p of branch 1 + p (the unconditional people)
        rows = torch.arange(B * P, device=dev)
        if own:
            rows = torch.cat([rows[:P], (1 + rows[:P]) * P + rows[:P]])
        G = len(rows) // P  # branches the sequences make: 2 when guided, else 1
        audio = self.audio_windows(all_tokens)  # [B,P,S,C]
        frame_audio = self.frame_audio(all_tokens).flatten(0, 1)[rows].unflatten(0, (G, P))  # [G,P,S C,A]
        frame_audio = frame_audio.unflatten(2, (S, C))  # [G,P,S,C,A]
        emo = self.emotion_steps(emotion[None].expand(B, -1, -1) if emotion is not None else None, (B, P, S), dev)
        text_emb = self.backbone.text_tokens(self.text_ids([text] * G, dev))  # [G,Lt,D]
        state = StepCache(self.backbone, repeat(text_emb, "g l d -> (g p) l d", p=P))
        generators = person_generators(refs, seed)
        refs = refs.to(self.compute_dtype)
        draw = lambda: torch.stack([torch.randn((C, *self.latent_shape), generator=g, device=g.device)  # noqa: E731
                                    for g in generators]).to(dev, refs.dtype)  # [P,C,c,h,w]
        prev_chunk = self.reference_chunk(refs)  # [P,C,c,h,w]
        level = torch.full((P,), float(context_noise), device=dev, dtype=refs.dtype)  # [P]
        for s in range(S):
            context = prev_chunk + context_noise * draw() if context_noise > 0 else prev_chunk  # [P,C,c,h,w]
            with record_function("dyadgen.backbone"):
                motion = self.resampler(context, level)  # [P,M,D]
                motion = repeat(motion, "p m d -> b p 1 m d", b=B)  # the same generated motion for every branch
                step = self.backbone.step_tokens(motion, audio[:, :, s: s + 1], emo[:, :, s: s + 1])  # [(B P),1,L,D]
                cond = state(step[rows, 0]).unflatten(0, (G, P))  # [G,P,M,D]
            branch = [ChunkCondition(cond[g], refs, context[:, -1], frame_audio[g, :, s], level) for g in range(G)]
            noise = draw()  # [P,C,c,h,w]
            if observe is not None:
                observe(branch[0], branch[1] if guided else None, noise)
            with record_function("dyadgen.decoder"):
                chunk = decoder.sample(
                    noise, branch[0], branch[1] if guided else None, euler_steps=euler_steps, guidance=guidance,
                    guidance_interval=guidance_interval, guidance_rescale=guidance_rescale,
                    guidance_mode=guidance_mode,
                )  # [P,C,c,h,w]
            prev_chunk = chunk
            out = chunk[:, : T - s * C] if s == S - 1 else chunk
            if callback is not None:
                callback(s, S, out)
            yield out

    @torch.no_grad()
    def generate(self, tokens: Tensor, refs: Tensor, **kwargs) -> Tensor:
        """All of :meth:`generate_stream` at once: latents [P,T,c,h,w]."""
        return torch.cat(list(self.generate_stream(tokens, refs, **kwargs)), dim=1)

    # ---- conditions (for tests and analysis) -----------------------------------------------------

    @torch.no_grad()
    def teacher_forced_conditions(self, tokens: Tensor, latents: Tensor, refs: Tensor) -> Tensor:
        """Conditions [P,S,M,D] of one dialogue from ground-truth motion, in one pass (no dropout,
        no noise, no position offset)."""
        P, T = tokens.shape
        C = self.cfg.chunk_frames
        S = T // C
        prev = self.previous_chunks(refs, latents.unflatten(1, (S, C)))  # [P,S,C,c,h,w]
        motion = self.resampler(prev.flatten(0, 1), torch.zeros(P * S, device=tokens.device))
        motion = motion.unflatten(0, (1, P, S))  # [1,P,S,M,D]
        emotion = self.emotion_steps(None, (1, P, S), tokens.device)
        step_tokens = self.backbone.step_tokens(motion, self.audio_windows(tokens[None]), emotion)  # [P,S,L,D]
        text = self.backbone.text_tokens(self.text_ids([None] * P, tokens.device))
        return self.backbone(text, step_tokens)

    @torch.no_grad()
    def stepwise_conditions(self, tokens: Tensor, latents: Tensor, refs: Tensor) -> tuple[Tensor, StepCache]:
        """The same conditions computed one step at a time through the KV cache."""
        P, T = tokens.shape
        C = self.cfg.chunk_frames
        S = T // C
        audio = self.audio_windows(tokens[None])  # [1,P,S,C]
        emotion = self.emotion_steps(None, (1, P, S), tokens.device)
        text = self.backbone.text_tokens(self.text_ids([None] * P, tokens.device))
        state = StepCache(self.backbone, text)
        prev = self.reference_chunk(refs)  # [P,C,c,h,w]
        out = []
        for s in range(S):
            motion = self.resampler(prev, torch.zeros(P, device=tokens.device))[None, :, None]
            step = self.backbone.step_tokens(motion, audio[:, :, s: s + 1], emotion[:, :, s: s + 1])
            out.append(state(step[:, 0]))
            prev = latents[:, s * C: (s + 1) * C]
        return torch.stack(out, dim=1), state  # [P,S,M,D]


def person_generators(refs: Tensor, seed: int) -> list[torch.Generator]:
    """One CPU generator per person, seeded by ``seed`` and a digest of that person's reference latents
    refs [P,c,h,w]: different people draw different noise, and the draws follow the person when the
    two are swapped."""
    out = []
    for ref in refs:
        digest = hashlib.sha256(ref.detach().float().cpu().contiguous().numpy().tobytes()).digest()
        out.append(torch.Generator().manual_seed((seed * 1_000_003 + int.from_bytes(digest[:7], "little")) % 2**63))
    return out
