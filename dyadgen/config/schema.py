"""The config dataclasses: one per component, composed into :class:`DyadGenConfig` (loading and
overriding: :mod:`dyadgen.config.loading`; the presets: :mod:`dyadgen.config.presets`)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dyadgen.errors import UserError
from dyadgen.io.files import write_text_atomic


class ConfigError(UserError, ValueError):
    """A configuration key is unknown or its value has the wrong type."""


# --------------------------------------------------------------------------------------------------
# Component configs
# --------------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """Where the data lives and how it is cut into training samples."""

    root: str = ""  # a SocioEmoDialog-layout dataset root (published or `dyadgen synth` output)
    shards: str = ""  # folder of preprocessed webdataset shards + manifest.json
    script_json: str = ""  # the dialogue script json; empty = look for *.json beside the root
    video_to_dialogue: str = ""  # optional json {video: dialogue id or [ids in order]}; empty = the video's date
    height: int = 128  # per-person frame size fed to the VAE (pixels)
    width: int = 112
    window_steps: int = 16  # a training window is this many chunk steps (window_steps * C frames)
    window_stride_steps: int = 8  # hop between consecutive windows of one video
    num_refs: int = 1  # reference latents stored per person from every block; a window draws one outside it
    val_fraction: float = 0.05  # held-out dialogues by hash of the dialogue id
    test_fraction: float = 0.05
    actor_map: str = ""  # optional json {video_name: {"left": actor, "right": actor}} for unseen-actor splits
    num_workers: int = 0  # dataloader workers per rank
    shuffle_buffer: int = 64  # windows mixed by the shuffle buffer the shards stream through
    read_cache_mib: int = 0  # latent blocks kept per loader process (0: enough for the buffer, -1: none)
    preprocess_workers: int = 1  # videos encoded at once by `dyadgen preprocess` (its --workers)
    max_bad_fraction: float = 0.01  # training stops past this share of unreadable training samples ...
    max_bad_samples: int = -1  # ... or past this many (-1: no count limit)


@dataclass
class AudioTokenizerConfig:
    """The frozen audio tokenizer: 16 kHz audio -> one token per 25 Hz frame."""

    kind: Literal["whisper_vq", "fitted"] = "fitted"
    name_or_path: str = ""  # WhisperSpeech *.model file / hub name, or a fitted tokenizer folder
    whisper_name_or_path: str = ""  # override of the Whisper encoder (hub name or local folder)
    num_codes: int = 128  # real codes; the padding code is num_codes
    n_mels: int = 40  # fitted tokenizer: log-mel bins per 25 Hz frame
    batch_size: int = 8


@dataclass
class VAEConfig:
    """The frozen video VAE: frames [T,3,H,W] in [-1,1] <-> latents [T,c,H/f,W/f]."""

    name_or_path: str = ""  # an AutoencoderKL: hub name, a `vae` subfolder, or a local folder; empty = random init
    subfolder: str = ""
    latent_channels: int = 8
    block_out_channels: tuple[int, ...] = (16, 32, 64, 64)  # factor = 2 ** (len - 1)
    layers_per_block: int = 1
    shift_factor: float = 0.0
    scaling_factor: float = 1.0
    use_quant_conv: bool = False
    use_post_quant_conv: bool = False
    fast_decoder: str = ""  # optional AutoencoderTiny (TAEF1) name or path for decoding
    encode_batch: int = 16  # frames per VAE call, so long clips never exhaust memory

    @property
    def factor(self) -> int:
        """Pixels per latent cell along each side."""
        return 2 ** (len(self.block_out_channels) - 1)


@dataclass
class BackboneConfig:
    """The Qwen2.5 decoder that reads both people's audio and motion."""

    name_or_path: str = ""  # hub name or local folder of Qwen2.5 weights; empty = random init
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 384
    vocab_size: int = 384  # text vocabulary (byte-level for tiny presets)
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 32768
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True
    # the one transformers kernel that applies the backbone's boolean 4-D window mask as given: eager and
    # flex_attention add a tensor mask to the scores (True/False as +1/+0, nothing blocked), flash
    # attention reads only padding masks
    attn_implementation: Literal["sdpa"] = "sdpa"
    text_tokenizer: Literal["bytes", "qwen"] = "bytes"
    gradient_checkpointing: bool = False  # non-reentrant activation checkpointing of every Qwen layer
    # the text embedding table (151,936 rows in Qwen2.5) stays as pretrained: a few prompt tokens per
    # sample would otherwise cost a dense all-reduce of the whole table every step
    freeze_text_embeddings: bool = False


@dataclass
class DecoderConfig:
    """The flow-matching DiT that denoises one chunk of one person's latents."""

    hidden_size: int = 192
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    patch_size: int = 2
    audio_context: int = 2  # frame t also sees its own audio tokens t-k..t+k
    partner_context: int = 24  # ... and the partner's audio tokens t-q..t (a listener reacts to the last ~1 s)
    attention: Literal["sdpa", "xformers"] = "sdpa"
    gradient_checkpointing: bool = False  # recompute each DiT block and the motion resampler in backward
    # a guidance-distilled student (scripts/distill_guidance.py): the Euler step counts it was distilled for,
    # largest first (it reads the guidance scale and the step's span as inputs, one pass per step);
    # empty = a flow decoder sampled with classifier-free guidance
    distilled_steps: tuple[int, ...] = ()


@dataclass
class ModelConfig:
    """How the backbone and decoder are tied together on the 25 Hz clock."""

    chunk_frames: int = 4  # C
    motion_tokens: int = 4  # M
    history_steps: int = 16  # W: whole steps the backbone attends back to (the KV cache besides the prefix)
    audio_lookahead: int = 1  # k frames of audio lookahead
    audio_dropout: float = 0.1  # both audio tracks -> null for a whole sample
    # one person's own track (either, at random) -> null for a whole sample, the partner's kept: what
    # guidance with infer.unconditional_tracks "own" steers from (drawn apart from audio_dropout's samples)
    own_audio_dropout: float = 0.0
    # the partner's audio in the decoder's frame window -> null for a whole sample (the backbone keeps it), so
    # the backbone's other stream has to carry the listener's reactions rather than the decoder alone
    decoder_partner_dropout: float = 0.0
    emotion_dropout: float = 0.1
    text_dropout: float = 0.1
    context_noise_max: float = 0.1  # max noise level on resampler inputs and context frames
    time_logit_mean: float = 0.0
    time_logit_std: float = 1.0
    resolution_shift: bool = True  # FLUX's mu(token count) shift of the flow time
    max_text_tokens: int = 32
    num_emotions: int = 19  # SocioEmoDialog's 18 labels + "Other"; one more id means "no emotion"
    decoder_steps_per_sample: int = 0  # >0: the decoder's loss on this many random chunk steps per sample
    # training puts a window's steps after step 0 up to this many steps further from the pinned step 0,
    # as deep into a dialogue as generation goes (3750 steps = 10 min at C=4)
    max_position_offset_steps: int = 3750
    # ... and moves each training window as a whole (step 0 included) up to this many steps away from the
    # text prompt, so the distance to the prompt cannot tell a step where it lies in its window (a cue that
    # generation past the window's length never matches; without it the single-clip learning check lost
    # 1.3 dB on average over 4 seeds)
    max_prompt_offset_steps: int = 1500


@dataclass
class TrainConfig:
    output_dir: str = "runs/default"
    max_steps: int = 1000
    save_every: int = 250
    keep_last: int = 3
    resume: str = ""  # "latest" or a step folder
    seed: int = 0
    batch_size: int = 4  # per process
    grad_accum: int = 1
    lr: float = 3e-4  # new parts
    backbone_lr: float = 1e-4  # pretrained backbone
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    ema_decay: float = 0.999
    lora_rank: int = 0  # >0: LoRA on the backbone through peft
    log_every: int = 10
    val_every: int = 500
    sample_every: int = 1000
    max_nonfinite: int = 10  # stop after this many non-finite steps in a row
    find_unused_parameters: bool = False  # DDP: only needed when a trainable part can go unused in a step
    on_save_error: Literal["stop", "retry"] = "stop"  # a failed save (full disk): stop, or retry at the next
    stop_grace_s: float = 120.0  # after SIGTERM/Ctrl-C: save and exit within this, else exit unsaved
    tracker: Literal["tensorboard", "wandb", "none"] = "tensorboard"
    min_lr_ratio: float = 0.1  # the cosine ends at this fraction of each group's lr
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    lora_alpha: float = 0.0  # LoRA scale numerator; 0 = lora_rank (scale 1)
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")  # backbone Linear names
    val_batches: int = 4  # batches per process of held-out dialogues per validation
    sample_seconds: float = 4.0  # length of the side-by-side sample video (at most one training window)


@dataclass
class InferConfig:
    """How to generate. A checkpoint's config.json holds its defaults; `dyadgen infer`, the Python API
    (``DyadGenPipeline.options``) and `dyadgen evaluate` all start from them and change only what the
    caller names."""

    euler_steps: int = 4  # Euler steps of the flow decoder per chunk
    guidance: float = 2.0  # classifier-free guidance scale on the velocity (1 = none)
    guidance_interval: tuple[float, float] = (0.0, 1.0)  # flow times t (1 = noise) whose steps are guided
    guidance_rescale: float = 0.0  # 0..1: the guided velocity pulled to the conditional one's spread
    # the decoder's conditional and unconditional branches in one batched call, or in two calls; or
    # "distilled": the checkpoint's guidance-distilled student, one pass per step (no interval, no rescale)
    guidance_mode: Literal["batched", "separate", "distilled"] = "batched"
    # the unconditional branch's audio: the null code on both tracks (what audio dropout trains), or both
    # tracks silent (the tokenizer's codes of digital silence): guidance then pushes from "nobody speaks"
    # toward the dialogue, and a listener's silent track is the same in both branches, so it adds nothing
    unconditional_audio: Literal["null", "silence"] = "null"
    # which tracks the unconditional branch replaces: both people's, or only each person's own (the
    # partner's voice kept), so guidance sharpens a person's own lip sync and leaves their reaction to the
    # partner unguided (the same cost as guiding against both)
    unconditional_tracks: Literal["both", "own"] = "both"
    seed: int = 0
    context_noise: float = 0.0  # noise level on the previous chunk before it conditions the next (training: 0..max)
    layout: Literal["side-by-side", "separate"] = "side-by-side"
    max_seconds: float = 0.0  # 0 = no limit
    fast_decoder: bool = False  # decode with the checkpoint's tiny decoder (TAEF1 for the real presets)
    compile: bool = False  # torch.compile the decoder step (`dyadgen bench` measures whether it helps here)
    left_emotion: str = ""  # an emotion label for each person ("" = none)
    right_emotion: str = ""
    text: str = ""  # the dialogue's text prompt ("" = none)

    def sampler(self) -> dict[str, Any]:
        """The keyword arguments of ``DyadGen.generate`` / ``generate_stream`` these settings give."""
        return {"euler_steps": self.euler_steps, "guidance": self.guidance, "guidance_interval": self.guidance_interval,
                "guidance_rescale": self.guidance_rescale, "guidance_mode": self.guidance_mode,
                "unconditional_tracks": self.unconditional_tracks, "seed": self.seed,
                "context_noise": self.context_noise}


@dataclass
class DyadGenConfig:
    """The root config: every component, plus the preset it started from."""

    preset: str = "tiny"
    data: DataConfig = field(default_factory=DataConfig)
    audio_tokenizer: AudioTokenizerConfig = field(default_factory=AudioTokenizerConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)

    # ---- shapes derived from the settings above (never stored) ----------------------------------

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(c, h, w) of one person's frame latent at the configured frame size."""
        f = self.vae.factor
        return self.vae.latent_channels, self.data.height // f, self.data.width // f

    @property
    def window_frames(self) -> int:
        """Frames of one training window: ``data.window_steps`` chunk steps of ``model.chunk_frames``."""
        return self.data.window_steps * self.model.chunk_frames

    @property
    def window_stride_frames(self) -> int:
        """Frames between consecutive training windows of a video: the block the cache stores latents in."""
        return self.data.window_stride_steps * self.model.chunk_frames

    @property
    def audio_margin(self) -> tuple[int, int]:
        """Frames of audio the model reads before and after a window's own frames (pre, post)."""
        return audio_margin(self.decoder, self.model)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    def save(self, path: str | Path) -> None:
        """Write the resolved config as JSON (write then rename, so a reader never sees half)."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")


def audio_margin(decoder: DecoderConfig, model: ModelConfig) -> tuple[int, int]:
    """Frames of audio the model reads before and after a window's own frames (pre, post): the
    decoder's own context a and partner context q before, a and the backbone's lookahead k after."""
    return max(decoder.audio_context, decoder.partner_context), max(decoder.audio_context, model.audio_lookahead)


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj
