"""Make tests/fixtures/whispervq: a tiny random WhisperVQ checkpoint and the tokens WhisperSpeech's own code gives.

How the golden tokens were produced (the committed fixture was made exactly so):

    # a side venv with WhisperSpeech's code (never a dependency of dyadgen)
    python3 -m venv /work/venv_ws
    /work/venv_ws/bin/pip install torch==2.13.0 numpy soundfile
    /work/venv_ws/bin/pip install --no-deps whisperspeech==0.8.9 openai-whisper==20250625 \\
        vector-quantize-pytorch==1.6.22
    /work/venv_ws/bin/pip install einops fastcore==1.5.29 tiktoken more-itertools tqdm regex huggingface_hub
    # then, with dyadgen's own venv (it runs the reference half itself in the side venv)
    python scripts/make_whispervq_golden.py --ref-python /work/venv_ws/bin/python

1. This script (dyadgen's venv) writes ``audio.wav``: 31.5 s of deterministic speech-like sound (harmonic
   syllables with a moving pitch, noise bursts, pauses, a little background noise), 16 kHz, 16-bit PCM.
2. It runs itself with ``--reference`` in the side venv, where WhisperSpeech 0.8.9, openai-whisper and
   vector-quantize-pytorch 1.6.22 are imported for real (only modules that encoding never touches -
   torchaudio, torio, webdataset, fastprogress, pylab, pandas, IPython, numba - are stubbed in ``sys.modules``):
   - ``whisperspeech.vq_stoks.RQBottleneckTransformer`` is built with ``torch.manual_seed(0)`` as
     ``make_model`` builds its models (q_depth 1, depth 1, cosine codebook, downsample 2, tunables rope,
     mask_embs, downsample_mean) at a tiny size: 2 heads x 8 = width 16, codebook_dim 8, 512 codes (+1
     padding code), whisper_model_name "tiny"; its init is WhisperSpeech's own, then the MLP and its
     LayerNorm are perturbed so that every step matters; saved with WhisperSpeech's ``save_model`` as
     ``tiny-vq.model`` and read back with WhisperSpeech's ``load_model``;
   - ``whisper.model.Whisper(ModelDimensions(80 mels, 1500 audio ctx, width 16, 2 heads, 2 encoder layers,
     1 decoder layer, vocab 64))`` with ``torch.manual_seed(1)``: default init plus N(0, 0.1) noise on every
     parameter (then the decoder's positions, left uninitialised by openai-whisper, drawn N(0, 0.02)); it is
     put in as the model's ``whmodel`` (instead of downloading a real size);
   - golden tokens: for each case, the audio is cut in 30 s windows (480,000 samples) and each window is
     passed to WhisperSpeech's ``encode_audio(window[None])`` (= ``encode_mel(whisper.log_mel_spectrogram)``),
     tokens concatenated. Cases: ``full`` (all 31.5 s: one full window + a 1.5 s window, 787 tokens) and
     ``head`` (the first 7.77 s alone, 194 tokens).
3. Back in dyadgen's venv the openai-whisper weights are converted to a transformers
   ``WhisperForConditionalGeneration`` folder (``whisper-tiny-random/``, the layout of ``openai/whisper-*``);
   ``WhisperVQTokenizer.load(tiny-vq.model, whisper_name_or_path=whisper-tiny-random)`` is saved with
   ``save_pretrained`` as ``tokenizer/``; its tokens are checked equal to WhisperSpeech's, and the smallest
   top-1 vs top-2 cosine gap is printed (a tie would make the fixture fragile).
``golden.json`` holds the tokens, the versions and the sha256 of openai-whisper's mel filters. The output is
byte-reproducible. Last run: log-mel identical to openai-whisper's, encoder states within 1.1e-6, cosine scores
within 5e-7 of WhisperSpeech's, smallest top-2 gap 9.5e-6 (full) and 1.6e-4 (head); 59 and 28 distinct codes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "whispervq"
SR = 16_000
WINDOW = 480_000
SECONDS = 31.5
HEAD_SAMPLES = 124_320  # 7.77 s
STUBBED = ("torchaudio", "torio", "torio.io", "torio.io._streaming_media_decoder", "webdataset", "pylab",
           "pandas", "IPython", "numba", "matplotlib", "matplotlib.pyplot", "fastprogress")
VQ_ARGS = dict(codebook_dim=8, vq_codes=512, q_depth=1, n_head=2, head_width=8, depth=1, ffn_mult=4,
               threshold_ema_dead_code=0, use_cosine_sim=True, downsample=2, whisper_model_name="tiny")
WHISPER_DIMS = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2, n_audio_layer=2, n_vocab=64,
                    n_text_ctx=8, n_text_state=16, n_text_head=2, n_text_layer=1)


def synth_audio(seconds: float = SECONDS, seed: int = 0) -> np.ndarray:
    """Deterministic speech-like int16 audio: voiced syllables, fricative bursts, pauses, background hiss."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR))
    t = np.arange(n) / SR
    out = np.zeros(n)
    pos = int(0.2 * SR)
    while pos < n:
        dur = int(rng.uniform(0.08, 0.35) * SR)
        seg = np.arange(min(dur, n - pos)) / SR
        env = np.sin(np.pi * np.linspace(0, 1, seg.size)) ** 0.7
        if rng.random() < 0.75:  # voiced: harmonics of a gliding f0 shaped by two formant bumps
            f0 = rng.uniform(90, 260) * (1 + rng.uniform(-0.25, 0.25) * seg / max(seg[-1], 1e-3))
            phase = 2 * np.pi * np.cumsum(f0) / SR
            f1, f2 = rng.uniform(300, 900), rng.uniform(900, 2600)
            f0m = f0.mean()
            amps = [np.exp(-((k * f0m - f1) / 250) ** 2) + 0.6 * np.exp(-((k * f0m - f2) / 400) ** 2) + 0.05
                    for k in range(1, 30)]
            sig = sum(a * np.sin(k * phase) for k, a in enumerate(amps, 1))
        else:  # fricative: high-passed noise
            noise = rng.standard_normal(seg.size)
            sig = np.diff(noise, prepend=0.0) * rng.uniform(0.3, 0.8)
        out[pos: pos + seg.size] += rng.uniform(0.1, 0.5) * env * sig / max(np.abs(sig).max(), 1e-6)
        pos += seg.size + int(rng.choice([0.0, 0.03, 0.1, 0.6], p=[0.4, 0.3, 0.2, 0.1]) * SR)
    out += 0.003 * rng.standard_normal(n) + 0.002 * np.sin(2 * np.pi * 50 * t)
    return np.clip(np.round(out * 32767 * 0.8), -32768, 32767).astype(np.int16)


def cases(n: int) -> dict[str, tuple[int, int]]:
    return {"full": (0, n), "head": (0, HEAD_SAMPLES)}


# ------------------------------------------------------------------------------- the side venv's half
def reference(tmp: Path) -> None:
    """Runs in the side venv: WhisperSpeech's own code builds the checkpoint and computes the tokens."""
    import dataclasses
    from unittest.mock import MagicMock

    for name in STUBBED:
        sys.modules.setdefault(name, MagicMock(name=name))
    import soundfile as sf
    import torch
    import whisper
    import whisper.audio
    from whisper.model import ModelDimensions, Whisper
    from whisperspeech.vq_stoks import RQBottleneckTransformer, Tunables

    torch.manual_seed(0)
    vq = RQBottleneckTransformer(**VQ_ARGS, tunables=Tunables(rope=True, mask_embs=True, downsample_mean=True))
    with torch.no_grad():  # make the MLP residual and its LayerNorm matter (WhisperSpeech's init keeps them small)
        vq.mlp_ln.weight.add_(0.3 * torch.randn_like(vq.mlp_ln.weight))
        vq.mlp_ln.bias.add_(0.3 * torch.randn_like(vq.mlp_ln.bias))
        vq.mlp[0].weight.mul_(4.0)
        vq.mlp[2].weight.mul_(8.0)
    vq.save_model(str(FIXTURE / "tiny-vq.model"))
    vq = RQBottleneckTransformer.load_model(local_filename=str(FIXTURE / "tiny-vq.model"))

    torch.manual_seed(1)
    dims = ModelDimensions(**WHISPER_DIMS)
    wh = Whisper(dims)
    with torch.no_grad():
        for p in wh.parameters():
            p.add_(0.1 * torch.randn_like(p))
        wh.decoder.positional_embedding.normal_(0.0, 0.02)  # openai-whisper leaves it torch.empty (garbage)
    wh.eval()
    vq.whmodel = [wh]  # what ensure_whisper would load for a real size

    audio, sr = sf.read(str(FIXTURE / "audio.wav"), dtype="float32")
    assert sr == SR
    golden = {}
    with torch.no_grad():
        for name, (start, stop) in cases(audio.shape[0]).items():
            clip = torch.from_numpy(audio[start:stop])
            toks = [vq.encode_audio(clip[i: i + WINDOW].unsqueeze(0))[0] for i in range(0, clip.shape[0], WINDOW)]
            golden[name] = torch.cat(toks).tolist()
        first = torch.from_numpy(audio[:WINDOW]).unsqueeze(0)
        embs = wh.encoder(vq.log_mel_spectrogram(first))
    import importlib.metadata as md

    torch.save({"dims": dataclasses.asdict(dims), "state_dict": wh.state_dict(), "embs": embs,
                "mel": vq.log_mel_spectrogram(torch.from_numpy(audio[:HEAD_SAMPLES]).unsqueeze(0))},
               str(tmp / "openai_whisper.pt"))
    filters = {str(n): hashlib.sha256(whisper.audio.mel_filters("cpu", n).numpy().tobytes()).hexdigest()
               for n in (80, 128)}
    versions = {p: md.version(p) for p in ("whisperspeech", "openai-whisper", "vector-quantize-pytorch", "torch")}
    (tmp / "reference.json").write_text(json.dumps({"tokens": golden, "versions": versions,
                                                    "mel_filters_sha256": filters}))


# ------------------------------------------------------------------------------------ dyadgen's half
OPENAI_TO_HF = (("attn.query.", "self_attn.q_proj."), ("attn.key.", "self_attn.k_proj."),
                ("attn.value.", "self_attn.v_proj."), ("attn.out.", "self_attn.out_proj."),
                ("attn_ln.", "self_attn_layer_norm."), ("mlp.0.", "fc1."), ("mlp.2.", "fc2."),
                ("mlp_ln.", "final_layer_norm."))


def openai_key_to_hf(key: str) -> str:
    """An openai-whisper state-dict key -> the transformers WhisperForConditionalGeneration key."""
    fixed = {"encoder.positional_embedding": "model.encoder.embed_positions.weight",
             "decoder.positional_embedding": "model.decoder.embed_positions.weight",
             "decoder.token_embedding.weight": "model.decoder.embed_tokens.weight"}
    if key in fixed:
        return fixed[key]
    side, rest = key.split(".", 1)
    if rest.startswith("blocks."):
        _, i, inner = rest.split(".", 2)
        if inner.startswith("cross_attn"):
            inner = inner.replace("cross_attn_ln.", "encoder_attn_layer_norm.").replace("cross_attn.", "encoder_attn.")
            inner = inner.replace(".query.", ".q_proj.").replace(".key.", ".k_proj.").replace(".value.", ".v_proj.")
            inner = inner.replace(".out.", ".out_proj.")
        else:
            inner = next(new + inner[len(old):] for old, new in OPENAI_TO_HF if inner.startswith(old))
        return f"model.{side}.layers.{i}.{inner}"
    rest = {"ln_post.weight": "layer_norm.weight", "ln_post.bias": "layer_norm.bias",
            "ln.weight": "layer_norm.weight", "ln.bias": "layer_norm.bias"}.get(rest, rest)
    return f"model.{side}.{rest}"


def convert_whisper(dims: dict, state_dict: dict, out: Path):
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    assert dims["n_audio_state"] == dims["n_text_state"]
    cfg = WhisperConfig(vocab_size=dims["n_vocab"], num_mel_bins=dims["n_mels"], d_model=dims["n_audio_state"],
                        encoder_layers=dims["n_audio_layer"], encoder_attention_heads=dims["n_audio_head"],
                        decoder_layers=dims["n_text_layer"], decoder_attention_heads=dims["n_text_head"],
                        encoder_ffn_dim=4 * dims["n_audio_state"], decoder_ffn_dim=4 * dims["n_text_state"],
                        max_source_positions=dims["n_audio_ctx"], max_target_positions=dims["n_text_ctx"],
                        pad_token_id=dims["n_vocab"] - 1, bos_token_id=dims["n_vocab"] - 2,
                        eos_token_id=dims["n_vocab"] - 2, decoder_start_token_id=dims["n_vocab"] - 3,
                        begin_suppress_tokens=None, suppress_tokens=None)
    model = WhisperForConditionalGeneration(cfg)
    converted = {openai_key_to_hf(k): v for k, v in state_dict.items()}
    result = model.load_state_dict(converted, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    assert set(result.missing_keys) <= {"proj_out.weight"}, result.missing_keys  # tied to embed_tokens
    with torch.no_grad():
        model.proj_out.weight.copy_(model.model.decoder.embed_tokens.weight)
    model.save_pretrained(str(out))
    return model


def min_margin(tok, wav: np.ndarray) -> float:
    """The smallest top-1 minus top-2 cosine similarity over the kept tokens of ``wav`` (one window at a time)."""
    import torch
    import torch.nn.functional as F

    from dyadgen.encoders.whisper_vq import MEL_PAD, N_FRAMES

    head, margins = tok.head, []
    with torch.no_grad():
        for i in range(0, wav.shape[0], WINDOW):
            mel = tok.log_mel(torch.from_numpy(wav[i: i + WINDOW]))
            embs = tok.encoder(input_features=F.pad(mel, (0, N_FRAMES - mel.shape[-1]), value=MEL_PAD)[None])
            x = embs.last_hidden_state.reshape(1, -1, 2, head.width).mean(-2)
            x = F.normalize(head.project_in(x + head.mlp(head.mlp_ln(x))), dim=-1)
            top = (x @ head.embed[0].T)[0, : mel.shape[-1] // 4].topk(2, dim=-1).values
            margins.append((top[:, 0] - top[:, 1]).min().item())
    return min(margins)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref-python", default="/work/venv_ws/bin/python",
                        help="python of the side venv with whisperspeech, openai-whisper, vector-quantize-pytorch")
    parser.add_argument("--reference", metavar="TMP", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference:
        reference(Path(args.reference))
        return

    import shutil

    import soundfile as sf
    import torch

    from dyadgen.encoders.whisper_vq import WhisperVQTokenizer, mel_filters

    FIXTURE.mkdir(parents=True, exist_ok=True)
    for old in ("tokenizer", "whisper-tiny-random"):
        shutil.rmtree(FIXTURE / old, ignore_errors=True)
    audio16 = synth_audio()
    sf.write(str(FIXTURE / "audio.wav"), audio16, SR, subtype="PCM_16")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([args.ref_python, str(Path(__file__).resolve()), "--reference", tmp], check=True)
        ref = json.loads((Path(tmp) / "reference.json").read_text())
        dump = torch.load(str(Path(tmp) / "openai_whisper.pt"), map_location="cpu", weights_only=True)
    hf = convert_whisper(dump["dims"], dump["state_dict"], FIXTURE / "whisper-tiny-random")

    ours_filters = {str(n): hashlib.sha256(mel_filters(n).numpy().tobytes()).hexdigest() for n in (80, 128)}
    assert ours_filters == ref["mel_filters_sha256"], "mel filters differ from openai-whisper's mel_filters.npz"
    tok = WhisperVQTokenizer.load(FIXTURE / "tiny-vq.model", whisper_name_or_path=str(FIXTURE / "whisper-tiny-random"))
    tok.save_pretrained(FIXTURE / "tokenizer")
    audio, _ = sf.read(str(FIXTURE / "audio.wav"), dtype="float32")
    with torch.no_grad():
        mel_diff = (tok.log_mel(torch.from_numpy(audio[:HEAD_SAMPLES])) - dump["mel"][0]).abs().max().item()
        embs = hf.model.encoder(input_features=tok.log_mel(torch.from_numpy(audio[:WINDOW]))[None]).last_hidden_state
    print(f"log-mel max |diff| {mel_diff:.3g}; encoder max |diff| {(embs - dump['embs']).abs().max().item():.3g}")
    golden = {"produced_by": "scripts/make_whispervq_golden.py (see its docstring)", "versions": ref["versions"],
              "audio": "audio.wav", "sample_rate": SR, "mel_filters_sha256": ref["mel_filters_sha256"],
              "checkpoint": "tiny-vq.model", "whisper": "whisper-tiny-random", "cases": {}}
    for name, (start, stop) in cases(audio.shape[0]).items():
        theirs = ref["tokens"][name]
        ours = tok.encode(audio[start:stop]).tolist()
        same = ours == theirs
        print(f"{name}: {len(theirs)} tokens, {len(set(theirs))} distinct codes, equal: {same}, "
              f"min top-2 margin {min_margin(tok, audio[start:stop]):.2e}")
        assert same, [(i, a, b) for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b][:10]
        golden["cases"][name] = {"start": start, "stop": stop, "tokens": theirs}
    (FIXTURE / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    size = sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file())
    print(f"wrote {FIXTURE} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
