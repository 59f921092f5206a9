"""Encoders: the fitted audio tokenizer on the 25 Hz clock, and the VAE adapter's shift, scale and batching."""

import numpy as np
import pytest
import torch

from dyadgen.clock import SAMPLES_PER_FRAME
from dyadgen.config import VAEConfig
from dyadgen.encoders import load_audio_tokenizer, load_video_vae
from dyadgen.encoders.audio_tokenizer import unconditional_codes
from dyadgen.encoders.fitted import FittedTokenizer
from dyadgen.errors import UserError


def voice(seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    env = (np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6)) > 0).astype(np.float32)
    return (0.3 * env * np.sin(2 * np.pi * np.cumsum(f0) / 16000)).astype(np.float32)


@pytest.fixture(scope="module")
def tokenizer():
    return FittedTokenizer.fit([voice(20, s) for s in range(3)], num_codes=16, n_mels=20)


def test_exactly_25_tokens_per_second(tokenizer):
    assert tokenizer.encode(voice(10.0)).shape == (250,)
    assert tokenizer.encode(voice(37.3)).shape == (932,)
    assert tokenizer.encode(np.zeros(639, np.float32)).shape == (0,)
    assert tokenizer.pad_id == tokenizer.num_codes == 16


def test_deterministic_and_batch_equals_one_by_one(tokenizer):
    wavs = [voice(2.0, 1), voice(3.3, 2)]
    one = [tokenizer.encode(w) for w in wavs]
    assert all(torch.equal(a, b) for a, b in zip(one, tokenizer.encode_batch(wavs), strict=True))
    assert torch.equal(one[0], tokenizer.encode(wavs[0]))
    assert len(set(one[1].tolist())) > 3  # speech uses many codes, not one


def test_save_and_load(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "tok")
    again = load_audio_tokenizer(tmp_path / "tok")
    w = voice(4.0, 5)
    assert torch.equal(again.encode(w), tokenizer.encode(w))
    with pytest.raises(UserError, match="not an audio tokenizer folder"):
        load_audio_tokenizer(tmp_path)


def test_guidance_against_silence_is_the_tokenizers_codes_of_silence_on_both_tracks(tokenizer):
    """What `dyadgen infer` and a training run's sample video both guide against (infer.unconditional_audio)."""
    tokens = torch.randint(0, tokenizer.num_codes, (2, 30))  # [P,T]
    silence = unconditional_codes(tokenizer, tokens, "silence")
    assert silence.shape == tokens.shape and silence.dtype == tokens.dtype
    assert torch.equal(silence[0], tokenizer.encode(np.zeros(30 * SAMPLES_PER_FRAME, np.float32)))
    assert torch.equal(*silence)  # both tracks
    assert unconditional_codes(tokenizer, tokens, "null") is None  # the model's own null code
    with pytest.raises(UserError, match="unconditional audio 'quiet'"):
        unconditional_codes(tokenizer, tokens, "quiet")


def test_vae_round_trip_shapes_scale_and_bounded_batches(tmp_path):
    torch.manual_seed(0)
    vae = load_video_vae(VAEConfig(block_out_channels=(8, 16), latent_channels=4, encode_batch=3))
    frames = torch.rand(7, 3, 32, 24) * 2 - 1  # [T,3,H,W]
    z = vae.encode(frames)
    assert z.shape == (7, 4, 16, 12) and vae.factor == 2
    whole = load_video_vae(VAEConfig(block_out_channels=(8, 16), latent_channels=4, encode_batch=64))
    whole.vae.load_state_dict(vae.vae.state_dict())
    assert torch.allclose(whole.encode(frames), z, atol=1e-5)  # batching never changes the result
    vae.set_normalization(shift=z.mean().item(), scale=1 / z.std().item())
    normed = vae.encode(frames)
    assert abs(normed.mean().item()) < 1e-4 and abs(normed.std().item() - 1) < 1e-3
    assert vae.decode(normed).shape == frames.shape
    vae.save_pretrained(tmp_path / "vae")
    again = load_video_vae(tmp_path / "vae")
    assert torch.allclose(again.encode(frames), normed, atol=1e-5)


def test_unreachable_hub_vae_says_what_to_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="Download .*diffusion_pytorch_model.safetensors|config.json"):
        load_video_vae(VAEConfig(name_or_path="black-forest-labs/FLUX.1-schnell", subfolder="vae"))
