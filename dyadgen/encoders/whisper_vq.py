"""WhisperVQ semantic tokens (WhisperSpeech's quantizer) on the 25 Hz clock, without whisperspeech at run time.

This reproduces ``RQBottleneckTransformer.encode_audio`` / ``encode_mel`` of WhisperSpeech 0.8.9
(``whisperspeech/vq_stoks.py``, with ``vector_quantize_pytorch`` 1.6.22 and openai-whisper) step by step:

1. log-mel of the unpadded audio exactly as openai-whisper's ``log_mel_spectrogram``: ``torch.stft`` with
   n_fft 400, hop 160, a periodic Hann window, centre reflect padding, the last frame dropped; power
   spectrum times librosa's slaney mel filterbank (computed here bit for bit as openai-whisper's
   ``mel_filters.npz``; 128 bins for ``large-v3``, else 80); ``log10(max(x, 1e-10))``, floored at its
   maximum - 8, then ``(x + 4) / 4``. N samples give ``N // 160`` mel frames.
2. the mel padded with -1.5 to 3000 frames (30 s), the Whisper encoder (transformers ``WhisperEncoder``
   with the weights of the openai-whisper size the checkpoint names, e.g. ``medium`` ->
   ``openai/whisper-medium``), 1500 vectors at 50 Hz;
3. downsampling x2 to 25 Hz (mean of pairs with ``tunables.downsample_mean``; or the strided conv or plain
   striding of older checkpoints), ``x + mlp(mlp_ln(x))``;
4. one residual-VQ level with cosine similarity: ``project_in``, l2-normalise, dot product with the stored
   codebook ``rq.layers.0._codebook.embed`` (unit rows, ``vq_codes + 1`` of them with ``mask_embs``: the
   last one is WhisperSpeech's padding code, equal to our ``pad_id``), argmax;
5. the first ``n_mel_frames // 2 // 2`` tokens are kept.

WhisperSpeech stops at 30 s. Here audio is cut into consecutive 30 s windows (480,000 samples), each
window tokenized on its own exactly as WhisperSpeech tokenizes a clip of that length, and the tokens are
concatenated. A full window gives 3000 mel frames -> 750 tokens and a last partial window of M samples
gives ``(M // 160) // 4 == M // 640`` tokens, so N samples give exactly ``N // 640`` tokens (the floor
rule of ``dyadgen.clock``) with nothing to pad or trim: 5 min -> 7,500 tokens, 37.3 s -> 932. A last
window shorter than one frame (640 samples) gives no token and is skipped.

Checkpoints: a WhisperSpeech ``*.model`` file (``{"config", "tunables", "state_dict"}``, read only with
``torch.load(..., weights_only=True)``), a Hub ``repo:filename``, or a folder written by
:meth:`WhisperVQTokenizer.save_pretrained` (``tokenizer.json`` + ``whisper_vq.safetensors`` + ``whisper/``).
The Whisper encoder is loaded with transformers ``from_pretrained`` from safetensors (no remote code).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import WhisperConfig, WhisperForAudioClassification
from transformers.models.whisper.modeling_whisper import WhisperEncoder
from transformers.utils import logging as hf_logging

from dyadgen.clock import SAMPLE_RATE, SAMPLES_PER_FRAME, frames_for_samples
from dyadgen.encoders.hub import resolve_file, resolve_folder
from dyadgen.encoders.whisper_mel import HOP, log_mel_spectrogram, mel_filters
from dyadgen.errors import UserError

CONFIG_NAME = "tokenizer.json"  # the same file name as the fitted tokenizer's, told apart by "kind"
WEIGHTS_NAME = "whisper_vq.safetensors"
WHISPER_DIR = "whisper"
DEFAULT_CHECKPOINT = "WhisperSpeech/WhisperSpeech:whisper-vq-stoks-medium-en+pl.model"  # the real preset's

N_FRAMES = 3000  # mel frames in Whisper's 30 s input
WINDOW_SAMPLES = N_FRAMES * HOP  # 480,000 samples = 30 s = 750 tokens
MEL_PAD = -1.5  # WhisperSpeech pads the mel (not the audio) with this value

# WhisperSpeech's make_model("medium-2d-512c-dim64") with tunables --rope --mask_embs --downsample_mean: the
# architecture of whisper-vq-stoks-medium-en+pl.model and whisper-vq-stoks-v3-7lang.model
MEDIUM_CONFIG = {"codebook_dim": 64, "vq_codes": 512, "q_depth": 1, "n_head": 16, "head_width": 64, "ffn_mult": 4,
                 "depth": 1, "use_cosine_sim": True, "downsample": 2, "whisper_model_name": "medium"}
MEDIUM_TUNABLES = {"rope": True, "mask_embs": True, "downsample_mean": True, "downsample_conv": False}
# openai/whisper-medium's encoder (transformers WhisperConfig fields)
MEDIUM_WHISPER = {"d_model": 1024, "encoder_layers": 24, "encoder_attention_heads": 16, "encoder_ffn_dim": 4096,
                  "num_mel_bins": 80, "max_source_positions": 1500}
# openai-whisper size names whose Hugging Face repo is not simply openai/whisper-<name>
WHISPER_REPOS = {"large": "openai/whisper-large-v3", "large-v1": "openai/whisper-large",
                 "turbo": "openai/whisper-large-v3-turbo"}


# ------------------------------------------------------------------------------------------ the VQ head
class _LayerNorm(nn.LayerNorm):
    """WhisperSpeech's LayerNorm: computed in float32."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).type(x.dtype)


def _tunable(tunables: dict, name: str) -> bool:
    """A tunable as WhisperSpeech's ``Tunables(**Tunables.upgrade(...))`` resolves it for these names."""
    if tunables.get("random") and name in ("mask_embs", "downsample_mean"):
        return True  # Tunables.__post_init__ forces these when random hyperparameters were drawn
    return bool(tunables.get(name, False))  # upgrade(): absent = the old default, False


class WhisperVQHead(nn.Module):
    """Whisper encoder states [B, 1500, D] -> codes [B, 1500 // downsample]: the quantizing half of
    WhisperSpeech's RQBottleneckTransformer (the decoder-side blocks are not needed to encode)."""

    def __init__(self, config: dict, tunables: dict, *, project_in: bool | None = None):
        super().__init__()
        width = int(config["n_head"]) * int(config["head_width"])
        self.width, self.downsample = width, int(config["downsample"])
        self.mask_embs = _tunable(tunables, "mask_embs")
        self.downsample_mode = ("conv" if _tunable(tunables, "downsample_conv")
                                else "mean" if _tunable(tunables, "downsample_mean") else "stride")
        self.vq_codes = int(config["vq_codes"])
        codebook_dim = int(config.get("codebook_dim") or width)
        n_mlp = width * int(config.get("ffn_mult", 4))
        self.mlp = nn.Sequential(nn.Linear(width, n_mlp), nn.GELU(), nn.Linear(n_mlp, width))
        self.mlp_ln = _LayerNorm(width)
        self.downsample_conv = (nn.Conv1d(width, width, kernel_size=3, stride=self.downsample, padding=1)
                                if self.downsample_mode == "conv" else None)
        if project_in is None:
            project_in = codebook_dim != width  # vector_quantize_pytorch projects only when the sizes differ
        self.project_in = nn.Linear(width, codebook_dim) if project_in else nn.Identity()
        codes = self.vq_codes + 1 if self.mask_embs else self.vq_codes
        self.embed = nn.Parameter(torch.zeros(1, codes, codebook_dim), requires_grad=False)  # [1, K+1, d]
        self.requires_grad_(False)

    @classmethod
    def from_checkpoint(cls, config: dict, tunables: dict, state_dict: dict[str, Tensor]) -> WhisperVQHead:
        """The head with the weights of a WhisperSpeech state dict (its own key names)."""
        prefixes = ("rq.layers.0.project_in.", "rq.project_in.")  # per-layer (vq-pytorch 1.6) or per-RVQ (newer)
        prefix = next((p for p in prefixes if p + "weight" in state_dict), None)
        head = cls(config, tunables, project_in=prefix is not None)
        names = {"mlp_ln.weight": "mlp_ln.weight", "mlp_ln.bias": "mlp_ln.bias",
                 "mlp.0.weight": "mlp.0.weight", "mlp.0.bias": "mlp.0.bias",
                 "mlp.2.weight": "mlp.2.weight", "mlp.2.bias": "mlp.2.bias", "embed": "rq.layers.0._codebook.embed"}
        if prefix is not None:
            names.update({"project_in.weight": prefix + "weight", "project_in.bias": prefix + "bias"})
        if head.downsample_conv is not None:
            names.update({f"downsample_conv.{p}": f"downsample_conv.{p}" for p in ("weight", "bias")})
        missing = [src for src in names.values() if src not in state_dict]
        if missing:
            raise UserError(f"WhisperVQ checkpoint: the state_dict lacks {', '.join(missing)}")
        ours = head.state_dict()
        for name, src in names.items():
            if tuple(state_dict[src].shape) != tuple(ours[name].shape):
                raise UserError(f"WhisperVQ checkpoint: {src} has shape {tuple(state_dict[src].shape)}, "
                                f"the config {config} needs {tuple(ours[name].shape)}")
        head.load_state_dict({name: state_dict[src].float() for name, src in names.items()})
        return head.eval()

    def forward(self, embs: Tensor) -> Tensor:
        """[B, L, D] float -> LongTensor [B, L // downsample]; RQBottleneckTransformer.quantize in eval mode."""
        x = embs
        bs, slen, depth = x.shape
        if self.downsample_mode == "conv":
            x = x[:, ::self.downsample] + self.downsample_conv(x.transpose(-1, -2)).transpose(-2, -1)
        elif self.downsample_mode == "mean":
            x = x.reshape(bs, slen // self.downsample, self.downsample, depth).mean(-2)
        else:
            x = x[:, ::self.downsample]
        x = x + self.mlp(self.mlp_ln(x))
        # VectorQuantize.forward: project_in, l2norm; CosineSimCodebook.forward: float, flatten, dot, argmax
        x = F.normalize(self.project_in(x), p=2, dim=-1).float()
        n = x.shape[1]
        flatten = x.reshape(1, bs * n, x.shape[-1])  # 'h * d' with h = 1
        dist = torch.einsum("h n d, h c d -> h n c", flatten, self.embed)
        return dist.argmax(dim=-1).reshape(bs, n)


# ------------------------------------------------------------------------------------ the Whisper encoder
@contextlib.contextmanager
def _quiet_transformers():
    """Silence the loading report: the decoder / classifier keys that the encoder leaves out are expected."""
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def whisper_repo(whisper_model_name: str) -> str:
    """The Hugging Face repo of an openai-whisper size name ("medium" -> "openai/whisper-medium")."""
    return WHISPER_REPOS.get(whisper_model_name, f"openai/whisper-{whisper_model_name}")


def load_whisper_encoder(name_or_path: str | os.PathLike) -> nn.Module:
    """A transformers ``WhisperEncoder`` (float32, eval) from a hub name or a local folder.

    Reads a whole-model folder (``openai/whisper-*``: keys ``model.encoder.*``, loaded through
    ``WhisperForAudioClassification`` so the decoder is never built) or an encoder-only folder written by
    ``WhisperEncoder.save_pretrained``; both from ``model.safetensors``. Missing encoder weights are an error,
    never a silent random init.
    """
    name = str(name_or_path)
    what = "the Whisper encoder of the WhisperVQ tokenizer"
    folder = resolve_folder(name, what=what)
    weights = resolve_file(name, "model.safetensors", what=what)
    with safe_open(str(weights), framework="pt") as f:
        keys = list(f.keys())
    whole = any(k.startswith(("model.encoder.", "encoder.")) for k in keys)
    cls = WhisperForAudioClassification if whole else WhisperEncoder
    with _quiet_transformers():
        model, info = cls.from_pretrained(str(folder), use_safetensors=True, output_loading_info=True)
    encoder = model.encoder if whole else model
    missing = [k for k in info.get("missing_keys", []) if not k.startswith(("projector.", "classifier."))]
    if missing or not keys:
        raise UserError(f"{weights}: not a Whisper checkpoint: the encoder weights "
                        f"{', '.join(sorted(missing)[:3]) or '(all)'} are missing")
    return encoder.float().eval().requires_grad_(False)


# -------------------------------------------------------------------------------------------- tokenizer
def _split_checkpoint_name(name: str) -> tuple[str, str] | None:
    """``repo:filename`` or a bare repo id -> (repo, filename); None for a local path."""
    if Path(name).exists():
        return None
    if ":" in name:
        repo, filename = name.split(":", 1)
        return repo, filename
    if name.count("/") == 1 and not name.endswith(".model"):
        return name, DEFAULT_CHECKPOINT.split(":", 1)[1]
    return None


def read_whisperspeech_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A WhisperSpeech ``*.model`` file, read with ``weights_only=True`` (no code from the file runs)."""
    try:
        spec = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for pickled code, RuntimeError/EOFError for other files
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UserError(f"{path}: not a WhisperSpeech checkpoint readable with weights_only=True "
                        f"({type(e).__name__}: {first[:200]})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict) \
            or not isinstance(spec.get("state_dict"), dict):
        raise UserError(f"{path}: not a WhisperSpeech checkpoint (expected a dict with config and state_dict)")
    return spec


class WhisperVQTokenizer:
    """WhisperSpeech's semantic tokens at 25 Hz: ``encode(wav16k [N]) -> LongTensor [N // 640]``.

    ``num_codes`` is the codebook size (512 for the published checkpoints); ``pad_id == num_codes`` is also
    WhisperSpeech's own padding code. Runs on the device of its encoder (``.to(device)``); the head stays
    float32, the encoder may be cast to half precision on a GPU.
    """

    kind = "whisper_vq"

    def __init__(self, encoder: nn.Module, config: dict, tunables: dict, state_dict: dict[str, Tensor], *,
                 batch_size: int = 8):
        self.config, self.tunables = dict(config), dict(tunables or {})
        self.state_dict = {k: v.detach().cpu() for k, v in state_dict.items()}
        for key, want in (("use_cosine_sim", True), ("q_depth", 1), ("downsample", 2)):
            if self.config.get(key, want) != want:
                raise UserError(f"WhisperVQ checkpoint config {key}={self.config.get(key)!r}: only {want!r} is "
                                "supported (cosine-similarity codes, one level, 25 Hz)")
        self.head = WhisperVQHead.from_checkpoint(self.config, self.tunables, self.state_dict)
        self.encoder = encoder.eval()
        self.whisper_model_name = str(self.config.get("whisper_model_name", ""))
        self.n_mels = 128 if self.whisper_model_name == "large-v3" else 80  # WhisperSpeech's rule
        enc_cfg = self.encoder.config
        if enc_cfg.num_mel_bins != self.n_mels or enc_cfg.d_model != self.head.width \
                or enc_cfg.max_source_positions * 2 != N_FRAMES:
            raise UserError(f"the Whisper encoder (d_model {enc_cfg.d_model}, {enc_cfg.num_mel_bins} mel bins) does "
                            f"not fit the WhisperVQ checkpoint (width {self.head.width}, {self.n_mels} mel bins, "
                            f"whisper_model_name {self.whisper_model_name!r})")
        self.filters = mel_filters(self.n_mels)  # [n_mels, 201]
        self.batch_size = max(1, int(batch_size))

    # ---- loading
    @classmethod
    def load(cls, name_or_path: str | os.PathLike = "", *, whisper_name_or_path: str = "",
             batch_size: int = 8) -> WhisperVQTokenizer:
        """From a saved folder, a WhisperSpeech ``*.model`` path, or a hub ``repo:filename``."""
        name = str(name_or_path) or DEFAULT_CHECKPOINT
        if Path(name).is_dir():
            return cls.from_pretrained(name, whisper_name_or_path=whisper_name_or_path, batch_size=batch_size)
        hub = _split_checkpoint_name(name)
        path = resolve_file(*hub, what="the WhisperVQ checkpoint") if hub else Path(name)
        if not path.is_file():
            raise UserError(f"{path}: no such WhisperVQ checkpoint (a WhisperSpeech *.model file, a hub "
                            "repo:filename, or a folder from save_pretrained)")
        spec = read_whisperspeech_checkpoint(path)
        whisper = whisper_name_or_path or whisper_repo(str(spec["config"].get("whisper_model_name", "")))
        return cls(load_whisper_encoder(whisper), spec["config"], spec.get("tunables") or {}, spec["state_dict"],
                   batch_size=batch_size)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, *, whisper_name_or_path: str = "",
                        batch_size: int = 8) -> WhisperVQTokenizer:
        folder = Path(folder)
        if not (folder / CONFIG_NAME).is_file():
            raise UserError(f"{folder}: not a WhisperVQ tokenizer folder (no {CONFIG_NAME})")
        meta = json.loads((folder / CONFIG_NAME).read_text())
        if meta.get("kind") != cls.kind:
            raise UserError(f"{folder / CONFIG_NAME}: kind {meta.get('kind')!r}, not {cls.kind!r}")
        state = load_file(str(folder / meta.get("weights", WEIGHTS_NAME)))
        encoder = load_whisper_encoder(whisper_name_or_path or folder / meta.get("whisper", WHISPER_DIR))
        return cls(encoder, meta["config"], meta.get("tunables") or {}, state, batch_size=batch_size)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """``tokenizer.json`` (config + tunables), the whole checkpoint state dict as safetensors, and the
        encoder-only ``whisper/`` folder. No pickles."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous().clone() for k, v in self.state_dict.items()}, str(folder / WEIGHTS_NAME),
                  metadata={"format": "pt"})
        self.encoder.save_pretrained(str(folder / WHISPER_DIR))
        meta = {"kind": self.kind, "num_codes": self.num_codes, "n_mels": self.n_mels, "sample_rate": SAMPLE_RATE,
                "hop": SAMPLES_PER_FRAME, "window_samples": WINDOW_SAMPLES, "weights": WEIGHTS_NAME,
                "whisper": WHISPER_DIR, "config": self.config, "tunables": self.tunables}
        (folder / CONFIG_NAME).write_text(json.dumps(meta, indent=2))

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> WhisperVQTokenizer:
        """Move the encoder (and the head, float32 always) to ``device``; ``dtype`` applies to the encoder."""
        self.encoder.to(device=device, dtype=dtype)
        self.head.to(device=device)
        return self

    # ---- the protocol
    @property
    def num_codes(self) -> int:
        return self.head.vq_codes

    @property
    def pad_id(self) -> int:
        return self.num_codes

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def log_mel(self, window: Tensor) -> Tensor:
        """float [M <= 480000] -> [n_mels, M // 160], as WhisperSpeech's ``encode_audio`` on [1, M]."""
        return log_mel_spectrogram(window.unsqueeze(0), self.filters)[0]

    @torch.no_grad()
    def encode(self, wav: np.ndarray | Tensor) -> Tensor:
        """float [N] at 16 kHz -> LongTensor [N // 640]."""
        return self.encode_batch([wav])[0]

    @torch.no_grad()
    def encode_batch(self, wavs: list[np.ndarray | Tensor]) -> list[Tensor]:
        """Each wav cut in 30 s windows; all windows of all wavs go through the encoder ``batch_size`` at a time."""
        device = self.device
        dtype = next(self.encoder.parameters()).dtype
        windows: list[tuple[int, Tensor]] = []  # (which wav, audio of the window)
        lengths = []
        for i, wav in enumerate(wavs):
            audio = torch.as_tensor(np.asarray(wav, dtype=np.float32)) if not isinstance(wav, Tensor) \
                else wav.detach().float().cpu()
            if audio.ndim != 1:
                raise ValueError(f"expected mono audio [N], got shape {tuple(audio.shape)}")
            lengths.append(audio.shape[0])
            for start in range(0, audio.shape[0], WINDOW_SAMPLES):
                chunk = audio[start: start + WINDOW_SAMPLES]
                if chunk.shape[0] >= SAMPLES_PER_FRAME:  # shorter gives no token (and is too short for the STFT)
                    windows.append((i, chunk))
        pieces: list[list[Tensor]] = [[] for _ in wavs]
        for b in range(0, len(windows), self.batch_size):
            batch = windows[b: b + self.batch_size]
            mels = [self.log_mel(chunk.to(device)) for _, chunk in batch]  # [n_mels, n] each, n <= 3000
            padded = torch.stack([F.pad(m, (0, N_FRAMES - m.shape[-1]), value=MEL_PAD) for m in mels])
            embs = self.encoder(input_features=padded.to(dtype)).last_hidden_state  # [B, 1500, D]
            codes = self.head(embs.float())  # [B, 750]
            for (i, _), mel, row in zip(batch, mels, codes, strict=True):
                pieces[i].append(row[: mel.shape[-1] // 2 // self.head.downsample].cpu())
        out = []
        for n, parts in zip(lengths, pieces, strict=True):
            tokens = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
            assert tokens.shape[0] == frames_for_samples(n), (tokens.shape, n)
            out.append(tokens.long())
        return out


def count_parameters(config: dict | None = None, tunables: dict | None = None,
                     whisper: dict | None = None) -> int:
    """Parameters of the WhisperVQ tokenizer (Whisper encoder + quantizing head), built on the meta device.

    Defaults: the published medium checkpoints (openai/whisper-medium's encoder, 1024 wide, 24 layers, and
    a 512-code, 64-dim cosine codebook). The decoder-side blocks of the checkpoint are not used to encode
    and are not counted.
    """
    with torch.device("meta"):
        encoder = WhisperEncoder(WhisperConfig(**(whisper or MEDIUM_WHISPER)))
        head = WhisperVQHead(config or MEDIUM_CONFIG, tunables or MEDIUM_TUNABLES)
    return sum(p.numel() for p in encoder.parameters()) + sum(p.numel() for p in head.parameters())
