"""A checkpoint folder shaped like a real preset's - Qwen text tokenizer, WhisperVQ audio tokenizer, an
AutoencoderKL VAE with an AutoencoderTiny fast decoder - holds everything inference needs: `dyadgen infer
--checkpoint DIR` runs with the network off (HF_HUB_OFFLINE=1), with the full and the fast decoder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

FX = Path(__file__).resolve().parents[1] / "fixtures" / "whispervq"


def text_tokenizer(folder: Path) -> Path:
    """A small byte-level BPE tokenizer saved as Qwen's are (tokenizer.json + tokenizer_config.json)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["你好，今天天气很好", "我们去公园散步吧", "hello there"],
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|endoftext|>")
    fast.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from diffusers import AutoencoderTiny

    from dyadgen.config import load_config
    from dyadgen.encoders import load_audio_tokenizer, load_video_vae
    from dyadgen.inference.folder import save_inference_folder
    from dyadgen.models import DyadGen

    root = tmp_path_factory.mktemp("offline")
    cfg = load_config(overrides=["data.height=64", "data.width=56", "decoder.hidden_size=64", "decoder.depth=2",
                                 "decoder.num_heads=2", "vae.block_out_channels=[8,16,16]", "infer.euler_steps=2",
                                 "backbone.text_tokenizer=qwen", "backbone.vocab_size=320",
                                 "audio_tokenizer.kind=whisper_vq"])
    torch.manual_seed(0)
    tokenizer = load_audio_tokenizer(FX / "tokenizer")
    vae = load_video_vae(cfg.vae)
    vae.fast_decoder = AutoencoderTiny(latent_channels=cfg.vae.latent_channels, encoder_block_out_channels=(8, 8, 8),
                                       decoder_block_out_channels=(8, 8, 8), num_encoder_blocks=(1, 1, 1),
                                       num_decoder_blocks=(1, 1, 1)).eval()
    latent = (cfg.vae.latent_channels, 16, 14)
    model = DyadGen.from_config(cfg, num_audio_codes=tokenizer.num_codes, latent_shape=latent)
    source = text_tokenizer(root / "qwen-source")
    model.use_text_tokenizer(source)
    faces = torch.rand(2, 3, 64, 56) * 2 - 1
    out = save_inference_folder(root / "inference", cfg, model, tokenizer, vae,
                                {"latents": vae.encode(faces), "images": torch.zeros(2, 64, 56, 3, dtype=torch.uint8)})
    for f in source.iterdir():  # the tokenizer must now come from the checkpoint folder alone
        f.unlink()
    source.rmdir()
    return out


@pytest.mark.parametrize("fast", [False, True])
def test_infer_runs_offline_from_the_folder_alone(folder, tmp_path, fast):
    sf.write(tmp_path / "left.wav", 0.1 * np.sin(np.arange(16000) / 5).astype(np.float32), 16000)
    sf.write(tmp_path / "right.wav", np.zeros(16000, np.float32), 16000)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "no-cache")}
    out = tmp_path / "o.mp4"
    result = subprocess.run([sys.executable, "-m", "dyadgen.cli", "infer", "--left", str(tmp_path / "left.wav"),
                             "--right", str(tmp_path / "right.wav"), "--checkpoint", str(folder), "--out", str(out),
                             "--device", "cpu", *(["--fast-decoder"] if fast else [])],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    with av.open(str(out)) as box:
        assert sum(1 for _ in box.decode(video=0)) == 25
    assert (folder / "text_tokenizer" / "tokenizer.json").is_file() and (folder / "fast_decoder").is_dir()


def test_a_folder_without_a_fast_decoder_says_so(folder, tmp_path):
    import shutil

    from dyadgen.errors import UserError
    from dyadgen.inference.pipeline import DyadGenPipeline

    plain = tmp_path / "plain"
    shutil.copytree(folder, plain)
    shutil.rmtree(plain / "fast_decoder")
    pipe = DyadGenPipeline.from_pretrained(plain, device="cpu")
    with pytest.raises(UserError, match="no fast decoder"):
        pipe.frames(np.zeros(16000, np.float32), np.zeros(16000, np.float32),
                    fast_decoder=True)


def test_a_device_or_dtype_the_machine_cannot_run_is_a_clear_error():
    from dyadgen.devices import pick_device, pick_dtype
    from dyadgen.errors import UserError

    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device"):
            pick_device("cuda")
    with pytest.raises(UserError, match="fp16"):
        pick_dtype("fp16", torch.device("cpu"))
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32
