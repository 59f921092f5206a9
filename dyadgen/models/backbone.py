"""The conversational backbone: a Qwen2.5 decoder run once per person with self/other streams.

Legend: B batch, P persons (0 left, 1 right), S chunk steps, C frames per chunk, M motion/query tokens,
D backbone width, Lt text tokens, L = 3M + 2C tokens per step, c,h,w latent.

Each person's sequence is [text prompt (Lt)] then, per step s,
[M self motion (chunk s-1) | M other motion (chunk s-1) | C self audio | C other audio | M queries],
where "self" is that person's own stream and "other" the partner's (learned stream embeddings, not
left/right), so swapping the two people swaps the outputs exactly. The query tokens' hidden states
are the decoder's condition for that person's chunk s.

Window: the text prompt and step 0 are pinned; besides them a query sees the last W whole steps
(its own included). Training applies this through the attention mask, generation by evicting the
oldest step from the KV cache, so both see the same history shapes as long as the training window is
longer than W. Position ids are defined once, in :meth:`DyadBackbone.positions`: text at 0..Lt-1,
token j of step s at Lt + (offset + s + gap [s > 0]) L + j. Generation has offset and gap 0: after n
steps its query is n steps from the pinned step 0. Training draws both:
- the gap (up to ``model.max_position_offset_steps``), so the distances a 10-minute dialogue meets
  between its queries and the pinned step 0 are trained;
- the offset (up to ``model.max_prompt_offset_steps``), which moves the whole window away from the
  prompt. Without it the prompt is a fixed origin from which a query can read its step's place in the
  training window, a cue that generation past the window's length never gives (measured: issue 26).
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import Tensor, nn
from transformers import DynamicCache, Qwen2Config, Qwen2Model

from dyadgen.compat import drop_cached_span
from dyadgen.config import BackboneConfig, ModelConfig
from dyadgen.errors import UserError
from dyadgen.models.resampler import MotionResampler

SELF, OTHER = 0, 1
MOTION, AUDIO, QUERY = 0, 1, 2


def qwen2_config(cfg: BackboneConfig):
    return Qwen2Config(
        hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads, num_key_value_heads=cfg.num_key_value_heads,
        intermediate_size=cfg.intermediate_size, vocab_size=cfg.vocab_size, rope_theta=cfg.rope_theta,
        max_position_embeddings=cfg.max_position_embeddings, rms_norm_eps=cfg.rms_norm_eps,
        tie_word_embeddings=cfg.tie_word_embeddings, attn_implementation=cfg.attn_implementation,
    )


def build_language_model(cfg: BackboneConfig, *, pretrained: bool) -> nn.Module:
    """Qwen2Model from ``cfg`` (random init), or from ``cfg.name_or_path`` when ``pretrained``."""
    if pretrained and cfg.name_or_path:
        try:
            # fp32 master weights whatever dtype the folder was saved in (transformers 5 keeps the stored
            # dtype by default; bf16 weights would round small AdamW updates away); autocast runs bf16
            return Qwen2Model.from_pretrained(cfg.name_or_path, attn_implementation=cfg.attn_implementation,
                                              dtype=torch.float32)
        except OSError as err:
            raise UserError(
                f"{cfg.name_or_path}: cannot load the Qwen2.5 backbone ({str(err).splitlines()[0]}). Download it "
                f"on a connected machine (`huggingface-cli download {cfg.name_or_path}`) and set "
                "backbone.name_or_path to the local folder holding config.json and model*.safetensors") from None
    return Qwen2Model(qwen2_config(cfg))


class DyadBackbone(nn.Module):
    def __init__(self, cfg: BackboneConfig, model: ModelConfig, *, audio_vocab: int,
                 latent_shape: tuple[int, int, int], resampler_width: int, pretrained: bool = False):
        super().__init__()
        self.cfg, self.model_cfg = cfg, model
        D, M, C = cfg.hidden_size, model.motion_tokens, model.chunk_frames
        self.lm = build_language_model(cfg, pretrained=pretrained)
        if cfg.gradient_checkpointing:
            self.lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        if cfg.freeze_text_embeddings:
            self.lm.get_input_embeddings().weight.requires_grad_(False)
        self.audio_embed = nn.Embedding(audio_vocab, D)
        self.emotion_embed = nn.Embedding(model.num_emotions + 1, D)  # the last id is "no emotion"
        self.stream_embed = nn.Embedding(2, D)
        self.kind_embed = nn.Embedding(3, D)
        self.queries = nn.Parameter(torch.randn(M, D) * 0.02)
        # kept under the backbone (its weights' names), used through DyadGen.resampler
        self.resampler = MotionResampler(latent_shape, C, M, resampler_width, D,
                                         checkpointed=cfg.gradient_checkpointing)
        for emb in (self.audio_embed, self.emotion_embed, self.stream_embed, self.kind_embed):
            nn.init.normal_(emb.weight, std=0.02)

    @property
    def step_len(self) -> int:
        return 3 * self.model_cfg.motion_tokens + 2 * self.model_cfg.chunk_frames

    # ---- sequence layout ------------------------------------------------------------------------

    def step_tokens(self, motion: Tensor, audio: Tensor, emotion: Tensor) -> Tensor:
        """Per-person step tokens in self/other order.

        motion [B,P,S,M,D] (from chunk s-1), audio long [B,P,S,C], emotion long [B,P,S] (no-emotion id
        where unknown) -> [(B P),S,L,D]."""
        B, P, S = audio.shape[:3]
        stream = self.stream_embed.weight
        kind = self.kind_embed.weight
        aud = self.audio_embed(audio) + self.emotion_embed(emotion)[..., None, :]  # [B,P,S,C,D]
        mot = motion + kind[MOTION]
        aud = aud + kind[AUDIO]
        other = lambda x: x.flip(1)  # noqa: E731 - the partner of person p is 1 - p (P = 2)
        seq = torch.cat([
            mot + stream[SELF], other(mot) + stream[OTHER], aud + stream[SELF], other(aud) + stream[OTHER],
            repeat(self.queries + kind[QUERY], "m d -> b p s m d", b=B, p=P, s=S),
        ], dim=3)  # [B,P,S,L,D]
        return rearrange(seq, "b p s l d -> (b p) s l d")

    def text_tokens(self, text_ids: Tensor) -> Tensor:
        """long [N,Lt] -> [N,Lt,D] through the language model's own token embeddings."""
        return self.lm.get_input_embeddings()(text_ids)

    def positions(self, text_len: int, step_ids: Tensor, gap: Tensor | int = 0, offset: Tensor | int = 0) -> Tensor:
        """Position ids of the step tokens, long [N or 1, len(step_ids) L]; text tokens are at 0..Lt-1, every
        step lies ``offset`` [N] steps further on and every step after step 0 another ``gap`` [N]."""
        L = self.step_len
        gap = torch.as_tensor(gap, device=step_ids.device).view(-1, 1, 1)  # [N,1,1]
        offset = torch.as_tensor(offset, device=step_ids.device).view(-1, 1, 1)  # [N,1,1]
        step = offset + step_ids.view(1, -1, 1) + gap * (step_ids.view(1, -1, 1) > 0)  # [N,S,1]
        pos = text_len + step * L + torch.arange(L, device=step_ids.device)  # [N,S,L]
        return pos.flatten(1)

    def window_mask(self, text_len: int, num_steps: int, device: torch.device) -> Tensor:
        """bool [Q,K] for the teacher-forced sequence: causal, text and step 0 pinned, W whole steps."""
        L, W = self.step_len, self.model_cfg.history_steps
        step = torch.cat([torch.full((text_len,), -1, device=device),
                          torch.arange(num_steps, device=device).repeat_interleave(L)])  # [Q]
        idx = torch.arange(step.numel(), device=device)
        causal = idx[None, :] <= idx[:, None]
        pinned = step[None, :] <= 0
        recent = step[None, :] > step[:, None] - W
        return causal & (pinned | recent)

    # ---- teacher forcing ------------------------------------------------------------------------

    def forward(self, text: Tensor, step_tokens: Tensor, gap: Tensor | int = 0, offset: Tensor | int = 0) -> Tensor:
        """All steps in one pass. text [N,Lt,D], step_tokens [N,S,L,D] -> conditions [N,S,M,D]."""
        N, S, L, _ = step_tokens.shape
        Lt, M = text.shape[1], self.model_cfg.motion_tokens
        x = torch.cat([text, step_tokens.flatten(1, 2)], dim=1)  # [N,Lt+S L,D]
        text_pos = torch.arange(Lt, device=x.device).expand(N, Lt)
        step_pos = self.positions(Lt, torch.arange(S, device=x.device), gap, offset).expand(N, -1)
        pos = torch.cat([text_pos, step_pos], dim=1)  # [N,Lt+S L]
        mask = self.window_mask(Lt, S, x.device)[None, None].expand(N, 1, -1, -1)  # [N,1,Q,K]
        hidden = self.lm(inputs_embeds=x, position_ids=pos, attention_mask=mask, use_cache=False).last_hidden_state
        hidden = rearrange(hidden[:, Lt:], "n (s l) d -> n s l d", l=L)  # [N,S,L,D]
        return hidden[:, :, L - M:]  # the query tokens are the last M of each step


class StepCache:
    """Incremental backbone state for generation: a transformers DynamicCache holding the pinned
    prefix (text + step 0) and the last W-1 steps; one step of L tokens is appended per call."""

    def __init__(self, backbone: DyadBackbone, text: Tensor):
        self.backbone = backbone
        self.cache = DynamicCache()
        self.text = text  # [N,Lt,D], consumed together with step 0
        self.text_len = text.shape[1]
        self.step = 0
        self.oldest = 1  # oldest non-pinned step still cached
        self.tokens_processed: list[int] = []  # tokens the backbone ran on, per step
        self.query_positions = torch.empty(0, dtype=torch.long)  # position ids of the last step's tokens [L]
        self.key_positions = torch.empty(0, dtype=torch.long)  # position ids of the cached tokens [K]
        self.attended_positions = self.key_positions  # ... of the tokens the last step attended to

    @property
    def cached_tokens(self) -> int:
        return self.cache.get_seq_length()

    def __call__(self, step_tokens: Tensor) -> Tensor:
        """step_tokens [N,L,D] of the current step -> conditions [N,M,D]."""
        bb = self.backbone
        N, L, _ = step_tokens.shape
        s = self.step
        pos = bb.positions(self.text_len, torch.tensor([s], device=step_tokens.device)).expand(N, -1)  # [N,L]
        if s == 0:
            x = torch.cat([self.text, step_tokens], dim=1)  # [N,Lt+L,D]
            text_pos = torch.arange(self.text_len, device=x.device).expand(N, -1)
            pos = torch.cat([text_pos, pos], dim=1)
            mask = bb.window_mask(self.text_len, 1, x.device)[None, None].expand(N, 1, -1, -1)
        else:
            x = step_tokens
            past = self.cached_tokens
            causal = torch.ones(L, past + L, dtype=torch.bool, device=x.device).tril(past)  # [L,K]
            mask = causal[None, None].expand(N, 1, -1, -1)
        out = bb.lm(inputs_embeds=x, position_ids=pos, attention_mask=mask, cache=self.cache, use_cache=True)
        self.cache = out.cache
        self.query_positions = pos[0, -L:].cpu()
        self.key_positions = torch.cat([self.key_positions, pos[0].cpu()])
        self.attended_positions = self.key_positions
        self.tokens_processed.append(x.shape[1])
        self.step += 1
        self._evict()
        return out.last_hidden_state[:, -bb.model_cfg.motion_tokens:]  # [N,M,D]

    def _evict(self) -> None:
        """Keep the pinned prefix and the last W-1 steps, so the next step sees W whole steps."""
        W, L = self.backbone.model_cfg.history_steps, self.backbone.step_len
        first_needed = max(1, self.step + 1 - W)
        prefix = self.text_len + L
        while self.oldest < first_needed:
            drop_cached_span(self.cache, prefix, prefix + L)
            self.key_positions = torch.cat([self.key_positions[:prefix], self.key_positions[prefix + L:]])
            self.oldest += 1
